"""Requests batched for the model: one bounded queue of sentences, one worker thread.

A request is split into units (a sentence of a tagging request, a text to score, a prompt
to continue), which wait in one FIFO queue bounded in units. The worker takes what has
arrived: once the first waiting unit is `max_wait_s` old, or as soon as `max_batch_size`
units (or `max_batch_tokens` tokens) wait, it takes up to that many, runs the model once
per kind of work among them, and answers each request when its last unit is done. A unit
longer than `max_batch_tokens` is a batch of its own: long inputs are never cut or dropped.

The model is only ever called from this one thread, so it needs no lock, and requests from
many clients share its batches. Nothing here knows HTTP or the model: `run` is given."""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, Hashable, List, Optional, Sequence

logger = logging.getLogger("nlp_lstm.serve")

# (kind of work, payloads) -> one result per payload, in order. Units of one kind (a
# hashable such as ("tag", nbest, marginals)) share a model call.
RunBatch = Callable[[Hashable, List[Any]], Sequence[Any]]


class QueueFull(Exception):
    """The queue cannot take the request now: try again later (HTTP 503)."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class TooManyUnits(Exception):
    """A request holds more units than the whole queue: it could never be taken (HTTP 413)."""


class ModelFailure(Exception):
    """The model raised on this request's units (HTTP 500); the cause is logged."""


@dataclass
class _Job:
    """One request: its results fill in as its units are run."""

    kind: Hashable
    results: List[Any]
    remaining: int
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)


@dataclass
class _Unit:
    job: _Job
    index: int  # where its result goes in job.results
    payload: Any
    cost: int  # tokens, for the batch's token budget
    arrived: float


class Batcher:
    def __init__(
        self,
        run: RunBatch,
        max_batch_size: int,
        max_batch_tokens: int,
        max_wait_s: float,
        max_queue: int,
        on_batch: Optional[Callable[[int, int], None]] = None,
        on_depth: Optional[Callable[[int], None]] = None,
    ) -> None:
        self._run = run
        self.max_batch_size, self.max_batch_tokens = max_batch_size, max_batch_tokens
        self.max_wait_s, self.max_queue = max_wait_s, max_queue
        self._on_batch = on_batch or (lambda sentences, tokens: None)  # metrics
        self._on_depth = on_depth or (lambda depth: None)
        self._units: Deque[_Unit] = deque()
        self._queued_cost = 0
        self._changed = threading.Condition()
        self._stopping = False
        self._recent_rate = 0.0  # units/s of recent batches, for Retry-After
        self._thread = threading.Thread(target=self._work, name="nlp-lstm-serve-model", daemon=True)

    def start(self) -> "Batcher":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Run what is queued, then end the worker."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        self._thread.join()

    @property
    def depth(self) -> int:
        return len(self._units)

    def submit(self, kind: Hashable, payloads: Sequence[Any], costs: Sequence[int]) -> concurrent.futures.Future:
        """A future of the request's results (one per payload, in order). Raises QueueFull
        or TooManyUnits at once rather than let a request wait without bound."""
        if len(payloads) > self.max_queue:
            raise TooManyUnits(
                f"the request holds {len(payloads)} sentences; the server takes at most "
                f"{self.max_queue} in one request (--max-queue): split it"
            )
        job = _Job(kind, [None] * len(payloads), len(payloads))
        if not payloads:
            job.future.set_result([])
            return job.future
        now = time.monotonic()
        with self._changed:
            if self._stopping:
                raise QueueFull("the server is shutting down", 1)
            if len(self._units) + len(payloads) > self.max_queue:
                raise QueueFull(
                    f"the queue is full ({len(self._units)} of {self.max_queue} sentences waiting)",
                    self._retry_after(len(self._units) + len(payloads)),
                )
            for index, (payload, cost) in enumerate(zip(payloads, costs)):
                self._units.append(_Unit(job, index, payload, max(1, cost), now))
                self._queued_cost += max(1, cost)
            self._on_depth(len(self._units))
            self._changed.notify_all()
        return job.future

    def _retry_after(self, units: int) -> int:
        """Seconds until the queue has likely drained that far, from the recent rate."""
        if self._recent_rate <= 0:
            return 1
        return max(1, min(60, round(units / self._recent_rate)))

    def _take(self) -> Optional[List[_Unit]]:
        """The next batch, once it is due; None when stopped with nothing left."""
        with self._changed:
            while not self._units:
                if self._stopping:
                    return None
                self._changed.wait()
            deadline = self._units[0].arrived + self.max_wait_s
            while (
                not self._stopping
                and len(self._units) < self.max_batch_size
                and self._queued_cost < self.max_batch_tokens
            ):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            batch, tokens = [], 0
            while self._units and len(batch) < self.max_batch_size:
                cost = self._units[0].cost
                if batch and tokens + cost > self.max_batch_tokens:
                    break  # the long one starts the next batch (alone if it must)
                unit = self._units.popleft()
                self._queued_cost -= unit.cost
                batch.append(unit)
                tokens += cost
            self._on_depth(len(self._units))
        self._on_batch(len(batch), tokens)
        return batch

    def _work(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            started = time.monotonic()
            by_kind: Dict[Hashable, List[_Unit]] = {}
            for unit in batch:
                if unit.job.future.done():
                    continue  # its request failed already: its other units are not run
                by_kind.setdefault(unit.job.kind, []).append(unit)
            for kind, units in by_kind.items():
                self._run_units(kind, units)
            elapsed = max(time.monotonic() - started, 1e-6)
            self._recent_rate = (
                0.8 * self._recent_rate + 0.2 * (len(batch) / elapsed) if self._recent_rate else len(batch) / elapsed
            )

    def _run_units(self, kind: Hashable, units: List[_Unit]) -> None:
        try:
            results = self._run(kind, [u.payload for u in units])
        except Exception:
            jobs = list({id(u.job): u.job for u in units}.values())
            if len(jobs) == 1:
                logger.exception("the model failed on a request of %d units", len(units))
                self._fail(jobs[0])
                return
            # Several requests shared the batch: run each alone, so only the one that
            # makes the model fail gets the error.
            for job in jobs:
                self._run_units(kind, [u for u in units if u.job is job])
            return
        for unit, result in zip(units, results):
            job = unit.job
            if job.future.done():
                continue
            job.results[unit.index] = result
            job.remaining -= 1
            if job.remaining == 0:
                job.future.set_result(job.results)

    @staticmethod
    def _fail(job: _Job) -> None:
        if not job.future.done():
            job.future.set_exception(
                ModelFailure("the model failed on this request (the server's log has the traceback)")
            )
