"""The server's Prometheus metrics (`GET /metrics`, text format): requests by route and
status, latency per route, batch sizes in sentences and tokens, queue depth.

Each app has its own registry, so several apps in one process (tests) never share counts.
With `--workers K` each process writes its values to files in PROMETHEUS_MULTIPROC_DIR
(prometheus_client's multiprocess mode, set up by server.py), and any process's
`/metrics` answers for all of them."""

from __future__ import annotations

import os
import time
from typing import Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SENTENCE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
TOKEN_BUCKETS = (16, 64, 256, 1024, 4096, 16384, 65536)


class ServerMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        # In multiprocess mode values go to files whatever the registry; exposition reads them all.
        registry = None if self.multiprocess else CollectorRegistry()
        self._registry = registry
        self.requests = Counter(
            "nlp_lstm_requests_total",
            "HTTP requests answered, by route and status",
            ["route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "nlp_lstm_request_seconds",
            "Time from request to answer, by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_sentences = Histogram(
            "nlp_lstm_batch_sentences",
            "Units (sentences, texts, prompts) per model batch",
            buckets=SENTENCE_BUCKETS,
            registry=registry,
        )
        self.batch_tokens = Histogram(
            "nlp_lstm_batch_tokens", "Tokens per model batch", buckets=TOKEN_BUCKETS, registry=registry
        )
        self.queue_depth = Gauge(
            "nlp_lstm_queue_depth", "Units waiting for the model", multiprocess_mode="livesum", registry=registry
        )

    def batch(self, sentences: int, tokens: int) -> None:
        self.batch_sentences.observe(sentences)
        self.batch_tokens.observe(tokens)

    def depth(self, units: int) -> None:
        self.queue_depth.set(units)

    def exposition(self) -> bytes:
        if not self.multiprocess:
            return generate_latest(self._registry)
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)


class MetricsMiddleware:
    """ASGI middleware counting every answer (errors included) by route and status. Paths
    that are no route are counted as "other", so random paths add no label values."""

    def __init__(self, app, metrics: ServerMetrics, routes: Iterable[str]) -> None:
        self.app, self.metrics, self.routes = app, metrics, frozenset(routes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = scope["path"] if scope["path"] in self.routes else "other"
        status = 500  # what the client gets if the app raises before answering

        async def send_and_note(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
