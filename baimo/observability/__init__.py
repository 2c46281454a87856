"""Observability: Prometheus metrics, structured logs with request ids, secret redaction, OpenTelemetry traces."""
