"""Bidirectional encoders over padded batches, exact without PackedSequence.

Padding always sits at the end of a row. The forward direction reads real tokens before
any padding, so its outputs at real positions never depend on padding. The backward
direction gets each row reversed *within its length* (`reverse_padded`), so it too reads
the real tokens first; its outputs are reversed back the same way. A padded batch thus
gives the same outputs as each sentence run alone (tested), while keeping the fused
kernels that PackedSequence makes 5-100x slower on CPU.
"""

from __future__ import annotations

from typing import List, Optional

import torch
from torch import Tensor, nn

from nlp_lstm.models.dropout import SequenceDropout
from nlp_lstm.models.rnn import RNNLayer


def reverse_padded(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each row of x (B, T, ...) within its length; padding stays at the end.

    One row gather over the flattened (B * T) positions: a gather with an index expanded to
    every element of x reads one index per value and was an eighth of prediction time."""
    batch, length = x.shape[:2]
    positions = torch.arange(length, device=x.device).unsqueeze(0)
    lengths = lengths.to(x.device).unsqueeze(1)
    index = torch.where(positions < lengths, lengths - 1 - positions, positions)
    flat = (index + torch.arange(batch, device=x.device).unsqueeze(1) * length).reshape(-1)
    return x.reshape(batch * length, *x.shape[2:]).index_select(0, flat).view(x.shape)


class BiRNN(nn.Module):
    """Stacked bidirectional LSTM/GRU: each layer reads the concatenated outputs of both
    directions of the layer below (as nn.LSTM(bidirectional=True) does)."""

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        dropout_hidden: float = 0.0,
        locked_dropout: bool = True,
        weight_drop: float = 0.0,
        backward_input_size: Optional[int] = None,
    ) -> None:
        """`backward_input_size`: the first layer's backward direction reads an input of its
        own (of this size) instead of the forward direction's; see forward_layers_out."""
        super().__init__()
        self.forward_layers = nn.ModuleList()
        self.backward_layers = nn.ModuleList()
        for i in range(num_layers):
            size = input_size if i == 0 else 2 * hidden_size
            backward_size = backward_input_size if i == 0 and backward_input_size is not None else size
            self.forward_layers.append(RNNLayer(cell, size, hidden_size, weight_drop))
            self.backward_layers.append(RNNLayer(cell, backward_size, hidden_size, weight_drop))
        self.between = SequenceDropout(dropout_hidden, locked_dropout)
        self.output_size = 2 * hidden_size

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        return self.forward_layers_out(x, lengths)[-1]

    def forward_layers_out(self, x: Tensor, lengths: Tensor, x_backward: Optional[Tensor] = None) -> List[Tensor]:
        """Every layer's output (B, T, 2h): forward direction in [..., :h], backward in [..., h:].

        `x_backward`, where given, is what the first layer's backward direction reads
        instead of `x` (inputs that must not reach one of the directions)."""
        batch = x.size(0)
        outputs = []
        for i, (fwd, bwd) in enumerate(zip(self.forward_layers, self.backward_layers)):
            if i > 0:
                x = self.between(x)
            backward_input = x_backward if i == 0 and x_backward is not None else x
            out_f, _ = fwd(x, fwd.initial_state(batch, x.device, x.dtype))
            out_b, _ = bwd(reverse_padded(backward_input, lengths), bwd.initial_state(batch, x.device, x.dtype))
            x = torch.cat([out_f, reverse_padded(out_b, lengths)], dim=-1)
            outputs.append(x)
        return outputs


class CharCNN(nn.Module):
    """Character CNN word features (Ma & Hovy 2016): embed, convolve, max-pool over the
    word's real characters."""

    def __init__(self, num_chars: int, char_emb: int, out_size: int, kernel: int = 3) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_chars, char_emb, padding_idx=0)
        self.conv = nn.Conv1d(char_emb, out_size, kernel, padding=kernel // 2)
        self.output_size = out_size

    def forward(self, chars: Tensor, lengths: Tensor) -> Tensor:
        """chars (W, C) with 0 padding, lengths (W,) -> (W, out)."""
        h = self.conv(self.embedding(chars).transpose(1, 2)).transpose(1, 2)  # (W, C, out)
        pad = torch.arange(chars.size(1), device=chars.device).unsqueeze(0) >= lengths.unsqueeze(1)
        return h.masked_fill(pad.unsqueeze(2), float("-inf")).max(dim=1).values


class CharBiLSTM(nn.Module):
    """Character BiLSTM word features (Lample et al. 2016): the last forward state and the
    last backward state over the word's characters, exact under padding."""

    def __init__(self, num_chars: int, char_emb: int, hidden: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_chars, char_emb, padding_idx=0)
        self.rnn = BiRNN("lstm", char_emb, hidden, 1)
        self.output_size = 2 * hidden

    def forward(self, chars: Tensor, lengths: Tensor) -> Tensor:
        out = self.rnn(self.embedding(chars), lengths)  # (W, C, 2h)
        hidden = out.size(2) // 2
        last = (lengths - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, hidden)
        forward_last = out[:, :, :hidden].gather(1, last).squeeze(1)
        backward_last = out[:, 0, hidden:]  # the backward direction ends at the first character
        return torch.cat([forward_last, backward_last], dim=-1)
