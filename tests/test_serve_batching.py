"""The server's queue and model thread (nlp_lstm/serve/batching.py) on their own, with a
run function that records each batch it is given: what shares a batch, the token budget,
the bounds, draining on stop, and a failure kept to the request that caused it."""

from __future__ import annotations

import time

import pytest

from nlp_lstm.serve.batching import Batcher, ModelFailure, QueueFull, TooManyUnits


class Recorder:
    """Runs a batch by upper-casing its payloads; remembers every batch; can be made slow
    or to fail on a payload."""

    def __init__(self, delay: float = 0.0, poison: str = "") -> None:
        self.batches, self.delay, self.poison = [], delay, poison

    def __call__(self, kind, payloads):
        self.batches.append((kind, list(payloads)))
        time.sleep(self.delay)
        if self.poison and self.poison in payloads:
            raise RuntimeError("poisoned")
        return [p.upper() for p in payloads]


def batcher(run, **options) -> Batcher:
    settings = {"max_batch_size": 64, "max_batch_tokens": 10_000, "max_wait_s": 0.0, "max_queue": 100, **options}
    return Batcher(run, **settings).start()


def test_units_arriving_within_the_wait_share_a_batch_and_later_ones_do_not():
    run = Recorder()
    queue = batcher(run, max_wait_s=0.5)
    first = queue.submit("tag", ["a"], [1])
    time.sleep(0.1)
    second = queue.submit("tag", ["b", "c"], [1, 1])
    assert first.result(5) == ["A"] and second.result(5) == ["B", "C"]
    late = queue.submit("tag", ["d"], [1])
    assert late.result(5) == ["D"]
    queue.stop()
    assert run.batches == [("tag", ["a", "b", "c"]), ("tag", ["d"])]


def test_without_a_wait_each_arrival_runs_at_once():
    run = Recorder()
    queue = batcher(run, max_wait_s=0.0)
    assert queue.submit("tag", ["a"], [1]).result(5) == ["A"]
    time.sleep(0.05)
    assert queue.submit("tag", ["b"], [1]).result(5) == ["B"]
    queue.stop()
    assert run.batches == [("tag", ["a"]), ("tag", ["b"])]


def test_a_full_batch_does_not_wait_and_kinds_run_apart():
    run = Recorder()
    queue = batcher(run, max_wait_s=30.0, max_batch_size=3)
    started = time.monotonic()
    plain = queue.submit(("tag", None), ["a", "b"], [1, 1])
    nbest = queue.submit(("tag", 3), ["c"], [1])
    assert plain.result(5) == ["A", "B"] and nbest.result(5) == ["C"]
    assert time.monotonic() - started < 5  # three units filled the batch: no 30 s wait
    queue.stop()
    assert run.batches == [(("tag", None), ["a", "b"]), (("tag", 3), ["c"])]


def test_the_token_budget_splits_batches_and_a_long_unit_runs_alone_never_dropped():
    run = Recorder()
    queue = batcher(run, max_wait_s=0.2, max_batch_tokens=10)
    future = queue.submit("tag", ["a", "b", "long", "c"], [4, 4, 50, 4])
    assert future.result(5) == ["A", "B", "LONG", "C"]
    queue.stop()
    assert [p for _, p in run.batches] == [["a", "b"], ["long"], ["c"]]


def test_the_queue_bound_answers_at_once():
    run = Recorder(delay=0.3)
    queue = batcher(run, max_queue=3, max_batch_size=1)
    with pytest.raises(TooManyUnits, match="holds 4 sentences; the server takes at most 3"):
        queue.submit("tag", list("abcd"), [1] * 4)
    first = queue.submit("tag", list("abc"), [1] * 3)
    time.sleep(0.1)  # "a" runs; "b" and "c" wait
    with pytest.raises(QueueFull, match=r"queue is full \(2 of 3 sentences waiting\)") as full:
        queue.submit("tag", ["d", "e"], [1, 1])
    assert full.value.retry_after_s >= 1
    assert queue.submit("tag", ["d"], [1]).result(5) == ["D"]  # one more fits
    assert first.result(5) == ["A", "B", "C"]
    queue.stop()


def test_stop_runs_what_is_queued_first():
    run = Recorder(delay=0.05)
    queue = batcher(run, max_batch_size=1)
    futures = [queue.submit("tag", [c], [1]) for c in "abcde"]
    queue.stop()
    assert [f.result(0) for f in futures] == [["A"], ["B"], ["C"], ["D"], ["E"]]
    with pytest.raises(QueueFull, match="shutting down"):
        queue.submit("tag", ["f"], [1])


def test_a_failure_fails_only_the_request_that_caused_it():
    run = Recorder(poison="bad")
    queue = batcher(run, max_wait_s=0.3)
    good = queue.submit("tag", ["a", "b"], [1, 1])
    bad = queue.submit("tag", ["c", "bad"], [1, 1])
    other = queue.submit("tag", ["d"], [1])
    assert good.result(5) == ["A", "B"] and other.result(5) == ["D"]
    with pytest.raises(ModelFailure, match="the model failed on this request"):
        bad.result(5)
    assert queue.submit("tag", ["e"], [1]).result(5) == ["E"]  # the worker lives on
    queue.stop()


def test_an_empty_request_is_answered_without_the_model():
    run = Recorder()
    queue = batcher(run)
    assert queue.submit("tag", [], []).result(1) == []
    queue.stop()
    assert run.batches == []
