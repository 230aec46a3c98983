"""Stacked LSTM/GRU built from single-layer fused kernels.

Each layer owns its weights and calls `torch.lstm` / `torch.gru`, the same fused kernels
(oneDNN on CPU, cuDNN on GPU) that nn.LSTM calls; a GRU on CPU, which has no fused kernel,
runs `gru_cpu.gru_window`. Owning the weights is what lets weight
drop (DropConnect on the hidden-to-hidden matrix) be a plain `F.dropout` of a tensor
passed to the kernel: no deleting and re-registering parameters, the trick that broke
AWD-LSTM's WeightDrop on newer PyTorch versions. Layers are separate so that locked
dropout can sit between them.
"""

from __future__ import annotations

import contextlib
import math
import threading
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nlp_lstm.models import cudnn_weights
from nlp_lstm.models.dropout import SequenceDropout
from nlp_lstm.models.gru_cpu import gru_window

# Per layer: (h, c) for an LSTM, (h,) for a GRU; each (1, batch, hidden).
LayerState = Tuple[Tensor, ...]
State = List[LayerState]

_GATES = {"lstm": 4, "gru": 3}


def rnn_dtype(x: Tensor) -> torch.dtype:
    """The dtype an RNN kernel runs in: autocast's where it is on, else the input's. On a
    GPU whose PyTorch hands no bf16 RNN to cuDNN, bf16 becomes fp32 (TF32 where enabled):
    the alternative there is a slow step-by-step loop."""
    dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
    if (
        dtype == torch.bfloat16
        and x.is_cuda
        and torch.backends.cudnn.enabled
        and not cudnn_weights.runs_in_cudnn(dtype, x.device)
    ):
        return torch.float32
    return dtype


class RNNLayer(nn.Module):
    def __init__(self, cell: str, input_size: int, hidden_size: int, weight_drop: float = 0.0) -> None:
        super().__init__()
        if cell not in _GATES:
            raise ValueError(f"cell must be lstm or gru, got {cell!r}")
        self.cell, self.input_size, self.hidden_size, self.weight_drop = cell, input_size, hidden_size, weight_drop
        gates = _GATES[cell] * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(gates, input_size))
        self.weight_hh = nn.Parameter(torch.empty(gates, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(gates))
        self.bias_hh = nn.Parameter(torch.empty(gates))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)  # as nn.LSTM / nn.GRU
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def _apply(self, fn, recurse=True):
        # Moved to a GPU: the parameters become views of one buffer in cuDNN's layout.
        out = super()._apply(fn, recurse)
        if cudnn_weights.usable(self.weight_ih):
            cudnn_weights.flatten_in_place(
                [self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh],
                self.cell,
                self.input_size,
                self.hidden_size,
            )
        return out

    def initial_state(self, batch_size: int, device, dtype=torch.float32) -> LayerState:
        zeros = lambda: torch.zeros(1, batch_size, self.hidden_size, device=device, dtype=dtype)  # noqa: E731
        return (zeros(), zeros()) if self.cell == "lstm" else (zeros(),)

    def forward(self, x: Tensor, state: LayerState) -> Tuple[Tensor, LayerState]:
        """x: (batch, time, input) -> (batch, time, hidden), new state.

        The precision is decided here, not by autocast's RNN wrappers (which on CUDA have
        cast cuDNN RNNs to fp16 whatever the autocast dtype): the kernel gets its input,
        weights and states in `rnn_dtype` (bf16 under trainer.precision=bf16, fp16 under
        fp16, else the input's dtype) with autocast off, and returns them in that dtype.
        The CPU GRU kernel runs its products in that dtype and keeps its state in fp32.
        """
        dtype = rnn_dtype(x)
        w_hh = self.weight_hh
        dropped = self.training and self.weight_drop > 0
        if dropped:
            w_hh = F.dropout(w_hh, self.weight_drop, True)
        params = [self.weight_ih, w_hh, self.bias_ih, self.bias_hh]
        with torch.autocast(x.device.type, enabled=False):
            if self.cell == "gru" and x.device.type == "cpu" and x.size(1) > 0 and not _EXPORTING.on:
                out, h = gru_window(x, state[0][0], *params, mm_dtype=dtype)  # CPU has no fused GRU kernel
                return out, (h.unsqueeze(0),)
            x, params = x.to(dtype), [p.to(dtype) for p in params]
            if (dropped or dtype != self.weight_ih.dtype) and cudnn_weights.usable(x):
                # tensors other than the (flat) parameters: one buffer in cuDNN's layout
                params = cudnn_weights.in_cudnn_layout(params, self.cell, self.input_size, self.hidden_size)
            state = tuple(s.to(dtype) for s in state)
            if self.cell == "lstm":
                out, h, c = torch.lstm(x, state, params, True, 1, 0.0, self.training, False, True)
                return out, (h, c)
            out, h = torch.gru(x, state[0], params, True, 1, 0.0, self.training, False, True)
            return out, (h,)

    def extra_repr(self) -> str:
        return f"{self.cell}, {self.input_size}, {self.hidden_size}, weight_drop={self.weight_drop}"


class _Exporting(threading.local):
    on = False


_EXPORTING = _Exporting()


@contextlib.contextmanager
def fused_gru_on_cpu():
    """GRU layers call torch.gru on the CPU too (export: the CPU kernel's Python loop over
    time cannot become a graph with a dynamic length)."""
    previous, _EXPORTING.on = _EXPORTING.on, True
    try:
        yield
    finally:
        _EXPORTING.on = previous


class StackedRNN(nn.Module):
    """Layers of one direction; dropout between layers, none after the last. `last_size`:
    the last layer's size where it differs (AWD-LSTM's last layer has the embedding's size,
    so tied weights need no projection)."""

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        dropout_hidden: float = 0.0,
        weight_drop: float = 0.0,
        locked_dropout: bool = True,
        last_size: Optional[int] = None,
    ) -> None:
        super().__init__()
        sizes = [hidden_size] * (num_layers - 1) + [last_size or hidden_size]
        self.layers = nn.ModuleList(
            RNNLayer(cell, input_size if i == 0 else sizes[i - 1], sizes[i], weight_drop) for i in range(num_layers)
        )
        self.between = SequenceDropout(dropout_hidden, locked_dropout)
        self.hidden_size = sizes[-1]  # what the stack outputs

    def initial_state(self, batch_size: int, device, dtype=torch.float32) -> State:
        return [layer.initial_state(batch_size, device, dtype) for layer in self.layers]

    def forward(self, x: Tensor, state: Optional[State] = None) -> Tuple[Tensor, State]:
        outputs, new_state = self.forward_layers(x, state)
        return outputs[-1], new_state

    def forward_layers(self, x: Tensor, state: Optional[State] = None) -> Tuple[List[Tensor], State]:
        """Every layer's output (before the dropout between layers), and the new state."""
        if state is None:
            state = self.initial_state(x.size(0), x.device)
        new_state: State = []
        outputs: List[Tensor] = []
        for i, layer in enumerate(self.layers):
            if i > 0:
                x = self.between(x)
            x, layer_state = layer(x, state[i])
            outputs.append(x)
            new_state.append(layer_state)
        return outputs, new_state


def detach_state(state):
    """Cut the graph at a truncated-BPTT window boundary (works on nested lists/tuples)."""
    if isinstance(state, Tensor):
        return state.detach()
    return type(state)(detach_state(s) for s in state)


def mask_state(state, keep: Tensor):
    """The state where `keep` (a 0-d bool tensor) is true, else zeros (the initial state),
    chosen on the device (no host sync); nested lists/tuples as detach_state."""
    if isinstance(state, Tensor):
        return torch.where(keep, state, torch.zeros((), dtype=state.dtype, device=state.device))
    return type(state)(mask_state(s, keep) for s in state)
