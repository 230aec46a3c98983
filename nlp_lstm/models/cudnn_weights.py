"""cuDNN's flat weight buffer for a single-layer RNN.

cuDNN reads an RNN's weights from one contiguous buffer in its own layout. PyTorch's
`torch.lstm`/`torch.gru` pass a list of tensors and look for that buffer behind them
(the storage of the first, each tensor at cuDNN's offset); when it is not there, cuDNN
warns "RNN module weights are not part of single contiguous chunk of memory" and copies
the weights into a new buffer on every call. So, on CUDA:

- `flatten_in_place` makes a layer's parameters views of one buffer in cuDNN's layout (as
  `nn.LSTM.flatten_parameters` does), so a plain call uses them where they are;
- where the call needs other tensors than the parameters (a weight-dropped
  hidden-to-hidden matrix, a cast to bf16), `in_cudnn_layout` builds them as views of one
  new buffer at cuDNN's offsets: a single concatenation that autograd differentiates, in
  place of cuDNN's own copy, and no warning.

The layout is asked of cuDNN itself (`torch._cudnn_rnn_flatten_weight` on zero tensors),
once per shape, dtype and device.
"""

from __future__ import annotations

from functools import lru_cache
from typing import List, Sequence, Tuple

import torch
from torch import Tensor

_MODES = {"lstm": "LSTM", "gru": "GRU"}


def usable(tensor: Tensor) -> bool:
    """Whether cuDNN runs an RNN on tensors like this one (CUDA, cuDNN on, and a dtype that
    this PyTorch hands to cuDNN: asked once per dtype and device, see `runs_in_cudnn`)."""
    return (
        tensor.is_cuda
        and torch.backends.cudnn.enabled
        and torch._use_cudnn_rnn_flatten_weight()
        and runs_in_cudnn(tensor.dtype, tensor.device)
    )


@lru_cache(maxsize=None)
def runs_in_cudnn(dtype: torch.dtype, device: torch.device) -> bool:
    """Whether `torch.lstm` on `dtype` tensors dispatches to cuDNN here. PyTorch versions
    differ (some accept only fp16/fp32/fp64 for cuDNN and run anything else step by step
    in a slow native loop), so a one-step call is watched instead of guessed."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Watch(TorchDispatchMode):
        seen = False

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Watch.seen |= func.overloadpacket.__name__ == "_cudnn_rnn"
            return func(*args, **(kwargs or {}))

    x = torch.zeros(1, 1, 1, dtype=dtype, device=device)
    weights = [
        torch.zeros(4, 1, dtype=dtype, device=device),
        torch.zeros(4, 1, dtype=dtype, device=device),
        torch.zeros(4, dtype=dtype, device=device),
        torch.zeros(4, dtype=dtype, device=device),
    ]
    state = (torch.zeros(1, 1, 1, dtype=dtype, device=device),) * 2
    with torch.no_grad(), torch.autocast(device.type, enabled=False), Watch():
        torch.lstm(x, state, weights, True, 1, 0.0, False, False, True)
    return Watch.seen


def _flatten(tensors: List[Tensor], cell: str, input_size: int, hidden_size: int) -> Tensor:
    from torch.backends.cudnn import rnn

    return torch._cudnn_rnn_flatten_weight(
        tensors, 4, input_size, rnn.get_cudnn_mode(_MODES[cell]), hidden_size, 0, 1, True, False
    )


@lru_cache(maxsize=None)
def cudnn_layout(
    cell: str, input_size: int, hidden_size: int, dtype: torch.dtype, device: torch.device
) -> Tuple[Tuple[int, ...], int]:
    """(offset of w_ih, w_hh, b_ih, b_hh in elements, buffer size) in cuDNN's buffer."""
    gates = {"lstm": 4, "gru": 3}[cell] * hidden_size
    shapes = [(gates, input_size), (gates, hidden_size), (gates,), (gates,)]
    probes = [torch.zeros(shape, dtype=dtype, device=device) for shape in shapes]
    with torch.no_grad():
        buffer = _flatten(probes, cell, input_size, hidden_size)  # probes become views of it
    return tuple(p.storage_offset() for p in probes), buffer.numel()


def flatten_in_place(params: Sequence[Tensor], cell: str, input_size: int, hidden_size: int) -> None:
    """Make (w_ih, w_hh, b_ih, b_hh) views of one buffer in cuDNN's layout, values kept."""
    with torch.no_grad():
        _flatten(list(params), cell, input_size, hidden_size)


def in_layout(pieces: Sequence[Tensor], offsets: Sequence[int], total: int) -> List[Tensor]:
    """`pieces` as views of one new buffer of `total` elements, each at its offset (zeros in
    any gap): one concatenation, differentiable back to every piece."""
    order = sorted(range(len(pieces)), key=lambda i: offsets[i])
    parts, position = [], 0
    for i in order:
        if offsets[i] < position:
            raise ValueError("overlapping weight offsets")
        if offsets[i] > position:
            parts.append(pieces[i].new_zeros(offsets[i] - position))
        parts.append(pieces[i].reshape(-1))
        position = offsets[i] + pieces[i].numel()
    if total > position:
        parts.append(pieces[order[-1]].new_zeros(total - position))
    buffer = torch.cat(parts)
    return [buffer.narrow(0, offset, piece.numel()).view(piece.shape) for piece, offset in zip(pieces, offsets)]


def in_cudnn_layout(pieces: Sequence[Tensor], cell: str, input_size: int, hidden_size: int) -> List[Tensor]:
    offsets, total = cudnn_layout(cell, input_size, hidden_size, pieces[0].dtype, pieces[0].device)
    return in_layout(pieces, offsets, total)
