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

IGNORE_INDEX = -100  # target that is not scored (PyTorch's cross_entropy default)


def shifted_pairs(ids: np.ndarray, eos_id: int, reverse: bool = False) -> Tuple[Tensor, Tensor]:
    """(inputs, targets) for the stream, read backwards when `reverse` (the backward LM)."""
    seq = torch.from_numpy(np.ascontiguousarray(ids[::-1] if reverse else ids)).long()
    inputs = torch.cat([torch.tensor([eos_id]), seq[:-1]])
    return inputs, seq


class TrainStream:
    """The training stream cut into `batch_size` contiguous rows (batch-first).

    Truncated BPTT reads windows of columns left to right and carries the hidden state
    from one window to the next, so each row is one long continuous text. The last
    `len % batch_size` (< batch_size) tokens do not fit a row and are left out of training
    (they are counted in `left_out`); evaluation always scores every token.

    Data-parallel: the stream is cut into `batch_size * world_size` rows and rank r keeps
    rows [r * batch_size, (r + 1) * batch_size), so the ranks together read exactly the
    batches one process with the global batch would.
    """

    def __init__(self, ids: np.ndarray, eos_id: int, batch_size: int, reverse: bool = False,
                 rank: int = 0, world_size: int = 1) -> None:
        inputs, targets = shifted_pairs(ids, eos_id, reverse)
        rows = batch_size * world_size
        n = len(targets) // rows * rows
        if n == 0:
            raise ValueError(f"the train split has {len(targets)} tokens, fewer than task.batch_size={batch_size}"
                             + (f" x {world_size} processes" if world_size > 1 else ""))
        mine = slice(rank * batch_size, (rank + 1) * batch_size)
        self.inputs = inputs[:n].view(rows, -1)[mine]
        self.targets = targets[:n].view(rows, -1)[mine]
        self.length = self.inputs.size(1)
        self.left_out = len(targets) - n

    def window(self, start: int, length: int) -> Tuple[Tensor, Tensor]:
        end = min(start + length, self.length)
        return self.inputs[:, start:end], self.targets[:, start:end]


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
    inputs, targets = shifted_pairs(ids, eos_id, reverse)
    n = len(targets)
    rows = max(1, min(batch_size, n))
    row_len = math.ceil(n / rows)
    pad = rows * row_len - n
    inputs = torch.cat([inputs, torch.full((pad,), eos_id)]).view(rows, row_len)
    targets = torch.cat([targets, torch.full((pad,), IGNORE_INDEX)]).view(rows, row_len)
    for start in range(0, row_len, bptt):
        yield inputs[:, start:start + bptt], targets[:, start:start + bptt]
