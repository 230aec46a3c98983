"""The HTTP routes (FastAPI): `/health`, `/tag` (taggers), `/score` and `/generate` (LMs),
`/metrics`, and the page at `/`. Every error is JSON `{"error": "one line"}` with its
status: 400 a malformed request, 404 a route this model does not have, 413 a body past
--max-body-mb (or more sentences than the queue holds), 503 a full queue (Retry-After),
500 a failure inside the model (logged; the server goes on serving)."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, Dict, Hashable, List, Optional, Sequence

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware

from nlp_lstm.errors import NlpLstmError
from nlp_lstm.inference import Tagger, load
from nlp_lstm.serve.batching import Batcher, ModelFailure, QueueFull, TooManyUnits
from nlp_lstm.serve.metrics import MetricsMiddleware, ServerMetrics
from nlp_lstm.serve.settings import ServeSettings
from nlp_lstm.serve.validation import BadRequest, generate_request, parse_json, score_request, tag_request
from nlp_lstm.serve.work import ModelWork, score_total, tag_kind, tag_results, tag_units, token_costs

logger = logging.getLogger("nlp_lstm.serve")

ROUTES = {"/": "GET", "/health": "GET", "/metrics": "GET", "/tag": "POST", "/score": "POST", "/generate": "POST"}
INLINE_TOKENIZING = 20_000  # characters (or sentences of tokens) a request is tokenized in on the event loop
ROUTES_OF = {"tagger": ("/tag",), "lm": ("/score", "/generate")}
# The page loads nothing from elsewhere, and the browser is told so.
PAGE_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
    "img-src data:; base-uri 'none'; form-action 'self'"
)


class BodyTooLarge(Exception):
    """HTTP 413."""


def check_servable(model) -> None:
    """Refuse, before listening, a tagger that could answer no request: one that reads an
    input column (e.g. POS) it cannot predict, since requests hold words only."""
    if isinstance(model, Tagger):
        missing = [name for name in model.vocabs.features if name not in model.feature_taggers]
        if missing:
            raise NlpLstmError(
                f"this tagger reads input column(s) {', '.join(missing)} besides the words, and "
                f"requests hold words only: serve a tagger that predicts them (train it with "
                f"+model.feature_taggers.{missing[0]}=PATH) or one trained without them"
            )


def model_facts(model) -> Dict[str, Any]:
    if isinstance(model, Tagger):
        return {
            "kind": "tagger",
            "model": repr(model),
            "labels": model.labels,
            "spans": model.scheme != "none",
            "crf": model.model.crf is not None,
            "precision": model.precision,
        }
    return {
        "kind": "lm",
        "model": repr(model),
        "tokenizer": model.tokenizer.kind,
        "vocabulary": model.tokenizer.vocab_size,
        "precision": "fp32",
    }


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it is known to pass `limit` bytes: by its
    Content-Length, else while it streams in."""
    declared = request.headers.get("content-length", "")
    too_large = BodyTooLarge(f"the body is larger than the server takes ({limit / 2**20:g} MB, --max-body-mb)")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(settings: ServeSettings, model=None) -> FastAPI:
    """The app for a loaded model (loaded from settings.model when not given)."""
    model = model if model is not None else load(settings.model, settings.device)
    if isinstance(model, Tagger):
        model.set_precision(settings.precision)
    check_servable(model)
    kind = "tagger" if isinstance(model, Tagger) else "lm"
    facts = model_facts(model)
    metrics = ServerMetrics()
    batcher = Batcher(
        ModelWork(model, settings.max_batch_size),
        settings.max_batch_size,
        settings.max_batch_tokens,
        settings.max_wait_ms / 1000,
        settings.max_queue,
        on_batch=metrics.batch,
        on_depth=metrics.depth,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        # uvicorn has answered the requests in flight by now; the queue is run dry before the worker ends
        await run_in_threadpool(batcher.stop)

    # No generated docs: their pages load scripts from a CDN, and the README documents the routes.
    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.batcher, app.state.model = batcher, model

    def error(status: int, message: str, headers: Optional[Dict[str, str]] = None) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    @app.exception_handler(BadRequest)
    async def bad_request(request, exc):
        return error(400, str(exc))

    @app.exception_handler(BodyTooLarge)
    @app.exception_handler(TooManyUnits)
    async def too_large(request, exc):
        return error(413, str(exc))

    @app.exception_handler(QueueFull)
    async def queue_full(request, exc):
        return error(503, f"{exc}: retry after {exc.retry_after_s} s", {"Retry-After": str(exc.retry_after_s)})

    @app.exception_handler(ModelFailure)
    async def model_failure(request, exc):
        return error(500, str(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request, exc):
        message = exc.detail
        if exc.status_code == 404 and request.url.path in ROUTES:
            message = (
                f"this server holds a {'language model' if kind == 'lm' else 'tagger'}: it answers "
                f"{', '.join(ROUTES_OF[kind])}, not {request.url.path}"
            )
        elif exc.status_code == 405:
            message = f"{request.url.path} takes {ROUTES.get(request.url.path, 'another method')}, not {request.method}"
        return error(exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def internal_error(request, exc):
        logger.exception("request %s %s failed", request.method, request.url.path)
        return error(500, f"internal error ({type(exc).__name__}); the server's log has the traceback")

    async def answer(work: Hashable, payloads: Sequence[Any], costs: Sequence[int]) -> List[Any]:
        return await asyncio.wrap_future(batcher.submit(work, payloads, costs))

    async def body_of(request: Request) -> Any:
        return parse_json(await read_body(request, settings.max_body_bytes))

    @app.get("/health")
    async def health():
        return {
            "status": "ok",
            **facts,
            "queue": batcher.depth,
            "max_batch_size": settings.max_batch_size,
            "max_wait_ms": settings.max_wait_ms,
        }

    @app.get("/metrics")
    async def prometheus():
        return Response(metrics.exposition(), media_type=metrics.content_type)

    @app.get("/")
    async def page():
        html = resources.files("nlp_lstm.serve").joinpath("page.html").read_text(encoding="utf-8")
        return HTMLResponse(
            html,
            headers={
                "Content-Security-Policy": PAGE_POLICY,
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
            },
        )

    # The answers are built of plain JSON types already: a JSONResponse writes them with
    # json.dumps, where a returned dict would first go through FastAPI's jsonable_encoder
    # (a third of the event loop's time under load).
    if kind == "tagger":

        @app.post("/tag")
        async def tag(request: Request):
            body = tag_request(await body_of(request))
            if (body.nbest or body.marginals) and model.model.crf is None:
                raise BadRequest(
                    f"{'nbest' if body.nbest else 'marginals'} need a CRF head; this tagger has a softmax head"
                )
            # Tokenizing a large body is CPU work: off the event loop, which keeps answering others
            # (a short one costs less than the hop to a thread).
            if sum(map(len, body.texts or [])) + sum(map(len, body.tokens or [])) > INLINE_TOKENIZING:
                sentences = await run_in_threadpool(tag_units, body)
            else:
                sentences = tag_units(body)
            predictions = await answer(tag_kind(body), sentences, token_costs(sentences))
            return JSONResponse({"results": tag_results(body, sentences, predictions)})
    else:

        @app.post("/score")
        async def score(request: Request):
            texts = score_request(await body_of(request))
            results = await answer(("score",), texts, [len(t.split()) + 1 for t in texts])
            return JSONResponse({"results": results, "total": score_total(results)})

        @app.post("/generate")
        async def generate(request: Request):
            body = generate_request(await body_of(request))
            (text,) = await answer(("generate",), [body], [body.max_tokens])
            return JSONResponse({"text": text})

    if settings.cors:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors),
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type"],
        )
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=ROUTES)
    return app


def app_from_environment() -> FastAPI:
    """uvicorn's app factory in each worker process of `--workers K`."""
    import os

    import torch

    settings = ServeSettings.from_environment()
    # K processes share the cores: one model each, so each gets its share of the threads.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // settings.workers))
    return create_app(settings)
