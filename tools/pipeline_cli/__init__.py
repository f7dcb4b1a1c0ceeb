"""Developer-side CLI: local runner, docker-free invoke, redrive, benchmarks and tuning."""
