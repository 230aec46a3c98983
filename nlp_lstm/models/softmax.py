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

import functools
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nlp_lstm.data.lm_batches import IGNORE_INDEX
from nlp_lstm.speed_choices import choose

ROW_CHUNK = 128  # CPU: rows of the log-softmax pass: 128 x 33k fp32 is 17 MB, within a server's L3
EVAL_ROW_CHUNK = 1024  # CPU: without a gradient to write, larger products are faster
VOCAB_CHUNK = 4096  # rows of the weight gradient computed (and cast to fp32) at a time
# GPU: a 128-row chunk leaves the card idle between small kernel launches; what bounds a
# chunk there is memory, so it takes as many rows as fit this many bytes of fp32 logits.
ACCELERATOR_CHUNK_BYTES = 256 * 2**20
# CPU: rows per matrix product of the training forward. One product over all rows streams the
# weight once and runs the BLAS at its best (an AVX2 EPYC: 1.45x the speed of 128-row
# products); on other CPUs smaller products that stay in cache have won. So it is timed
# once per machine and shape (speed_choices) among these.
PRODUCT_ROWS = ("128", "512", "all")
DEFAULT_PRODUCT_ROWS = "128"


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
        nll, grad_logits = _nll_and_logit_gradient(x, w, b, targets, _product_rows(x, w, b, targets))
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
                torch.mul(
                    grad_logits[:, j : j + VOCAB_CHUNK].t() @ x, grad_output, out=grad_weight[j : j + VOCAB_CHUNK]
                )
        if ctx.needs_input_grad[2]:
            grad_bias = grad_logits.sum(0, dtype=torch.float32).mul_(grad_output).to(bias_dtype)
        return grad_features, grad_weight, grad_bias, None, None


def _nll_and_logit_gradient(
    x: Tensor, w: Tensor, b: Tensor, targets: Tensor, product_rows: int
) -> Tuple[Tensor, Tensor]:
    """Summed NLL (fp32) and d(NLL)/d(logits) (softmax - one-hot, in x's dtype; zero rows for
    ignored targets). The logits are computed `product_rows` rows per matrix product, straight
    into the gradient's buffer; the log-softmax pass then goes over them in cache-sized row
    chunks, writing each chunk's gradient in place while it is hot."""
    valid = targets != IGNORE_INDEX
    safe = targets.clamp(min=0)[:, None]
    grad_logits = torch.empty(x.size(0), w.size(0), dtype=x.dtype, device=x.device)
    nll = torch.zeros((), dtype=torch.float32, device=x.device)
    chunk = min(product_rows, row_chunk(x.device.type, w.size(0), training=True))
    for i in range(0, x.size(0), product_rows):
        torch.addmm(b, x[i : i + product_rows], w.t(), out=grad_logits[i : i + product_rows])
        for j in range(i, min(i + product_rows, x.size(0)), chunk):
            rows = slice(j, min(j + chunk, i + product_rows))
            log_probs = torch.log_softmax(grad_logits[rows], dim=1, dtype=torch.float32)
            nll -= (log_probs.gather(1, safe[rows]).squeeze(1) * valid[rows]).sum()
            probs = log_probs.exp_()
            probs.scatter_add_(1, safe[rows], probs.new_full((probs.size(0), 1), -1.0))
            probs.mul_(valid[rows, None])  # ignored targets contribute no gradient
            grad_logits[rows].copy_(probs)
    return nll, grad_logits


def _product_rows(x: Tensor, w: Tensor, b: Tensor, targets: Tensor) -> int:
    """Rows per matrix product: memory-sized on an accelerator; on a CPU the fastest of
    PRODUCT_ROWS on these shapes, timed once (the first batch's rows stand for all: with
    variable BPTT they vary from step to step)."""
    if x.device.type != "cpu":
        return row_chunk(x.device.type, w.size(0), training=True)
    rows = {"all": x.size(0)} | {n: int(n) for n in PRODUCT_ROWS if n != "all"}
    choice = choose(
        "softmax rows per product",
        f"{w.size(0)} classes x {w.size(1)}, {str(x.dtype).removeprefix('torch.')}",
        x.device,
        {name: functools.partial(_nll_and_logit_gradient, x, w, b, targets, n) for name, n in rows.items()},
        default=DEFAULT_PRODUCT_ROWS,
        rounds=2,
    )
    return rows[choice]


def linear_cross_entropy(features: Tensor, weight: Tensor, bias: Tensor, targets: Tensor) -> Tensor:
    """Summed fp32 NLL; features (N, d), weight (V, d), targets (N,) with IGNORE_INDEX allowed."""
    dtype = _compute_dtype(features)
    needs_grad = torch.is_grad_enabled() and (features.requires_grad or weight.requires_grad or bias.requires_grad)
    if not needs_grad:  # evaluation: chunked log-softmax, no gradient buffer
        x, w, b = features.to(dtype), weight.to(dtype), bias.to(dtype)
        total = torch.zeros((), dtype=torch.float32, device=features.device)
        chunk = row_chunk(x.device.type, w.size(0), training=False)
        for i in range(0, x.size(0), chunk):
            logits = torch.addmm(b, x[i : i + chunk], w.t()).float()
            total += F.cross_entropy(logits, targets[i : i + chunk], ignore_index=IGNORE_INDEX, reduction="sum")
        return total
    with torch.autocast(features.device.type, enabled=False):
        return _LinearCrossEntropy.apply(features, weight, bias, targets, dtype)


class AdaptiveSoftmax(nn.Module):
    """Grave et al.'s adaptive softmax: the parameters of torch.nn.AdaptiveLogSoftmaxWithLoss
    (so packages keep its layout), with a training loss that needs no host sync.

    The vocabulary must be ordered by frequency, as this project's word and char
    vocabularies are: the head holds ids below the first cutoff plus one slot per tail
    cluster; rarer clusters get smaller projections (`div_value`). The module's own forward
    finds each cluster's rows with nonzero() and checks their count on the host, a wait for
    the device at every step; here the rows come from `cluster_rows`, run where the targets
    are (on the host, for a batch on its way to the device).
    """

    def __init__(self, in_features: int, vocab_size: int, cutoffs: List[int], div_value: float) -> None:
        super().__init__()
        self.adaptive = nn.AdaptiveLogSoftmaxWithLoss(in_features, vocab_size, cutoffs, div_value=div_value)
        # Where each tail cluster begins: a word's cluster is how many of these it reaches.
        self.register_buffer("tail_starts", torch.tensor(self.adaptive.cutoffs[:-1]), persistent=False)

    def log_probs(self, features: Tensor) -> Tensor:
        shape = features.shape
        return self.adaptive.log_prob(features.reshape(-1, shape[-1]).float()).view(*shape[:-1], -1)

    def cluster_rows(self, targets: Tensor, pin: bool = False) -> List[Tuple[Tensor, Tensor]]:
        """Per tail cluster, the flattened positions of its targets and their ids within it.
        Ignored targets (IGNORE_INDEX) fall in none. `pin`: in page-locked memory, for a
        copy to a GPU that does not wait for it."""
        flat = targets.reshape(-1)
        clusters = []
        for low, high in zip(self.adaptive.cutoffs[:-1], self.adaptive.cutoffs[1:]):
            rows = ((flat >= low) & (flat < high)).nonzero().squeeze(1)
            pair = (rows, flat.index_select(0, rows) - low)
            clusters.append(tuple(t.pin_memory() for t in pair) if pin else pair)
        return clusters

    def nll(self, features: Tensor, targets: Tensor, clusters: Optional[List[Tuple[Tensor, Tensor]]] = None) -> Tensor:
        """Summed NLL (fp32) of `targets` (IGNORE_INDEX scores nothing); `clusters` from
        cluster_rows (computed here, on the targets' device, when not given)."""
        a = self.adaptive
        flat, targets = features.reshape(-1, features.size(-1)), targets.reshape(-1)
        if clusters is None:
            clusters = self.cluster_rows(targets)
        keep = targets != IGNORE_INDEX
        safe = targets.clamp(min=0)  # ignored rows read id 0 and are weighted out: no branch
        cluster = torch.bucketize(safe, self.tail_starts, right=True)  # 0: the head's shortlist
        head_target = torch.where(cluster == 0, safe, a.shortlist_size + cluster - 1)
        head = F.log_softmax(a.head(flat).float(), dim=1).gather(1, head_target.unsqueeze(1)).squeeze(1)
        total = -(head * keep).sum()
        for (rows, within), tail in zip(clusters, a.tail):
            rows = rows.to(flat.device, non_blocking=True)
            within = within.to(flat.device, non_blocking=True)
            log_probs = F.log_softmax(tail(flat.index_select(0, rows)).float(), dim=1)
            total = total - log_probs.gather(1, within.unsqueeze(1)).sum()
        return total
