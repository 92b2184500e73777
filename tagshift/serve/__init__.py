"""`tagshift serve`: a model behind a small HTTP API (POST /predict, GET /health, GET /info)
with an entity viewer page at /. `app.create_app` builds the FastAPI application from a
loaded model; `tagging` does the work without HTTP (and without FastAPI, which with uvicorn is
the 'serve' extra: only `app` needs them)."""
