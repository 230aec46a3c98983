"""Output layers over a vocabulary: a fused full softmax, a sampled one, an adaptive softmax.

The full softmax over a large vocabulary dominates a small LM's step. The textbook way
(`linear` -> `.float()` -> `cross_entropy`) materialises the fp32 logits, their fp32
log-softmax and the fp32 gradient of each: four passes over a (tokens x vocab) array that
is larger than any cache, and one matrix product whose shape the BLAS may not run at its
best. `linear_cross_entropy` instead computes the logits in products cut as this machine
runs them fastest (row blocks or class blocks, timed once: speed_choices), takes the
log-softmax in fp32 over cache-sized row chunks, and writes the logits' gradient (softmax -
one-hot) in place in the compute dtype. Backward is then just the two matrix products.
Scoring (no gradient) keeps a running log-sum-exp over class blocks instead of the logits
(with class blocks, the timed choice where they win, no (tokens x vocab) array at all). Under
bf16 autocast the matrix products run in bf16 from one cast of the weight per call, with
fp32 log-softmax, loss and weight gradient. `sampled_softmax_nll` estimates the loss over
drawn classes, for a training-only cost (the tagger's).
"""

from __future__ import annotations

import functools
import math
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nlp_lstm.data.lm_batches import IGNORE_INDEX
from nlp_lstm.speed_choices import choose

ROW_CHUNK = 128  # CPU: rows of the log-softmax pass: 128 x 33k fp32 is 17 MB, within a server's L3
EVAL_ROW_CHUNK = 1024  # CPU: rows of logits scored at a time without a gradient to write
# GPU: a 128-row chunk leaves the card idle between small kernel launches; what bounds a
# chunk there is memory, so it takes as many rows as fit this many bytes of fp32 logits.
ACCELERATOR_CHUNK_BYTES = 256 * 2**20
# CPU: how the (rows x classes) logits are cut into matrix products. Which is fastest depends
# on the BLAS and the caches, so it is timed once per machine and shape (speed_choices):
# small row blocks that stay in cache won on an AMX Xeon; on an AVX2 EPYC one product per
# block of a few hundred classes (the weight's block stays in cache while every row passes)
# ran the 700 x 650 x 33,278 logits 1.4-1.6x faster than one product over everything.
PRODUCT_LAYOUTS = ("128 rows", "512 rows", "all rows", "256 classes", "1024 classes")
DEFAULT_PRODUCT_LAYOUT = "128 rows"
# Scoring (no gradient) keeps no logits: each block of classes' product is folded into a
# running log-sum-exp while it is in cache (AVX2 EPYC, wt2_medium: 1.4x the full product).
SCORING_LAYOUTS = ("all classes", "256 classes", "512 classes")  # each block of EVAL_ROW_CHUNK rows
DEFAULT_SCORING_LAYOUT = "all classes"
# CPU: classes of the weight gradient per product (each cast to the weight's dtype while in
# cache); timed like the layouts (AVX2 EPYC: 512 classes 1.4x faster than 4096).
WEIGHT_GRADIENT_CLASSES = ("512", "4096")
DEFAULT_WEIGHT_GRADIENT_CLASSES = "4096"


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
        nll, grad_logits = _nll_and_logit_gradient(x, w, b, targets, _product_layout(x, w, b, targets))
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
            classes = _weight_gradient_classes(grad_logits, x, w)
            same_dtype = weight_dtype == x.dtype
            # In one precision the upstream gradient scales the small (rows x d) factor, not
            # the (classes x d) product: one pass over the weight's gradient less. In bf16 it
            # stays an fp32 factor on the cast product (a bf16 one would bias every entry).
            scaled = x * grad_output if same_dtype else x
            for j in range(0, w.size(0), classes):
                block, product_of = grad_weight[j : j + classes], grad_logits[:, j : j + classes].t()
                if same_dtype:
                    torch.mm(product_of, scaled, out=block)
                else:
                    torch.mul(product_of @ x, grad_output, out=block)
        if ctx.needs_input_grad[2]:
            grad_bias = grad_logits.sum(0, dtype=torch.float32).mul_(grad_output).to(bias_dtype)
        return grad_features, grad_weight, grad_bias, None, None


def _logits_into(out: Tensor, x: Tensor, w: Tensor, b: Tensor, classes: int) -> Tensor:
    """out = x @ w.T + b, `classes` columns per matrix product (each written in place into
    its columns of `out`: the BLAS takes the row stride)."""
    for j in range(0, w.size(0), classes):
        torch.addmm(b[j : j + classes], x, w[j : j + classes].t(), out=out[:, j : j + classes])
    return out


def _parse_layout(layout: str, rows: int, classes: int) -> Tuple[int, int]:
    """(rows, classes) per matrix product for a layout name such as "128 rows" or "256 classes"."""
    count, unit = layout.split()
    per = (rows if unit == "rows" else classes) if count == "all" else int(count)
    shape = (per, classes) if unit == "rows" else (rows, per)
    return max(1, shape[0]), max(1, shape[1])  # no rows: an empty loop, not a zero step


def _nll_and_logit_gradient(x: Tensor, w: Tensor, b: Tensor, targets: Tensor, layout: str) -> Tuple[Tensor, Tensor]:
    """Summed NLL (fp32) and d(NLL)/d(logits) (softmax - one-hot, in x's dtype; zero rows for
    ignored targets). The logits are computed straight into the gradient's buffer, cut into
    matrix products as `layout` says ("128 rows": 128 rows, all classes, per product; "256
    classes": all rows, 256 classes); the log-softmax pass then goes over them in cache-sized
    row chunks, within each row block while it is hot, writing each chunk's gradient in place."""
    valid = targets != IGNORE_INDEX
    safe = targets.clamp(min=0)[:, None]
    grad_logits = torch.empty(x.size(0), w.size(0), dtype=x.dtype, device=x.device)
    nll = torch.zeros((), dtype=torch.float32, device=x.device)
    block_rows, classes = _parse_layout(layout, x.size(0), w.size(0))
    chunk = min(block_rows, row_chunk(x.device.type, w.size(0), training=True))
    for i in range(0, x.size(0), block_rows):
        block = slice(i, min(i + block_rows, x.size(0)))
        _logits_into(grad_logits[block], x[block], w, b, classes)
        for j in range(block.start, block.stop, chunk):
            rows = slice(j, min(j + chunk, block.stop))
            log_probs = torch.log_softmax(grad_logits[rows], dim=1, dtype=torch.float32)
            nll -= (log_probs.gather(1, safe[rows]).squeeze(1) * valid[rows]).sum()
            probs = log_probs.exp_()
            probs.scatter_add_(1, safe[rows], probs.new_full((probs.size(0), 1), -1.0))
            probs.mul_(valid[rows, None])  # ignored targets contribute no gradient
            grad_logits[rows].copy_(probs)
    return nll, grad_logits


def _shapes(x: Tensor, w: Tensor) -> str:
    return f"{w.size(0)} classes x {w.size(1)}, {str(x.dtype).removeprefix('torch.')}"


def _product_layout(x: Tensor, w: Tensor, b: Tensor, targets: Tensor) -> str:
    """How the training logits are cut into products: by memory on an accelerator; on a CPU
    the fastest of PRODUCT_LAYOUTS on these shapes, timed once (the first batch's rows stand
    for all: with variable BPTT they vary from step to step)."""
    if x.device.type != "cpu":
        return f"{row_chunk(x.device.type, w.size(0), training=True)} rows"
    return choose(
        "softmax products",
        _shapes(x, w),
        x.device,
        {name: functools.partial(_nll_and_logit_gradient, x, w, b, targets, name) for name in PRODUCT_LAYOUTS},
        default=DEFAULT_PRODUCT_LAYOUT,
        rounds=2,
    )


def _weight_gradient_classes(grad_logits: Tensor, x: Tensor, w: Tensor) -> int:
    """Classes of the weight gradient per product: timed once per shape on a CPU."""
    if x.device.type != "cpu":
        return int(DEFAULT_WEIGHT_GRADIENT_CLASSES)

    def products(classes: int) -> None:
        for j in range(0, grad_logits.size(1), classes):
            grad_logits[:, j : j + classes].t() @ x

    return int(
        choose(
            "softmax weight-gradient classes per product",
            _shapes(x, w),
            x.device,
            {name: functools.partial(products, int(name)) for name in WEIGHT_GRADIENT_CLASSES},
            default=DEFAULT_WEIGHT_GRADIENT_CLASSES,
            rounds=2,
        )
    )


def _scoring_nll(x: Tensor, w: Tensor, b: Tensor, targets: Tensor, classes: int) -> Tensor:
    """Summed NLL (fp32) of `targets` without a gradient: the log-sum-exp of each row's logits
    is accumulated over blocks of `classes` classes (online, as in flash attention), so with
    class blocks no (rows x vocabulary) array is written; the target's logit is one dot
    product, in the blocks' dtype."""
    valid = targets != IGNORE_INDEX
    safe = targets.clamp(min=0)
    target_logit = torch.einsum("nd,nd->n", x, w.index_select(0, safe)).float() + b.index_select(0, safe).float()
    running_max = torch.full((x.size(0),), -math.inf, dtype=torch.float32, device=x.device)
    sum_exp = torch.zeros(x.size(0), dtype=torch.float32, device=x.device)
    block = torch.empty(x.size(0), min(classes, w.size(0)), dtype=x.dtype, device=x.device)
    for j in range(0, w.size(0), classes):
        logits = torch.addmm(b[j : j + classes], x, w[j : j + classes].t(), out=block[:, : min(classes, w.size(0) - j)])
        logits = logits.float()
        new_max = torch.maximum(running_max, logits.amax(1))
        # A row whose classes so far are all -inf (masked) has nothing to rescale yet.
        shift = torch.where(torch.isfinite(new_max), new_max, 0.0)
        sum_exp.mul_((running_max - shift).exp_()).add_(logits.sub_(shift[:, None]).exp_().sum(1))
        running_max = new_max
    shift = torch.where(torch.isfinite(running_max), running_max, 0.0)
    return torch.where(valid, shift + sum_exp.log() - target_logit, 0.0).sum()


SCORING_TIMING_ROWS = 256  # at least this many rows time the scoring choice


def _scoring_classes(x: Tensor, w: Tensor, b: Tensor, targets: Tensor) -> int:
    """Classes per block when scoring: timed once per shape on a CPU, on the first call's
    rows repeated to at least SCORING_TIMING_ROWS (the answer is kept for every later call,
    and a one-line `score` or a served text says little about a validation batch)."""
    if x.device.type != "cpu" or x.size(0) == 0:
        return w.size(0)

    @functools.lru_cache(maxsize=None)
    def timing_rows() -> Tuple[Tensor, Tensor]:  # made only if a timing runs, not at every call
        rows, wanted = x[:EVAL_ROW_CHUNK], targets[:EVAL_ROW_CHUNK]
        copies = -(-SCORING_TIMING_ROWS // rows.size(0))
        return rows.repeat(copies, 1), wanted.repeat(copies)

    def score(classes: int) -> Tensor:
        rows, wanted = timing_rows()
        return _scoring_nll(rows, w, b, wanted, classes)

    classes = {name: _parse_layout(name, x.size(0), w.size(0))[1] for name in SCORING_LAYOUTS}
    layout = choose(
        "softmax scoring products",
        _shapes(x, w),
        x.device,
        {name: functools.partial(score, n) for name, n in classes.items()},
        default=DEFAULT_SCORING_LAYOUT,
        rounds=2,
    )
    return classes[layout]


def linear_cross_entropy(features: Tensor, weight: Tensor, bias: Tensor, targets: Tensor) -> Tensor:
    """Summed fp32 NLL; features (N, d), weight (V, d), targets (N,) with IGNORE_INDEX allowed."""
    dtype = _compute_dtype(features)
    needs_grad = torch.is_grad_enabled() and (features.requires_grad or weight.requires_grad or bias.requires_grad)
    if not needs_grad:  # evaluation: no gradient, no logits kept
        x, w, b = features.to(dtype), weight.to(dtype), bias.to(dtype)
        total = torch.zeros((), dtype=torch.float32, device=features.device)
        chunk = row_chunk(x.device.type, w.size(0), training=False)
        classes = _scoring_classes(x, w, b, targets)
        for i in range(0, x.size(0), chunk):
            total += _scoring_nll(x[i : i + chunk], w, b, targets[i : i + chunk], classes)
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


def log_uniform_probability(ids: Tensor, num_classes: int) -> Tensor:
    """P(id) under the log-uniform (Zipfian) distribution over 0..num_classes-1, which suits
    ids ordered by frequency: log((id + 2) / (id + 1)) / log(num_classes + 1), in fp32 (as
    log1p, accurate for the rarest ids; MPS has no float64)."""
    return torch.log1p((ids.float() + 1).reciprocal()) / math.log(num_classes + 1)


def log_uniform_sample(num_samples: int, num_classes: int, device: torch.device) -> Tensor:
    """`num_samples` ids drawn with replacement from the log-uniform distribution, by its
    inverse CDF floor(exp(u * log(V + 1))) - 1: drawn on the host in float64 from torch's
    CPU generator (so a seeded run repeats on any device), then moved to `device`."""
    uniform = torch.rand(num_samples, dtype=torch.float64)
    ids = ((uniform * math.log(num_classes + 1)).exp().floor().long() - 1).clamp_(0, num_classes - 1)
    return ids.to(device, non_blocking=True)


def log_uniform_draws(num_samples: int, num_classes: int, device: torch.device) -> Tensor:
    """The distinct ids among `num_samples` log-uniform draws, sorted, on `device`."""
    return log_uniform_sample(num_samples, num_classes, torch.device("cpu")).unique().to(device, non_blocking=True)


def sampled_softmax_nll(
    features: Tensor, weight: Tensor, bias: Tensor, targets: Tensor, num_samples: int, drawn: Optional[Tensor] = None
) -> Tensor:
    """Summed sampled-softmax NLL (fp32) of `targets`: an estimate of the full softmax's loss,
    for training (Jean et al. 2015; TensorFlow's sampled_softmax_loss). Each call makes
    `num_samples` draws from the log-uniform distribution (ids must be ordered by frequency,
    most frequent first; 1,024 draws over 7,500 classes give about 530 distinct ones), shared
    by every row (`drawn`: log_uniform_draws' answer, given); each row's softmax then runs over
    its target and the distinct drawn classes, every logit less the log of its chance of being
    drawn, and a drawn class that is the row's own target is left out. Cost: rows x (distinct
    draws + 1) instead of rows x classes. A seeded run repeats its draws. The products run in
    the features' dtype (bf16 under autocast), the log-sum-exp in fp32. features (N, d),
    weight (V, d), targets (N,), IGNORE_INDEX allowed."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    num_classes = weight.size(0)
    valid = targets != IGNORE_INDEX
    safe = targets.clamp(min=0)
    if drawn is None:
        drawn = log_uniform_draws(num_samples, num_classes, features.device)

    def log_inclusion(ids: Tensor) -> Tensor:  # log P(id among num_samples draws), fp32
        p = log_uniform_probability(ids, num_classes)
        return (-torch.expm1(num_samples * torch.log1p(-p))).log()

    target_logits = torch.einsum("nd,nd->n", features, weight.index_select(0, safe)).float()
    target_logits = target_logits + bias.index_select(0, safe).float() - log_inclusion(safe)
    drawn_logits = torch.addmm(bias.index_select(0, drawn), features, weight.index_select(0, drawn).t()).float()
    drawn_logits = (drawn_logits - log_inclusion(drawn)).masked_fill(drawn[None, :] == safe[:, None], -math.inf)
    log_normaliser = torch.logsumexp(torch.cat([target_logits[:, None], drawn_logits], dim=1), dim=1)
    return torch.where(valid, log_normaliser - target_logits, 0.0).sum()
