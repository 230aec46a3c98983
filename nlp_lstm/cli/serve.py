"""`nlp-lstm serve`: a trained package behind HTTP (nlp_lstm/serve). fastapi and uvicorn
come with the `serve` extra and are imported only here, so every other command works
without them."""

from __future__ import annotations

import importlib.util

from nlp_lstm.errors import NlpLstmError

SERVE_EXTRA = ("fastapi", "uvicorn", "prometheus_client")


def serve(args) -> None:
    missing = [name for name in SERVE_EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        raise NlpLstmError(
            f"nlp-lstm serve needs {', '.join(missing)}: pip install 'nlp-lstm[serve]' "
            "(or pip install fastapi uvicorn prometheus-client)"
        )
    from nlp_lstm.serve.server import run
    from nlp_lstm.serve.settings import ServeSettings

    run(
        ServeSettings(
            model=args.model,
            host=args.host,
            port=args.port,
            device=args.device,
            precision=args.precision,
            max_batch_size=args.max_batch_size,
            max_batch_tokens=args.max_batch_tokens,
            max_wait_ms=args.max_wait_ms,
            max_queue=args.max_queue,
            max_body_mb=args.max_body_mb,
            workers=args.workers,
            cors=list(args.cors),
        )
    )
