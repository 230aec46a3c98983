"""Batches for language modeling from a stream of token ids.

A split is one stream: each line's tokens followed by its end-of-line token. The model
reads `<eos>` + stream[:-1] and predicts stream, so *every* token of the split is a target
(the first one predicted from a line start, as all line starts are) and the number of
scored targets equals the split's token count: perplexity is comparable with published
counts.
"""

from __future__ import annotations

import math
import random
from typing import Iterator, Tuple

import numpy as np
import torch
from torch import Tensor

from nlp_lstm.errors import ConfigError

IGNORE_INDEX = -100  # target that is not scored (PyTorch's cross_entropy default)


def gather_windows(ids: np.ndarray, positions: np.ndarray, eos_id: int,
                   reverse: bool = False) -> Tuple[Tensor, Tensor]:
    """Inputs and targets at `positions` (rows x time) of the stream, as int64 tensors.

    Position p's target is token p of the stream (of the reversed stream when `reverse`),
    its input is token p - 1, or <eos> at p = 0. Positions past the end are padding:
    input <eos>, target IGNORE_INDEX. Only the indexed tokens are read, so `ids` may be a
    memory map of a corpus larger than memory.
    """
    n = len(ids)
    inside = positions < n
    tokens = np.where(inside, n - 1 - positions, 0) if reverse else np.minimum(positions, n - 1)
    previous = np.where(inside & (positions > 0), tokens + 1 if reverse else tokens - 1, 0)
    targets = np.where(inside, np.asarray(ids[tokens.ravel()]).reshape(tokens.shape), IGNORE_INDEX)
    inputs = np.where(inside & (positions > 0), np.asarray(ids[previous.ravel()]).reshape(tokens.shape), eos_id)
    return torch.from_numpy(inputs.astype(np.int64)), torch.from_numpy(targets.astype(np.int64))


class TrainStream:
    """The training stream cut into `batch_size` contiguous rows (batch-first).

    Truncated BPTT reads windows of columns left to right and carries the hidden state
    from one window to the next, so each row is one long continuous text. The last
    `len % batch_size` (< batch_size) tokens do not fit a row and are left out of training
    (they are counted in `left_out`); evaluation always scores every token. Windows are
    gathered from `ids` when asked for, never the whole stream at once.

    Data-parallel: the stream is cut into `batch_size * world_size` rows and rank r keeps
    rows [r * batch_size, (r + 1) * batch_size), so the ranks together read exactly the
    batches one process with the global batch would.
    """

    def __init__(self, ids: np.ndarray, eos_id: int, batch_size: int, reverse: bool = False,
                 rank: int = 0, world_size: int = 1) -> None:
        rows = batch_size * world_size
        self.length = len(ids) // rows
        if self.length == 0:
            raise ConfigError(f"config task.batch_size={batch_size}: the train split has only {len(ids)} tokens, "
                              f"fewer than the batch's {rows} rows"
                              + (f" ({batch_size} x {world_size} processes)" if world_size > 1 else "")
                              + ": lower task.batch_size or train on more text")
        self.ids, self.eos_id, self.reverse = ids, eos_id, reverse
        self.row_starts = (np.arange(batch_size) + rank * batch_size)[:, None] * self.length
        self.left_out = len(ids) - rows * self.length

    def window(self, start: int, length: int) -> Tuple[Tensor, Tensor]:
        end = min(start + length, self.length)
        return gather_windows(self.ids, self.row_starts + np.arange(start, end)[None, :], self.eos_id, self.reverse)


def window_length(bptt: int, variable: bool, rng: random.Random) -> int:
    """AWD-LSTM's variable BPTT: bptt (p=0.95) or bptt/2, jittered by N(0, 5), at least 5."""
    if not variable:
        return bptt
    base = bptt if rng.random() < 0.95 else bptt / 2
    return max(5, int(rng.gauss(base, 5)))


def eval_batches(ids: np.ndarray, eos_id: int, batch_size: int, bptt: int,
                 reverse: bool = False) -> Iterator[Tuple[Tensor, Tensor]]:
    """Windows over `batch_size` contiguous rows covering every token exactly once.

    The last row is padded with IGNORE_INDEX targets, which are not scored.
    """
    n = len(ids)
    rows = max(1, min(batch_size, n))
    row_len = math.ceil(n / rows)
    row_starts = np.arange(rows)[:, None] * row_len
    for start in range(0, row_len, bptt):
        positions = row_starts + np.arange(start, min(start + bptt, row_len))[None, :]
        yield gather_windows(ids, positions, eos_id, reverse)
