"""The dropouts of AWD-LSTM (Merity et al. 2017), written so they keep fused RNN kernels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def embedding_dropout(embedding: nn.Embedding, tokens: Tensor, p: float, training: bool) -> Tensor:
    """Drop whole word types: every occurrence of a dropped word gets a zero vector.

    Equivalent to masking rows of the embedding matrix (Gal & Ghahramani 2016), but the
    mask is gathered for the batch's tokens only instead of scaling the whole matrix.
    """
    out = embedding(tokens)
    if not training or p == 0.0:
        return out
    keep = torch.empty(embedding.num_embeddings, device=out.device, dtype=out.dtype).bernoulli_(1 - p) / (1 - p)
    return out * keep[tokens].unsqueeze(-1)


class SequenceDropout(nn.Module):
    """Dropout over (batch, time, features).

    locked=True samples one mask per sequence and reuses it at every time step
    (variational / locked dropout); locked=False is ordinary per-element dropout.
    """

    def __init__(self, p: float, locked: bool = True) -> None:
        super().__init__()
        self.p, self.locked = p, locked

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        if not self.locked:
            return F.dropout(x, self.p, True)
        mask = x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(1 - self.p) / (1 - self.p)
        return x * mask

    def extra_repr(self) -> str:
        return f"p={self.p}, locked={self.locked}"
