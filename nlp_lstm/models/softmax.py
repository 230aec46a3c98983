"""Output layers of the language model: a fused full softmax and an adaptive softmax.

The full softmax over a large vocabulary dominates a small LM's step. The textbook way
(`linear` -> `.float()` -> `cross_entropy`) materialises the fp32 logits, their fp32
log-softmax and the fp32 gradient of each: four passes over a (tokens x vocab) array that
is larger than any cache. `linear_cross_entropy` instead computes the logits in row
chunks, takes the log-softmax of each chunk in fp32 while it is hot in cache, and writes
the logits' gradient (softmax - one-hot) straight away in the compute dtype. Backward is
then just the two matrix products. Under bf16 autocast the matrix products run in bf16
from one cast of the weight per call, with fp32 log-softmax, loss and weight gradient.
"""

from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nlp_lstm.data.lm_batches import IGNORE_INDEX

ROW_CHUNK = 128  # CPU: rows of logits per chunk: 128 x 33k fp32 is 17 MB, within a server's L3
EVAL_ROW_CHUNK = 1024  # CPU: without a gradient to write, larger products are faster
VOCAB_CHUNK = 4096  # rows of the weight gradient computed (and cast to fp32) at a time
# GPU: a 128-row chunk leaves the card idle between small kernel launches; what bounds a
# chunk there is memory, so it takes as many rows as fit this many bytes of fp32 logits.
ACCELERATOR_CHUNK_BYTES = 256 * 2**20


def row_chunk(device_type: str, vocab_size: int, training: bool) -> int:
    """Rows of logits computed at a time: cache-sized on a CPU, memory-sized elsewhere."""
    if device_type == "cpu":
        return ROW_CHUNK if training else EVAL_ROW_CHUNK
    return max(ROW_CHUNK, ACCELERATOR_CHUNK_BYTES // (4 * max(1, vocab_size)))


def _compute_dtype(tensor: Tensor) -> torch.dtype:
    device_type = tensor.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return tensor.dtype


class _LinearCrossEntropy(torch.autograd.Function):
    """Summed NLL of `targets` under softmax(features @ weight.T + bias).

    Forward already computes d(loss)/d(logits) for a unit upstream gradient; backward
    scales the two products by the actual upstream gradient (a scalar).
    """

    @staticmethod
    def forward(ctx, features: Tensor, weight: Tensor, bias: Tensor, targets: Tensor, dtype: torch.dtype) -> Tensor:
        x, w, b = features.to(dtype), weight.to(dtype), bias.to(dtype)
        valid = targets != IGNORE_INDEX
        safe = targets.clamp(min=0)[:, None]
        grad_logits = torch.empty(x.size(0), w.size(0), dtype=dtype, device=x.device)
        nll = torch.zeros((), dtype=torch.float32, device=x.device)
        chunk = row_chunk(x.device.type, w.size(0), training=True)
        for i in range(0, x.size(0), chunk):
            rows = slice(i, i + chunk)
            log_probs = torch.log_softmax(torch.addmm(b, x[rows], w.t()), dim=1, dtype=torch.float32)
            nll -= (log_probs.gather(1, safe[rows]).squeeze(1) * valid[rows]).sum()
            probs = log_probs.exp_()
            probs.scatter_add_(1, safe[rows], probs.new_full((probs.size(0), 1), -1.0))
            probs.mul_(valid[rows, None])  # ignored targets contribute no gradient
            grad_logits[rows].copy_(probs)
        ctx.save_for_backward(x, w, grad_logits)
        ctx.dtypes = (features.dtype, weight.dtype, bias.dtype)
        return nll

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        x, w, grad_logits = ctx.saved_tensors
        features_dtype, weight_dtype, bias_dtype = ctx.dtypes
        grad_features = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_features = (grad_logits @ w).to(features_dtype).mul_(grad_output)
        if ctx.needs_input_grad[1]:
            # In vocabulary chunks, so the low-precision product is cast to the weight's
            # dtype while it is in cache, never as a second full-size pass.
            grad_weight = torch.empty(w.shape, dtype=weight_dtype, device=w.device)
            for j in range(0, w.size(0), VOCAB_CHUNK):
                torch.mul(grad_logits[:, j:j + VOCAB_CHUNK].t() @ x, grad_output, out=grad_weight[j:j + VOCAB_CHUNK])
        if ctx.needs_input_grad[2]:
            grad_bias = grad_logits.sum(0, dtype=torch.float32).mul_(grad_output).to(bias_dtype)
        return grad_features, grad_weight, grad_bias, None, None


def linear_cross_entropy(features: Tensor, weight: Tensor, bias: Tensor, targets: Tensor) -> Tensor:
    """Summed fp32 NLL; features (N, d), weight (V, d), targets (N,) with IGNORE_INDEX allowed."""
    dtype = _compute_dtype(features)
    needs_grad = torch.is_grad_enabled() and (features.requires_grad or weight.requires_grad or bias.requires_grad)
    if not needs_grad:  # evaluation: chunked log-softmax, no gradient buffer
        x, w, b = features.to(dtype), weight.to(dtype), bias.to(dtype)
        total = torch.zeros((), dtype=torch.float32, device=features.device)
        chunk = row_chunk(x.device.type, w.size(0), training=False)
        for i in range(0, x.size(0), chunk):
            logits = torch.addmm(b, x[i:i + chunk], w.t()).float()
            total += F.cross_entropy(logits, targets[i:i + chunk], ignore_index=IGNORE_INDEX, reduction="sum")
        return total
    with torch.autocast(features.device.type, enabled=False):
        return _LinearCrossEntropy.apply(features, weight, bias, targets, dtype)


class AdaptiveSoftmax(nn.Module):
    """Grave et al.'s adaptive softmax (torch.nn.AdaptiveLogSoftmaxWithLoss).

    The vocabulary must be ordered by frequency, as this project's word and char
    vocabularies are: the head holds ids below the first cutoff plus one slot per tail
    cluster; rarer clusters get smaller projections (`div_value`).
    """

    def __init__(self, in_features: int, vocab_size: int, cutoffs: List[int], div_value: float) -> None:
        super().__init__()
        self.adaptive = nn.AdaptiveLogSoftmaxWithLoss(in_features, vocab_size, cutoffs, div_value=div_value)

    def log_probs(self, features: Tensor) -> Tensor:
        shape = features.shape
        return self.adaptive.log_prob(features.reshape(-1, shape[-1]).float()).view(*shape[:-1], -1)

    def nll(self, features: Tensor, targets: Tensor) -> Tensor:
        flat, targets = features.reshape(-1, features.size(-1)), targets.reshape(-1)
        keep = targets != IGNORE_INDEX
        # Ignored rows are scored as id 0 and weighted out: no data-dependent branch on the
        # host. (The module itself still selects each cluster's rows with nonzero().)
        output = self.adaptive(flat, targets.clamp(min=0)).output.float()
        return -(output * keep).sum()
