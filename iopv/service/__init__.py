"""Layer 5, the running service: named tasks, the web server (board, JSON API, push stream, health,
readiness, metrics)."""
