"""Tagging a stream of sentences in bounded memory and in input order.

Sentences are read a window at a time (`window` sentences); inside a window they are
batched by length (little padding, large batches), and the window's results are handed on
in input order before the next window is read. Memory is thus the window's, whatever the
input's size."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from itertools import islice
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

from nlp_lstm.data.tag_files import InputSentence

Result = Tuple[InputSentence, List[str], Optional[List[Dict[str, Any]]]]


def tag_stream(tagger, sentences: Iterable[InputSentence], batch_size: int = 256, window: Optional[int] = None,
               spans: bool = False, progress: Optional[bool] = None) -> Iterator[Result]:
    """(sentence, tags, spans) for each input sentence, in input order. `progress`: a bar
    with sentences/s on stderr (default: when stderr is a terminal).

    One thread: preparing the next window in a second thread while the model ran measured
    no faster on 2 cores (2,791 against 2,778-3,069 sentences/s, BENCHMARKS.md)."""
    window = window or 32 * batch_size
    show = sys.stderr.isatty() if progress is None else progress
    with _bar() if show else nullcontext() as counter:
        for buffer in _windows(iter(sentences), window):
            results = tagger.predict_inputs(buffer, batch_size, spans=spans)
            if counter is not None:
                counter.update(len(buffer))
            for sentence, (tags, found) in zip(buffer, results):
                yield sentence, tags, found


def _windows(sentences: Iterator[InputSentence], size: int) -> Iterator[List[InputSentence]]:
    while True:
        buffer = list(islice(sentences, size))
        if not buffer:
            return
        yield buffer


def _bar():
    from tqdm import tqdm

    return tqdm(unit=" sentences", unit_scale=True, file=sys.stderr, desc="tagging", dynamic_ncols=True)
