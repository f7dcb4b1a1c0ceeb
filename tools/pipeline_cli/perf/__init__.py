"""What `pipeline bench` and `pipeline tune` measure with: inputs, variants, scores, Lambda-like processes."""
