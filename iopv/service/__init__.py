"""Layer 5, the running service: named tasks, the HTTP endpoint (health, readiness, metrics)."""
