"""The local twin of AWS: template.yaml deployed into moto, the real handlers run as Lambda runs them,
events delivered with AWS's semantics. See docs/local-twin.md."""
