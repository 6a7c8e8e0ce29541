"""The Guardian web UI (FastAPI, server-side templates)."""
