"""Tagging a stream of sentences in bounded memory and in input order.

Sentences are read a window at a time (`window` sentences); inside a window they are
batched by length (little padding, large batches), and the window's results are handed on
in input order before the next window is read. Memory is thus the window's, whatever the
input's size."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from itertools import islice
from typing import Any, Iterable, Iterator, List, Optional, Tuple

from tqdm import tqdm

from nlp_lstm.data.tag_files import InputSentence


def tag_stream(
    tagger,
    sentences: Iterable[InputSentence],
    batch_size: int = 256,
    window: Optional[int] = None,
    spans: bool = False,
    progress: Optional[bool] = None,
    nbest: Optional[int] = None,
    marginals: bool = False,
) -> Iterator[Tuple[InputSentence, Any]]:
    """(sentence, Prediction) for each input sentence, in input order (see
    Tagger.predict_inputs for `spans`, `nbest`, `marginals`). `progress`: a bar with
    sentences/s on stderr (default: when stderr is a terminal).

    One thread: preparing the next window in a second thread while the model ran measured
    no faster on 2 cores (2,791 against 2,778-3,069 sentences/s, BENCHMARKS.md)."""
    window = window or 32 * batch_size
    show = sys.stderr.isatty() if progress is None else progress
    with _bar() if show else nullcontext() as counter:
        for buffer in _windows(iter(sentences), window):
            results = tagger.predict_inputs(buffer, batch_size, spans=spans, nbest=nbest, marginals=marginals)
            if counter is not None:
                counter.update(len(buffer))
            yield from zip(buffer, results)


def _windows(sentences: Iterator[InputSentence], size: int) -> Iterator[List[InputSentence]]:
    while True:
        buffer = list(islice(sentences, size))
        if not buffer:
            return
        yield buffer


def _bar():
    return tqdm(unit=" sentences", unit_scale=True, file=sys.stderr, desc="tagging", dynamic_ncols=True)
