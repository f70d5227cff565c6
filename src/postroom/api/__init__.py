"""The HTTP API (FastAPI) under /api."""
