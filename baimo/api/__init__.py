"""HTTP layer: the FastAPI app factory, OpenAI-compatible /v1 routes, admin /api routes, errors and SSE."""
