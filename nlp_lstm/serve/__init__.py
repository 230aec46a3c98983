"""`nlp-lstm serve`: a trained package behind HTTP (FastAPI on uvicorn, the `serve` extra).

settings.py what the command line sets; batching.py the bounded queue and the one thread
that runs the model; work.py what that thread runs for a tagger or an LM (the calls
`nlp-lstm tag`, `score` and `generate` make); validation.py request bodies checked into
one-line errors; metrics.py Prometheus counters; page.html the page at `/`; app.py the
routes; server.py uvicorn, its workers and a clean exit on SIGTERM.

Nothing here imports nlp_lstm.training or nlp_lstm.tasks: the server is the inference
layer over HTTP. fastapi, uvicorn and prometheus_client are imported only by app.py,
metrics.py and server.py, which only `nlp-lstm serve` imports."""
