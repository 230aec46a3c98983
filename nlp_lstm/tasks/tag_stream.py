"""Tagging a stream of sentences in bounded memory and in input order.

Sentences are read a window at a time (`window` sentences); inside a window they are
batched by length (little padding, large batches), and the window's results are handed on
in input order. At most two windows are held (the one being tagged and the next, being
prepared), so memory does not depend on the input's size."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from itertools import islice
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

from nlp_lstm.data.tag_files import InputSentence

Result = Tuple[InputSentence, List[str], Optional[List[Dict[str, Any]]]]


def tag_stream(tagger, sentences: Iterable[InputSentence], batch_size: int = 256, window: Optional[int] = None,
               spans: bool = False, progress: Optional[bool] = None, prefetch: bool = True) -> Iterator[Result]:
    """(sentence, tags, spans) for each input sentence, in input order. `progress`: a bar
    with sentences/s on stderr (default: when stderr is a terminal).

    A second thread reads and prepares (encodes, batches) the next window while this one
    runs the model on the current one: the model's kernels release the GIL, so the
    per-sentence Python work overlaps with them instead of adding to them (`prefetch=False`:
    one thread, window after window)."""
    window = window or 32 * batch_size
    show = sys.stderr.isatty() if progress is None else progress
    windows = _windows(iter(sentences), window)

    def read_and_prepare():
        buffer = next(windows, None)
        return None if buffer is None else (buffer, tagger.prepare_inputs(buffer, batch_size))

    with (_bar() if show else nullcontext()) as counter, ThreadPoolExecutor(1) as pool:
        submit = pool.submit if prefetch else _run_now
        pending = submit(read_and_prepare)
        while (ready := pending.result()) is not None:
            pending = submit(read_and_prepare)  # the next window, meanwhile
            buffer, prepared = ready
            results = tagger.predict_prepared(buffer, prepared, batch_size, spans=spans)
            if counter is not None:
                counter.update(len(buffer))
            for sentence, (tags, found) in zip(buffer, results):
                yield sentence, tags, found


class _Done:
    def __init__(self, value) -> None:
        self.value = value

    def result(self):
        return self.value


def _run_now(function) -> _Done:
    return _Done(function())


def _windows(sentences: Iterator[InputSentence], size: int) -> Iterator[List[InputSentence]]:
    while True:
        buffer = list(islice(sentences, size))
        if not buffer:
            return
        yield buffer


def _bar():
    from tqdm import tqdm

    return tqdm(unit=" sentences", unit_scale=True, file=sys.stderr, desc="tagging", dynamic_ncols=True)
