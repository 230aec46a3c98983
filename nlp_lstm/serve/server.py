"""Running the app on uvicorn: one process (the model loaded before the port opens, so a
bad package is a one-line error), or `--workers K` processes, each loading its own model.

SIGTERM or Ctrl-C: uvicorn stops accepting connections, lets the requests in flight get
their answers, then the app's shutdown runs the queue dry; the command exits 0."""

from __future__ import annotations

import logging
import os
import signal
import tempfile

import uvicorn

from nlp_lstm.inference import load
from nlp_lstm.serve.app import check_servable, create_app
from nlp_lstm.serve.settings import ENVIRONMENT_KEY, ServeSettings


def _exit_zero_after_a_graceful_stop() -> None:
    """uvicorn handles SIGINT/SIGTERM itself (a graceful stop) and afterwards raises the
    signal again to the handler that was there before it; these handlers take it quietly,
    so a stop asked for by a signal, and done, is a success (exit 0)."""
    for handled in (signal.SIGINT, signal.SIGTERM):
        signal.signal(handled, lambda number, frame: None)


def run(settings: ServeSettings) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    log_config = {**uvicorn.config.LOGGING_CONFIG, "disable_existing_loggers": False}
    if settings.workers == 1:
        app = create_app(settings)
        server = uvicorn.Server(
            uvicorn.Config(app, host=settings.host, port=settings.port, log_config=log_config, server_header=False)
        )
        _exit_zero_after_a_graceful_stop()
        server.run()
        return
    # Each worker process builds its app from the settings in its environment; their metrics
    # meet in one folder, so that any worker's /metrics counts them all.
    check_servable(load(settings.model, settings.device))  # a bad package: one line, before any worker starts
    with tempfile.TemporaryDirectory(prefix="nlp_lstm_serve_metrics_") as metrics_dir:
        os.environ[ENVIRONMENT_KEY] = settings.to_json()
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", metrics_dir)
        _exit_zero_after_a_graceful_stop()
        uvicorn.run(
            "nlp_lstm.serve.app:app_from_environment",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_config=log_config,
            server_header=False,
        )
