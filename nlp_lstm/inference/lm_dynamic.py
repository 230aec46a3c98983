"""Dynamic evaluation (Krause et al. 2018, "Dynamic evaluation of neural sequence models")
for any LM package of this project: the model adapts its weights to the text it has
already scored. The stream is read in windows; each window is scored first, then one
gradient step is taken on that window's mean NLL, so no token is ever seen before it is
scored. The state carries across windows as in ordinary evaluation.

The paper's two update rules, w0 the trained weights and g the window's gradient; both
terms are computed from the weights w *before* the step:
- `sgd`:  w <- w - lr * g + decay * (w0 - w)
- `rms`:  w <- w - lr * g / (rms + eps) + decay * rate * (w0 - w)
  rms the root mean squared gradient of each weight over batches of the model's
  *training* text (`gradient_statistics`, each batch's gradient of its mean NLL), and
  rate = rms / avg(rms), avg the mean over the parameter tensors of each tensor's mean
  rms (as the authors' dynamiceval.py computes it), clipped at 1 / decay so that no
  weight is pulled past w0.
"""

from __future__ import annotations

import copy
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from nlp_lstm.data.lm_batches import IGNORE_INDEX, eval_batches
from nlp_lstm.models.rnn import detach_state

METHODS = ("sgd", "rms")
DEFAULT_EPS = 2e-5  # the authors' dynamiceval.py
STATISTICS_BATCH_SIZE = 100  # rows of training text per gradient, as the paper's code


def default_settings(method: str, bptt: int) -> Tuple[List[float], List[float]]:
    """(lrs, decays) tried when none are given. sgd: the lrs that were best on valid for
    this project's default WikiText-2 LM (1) and the converged AWD-LSTM (0.5), no decay
    (BENCHMARKS.md); rms: the paper's PTB/WikiText-2 grid, lr 5e-5 and 1e-4 with decay
    0.002 for 5-token windows, scaled with the window length as the authors' code scales
    them (their WikiText-2 setting at 20 tokens is lr 1.2e-4, decay 0.008)."""
    if method == "sgd":
        return [0.5, 1.0], [0.0]
    scale = bptt / 5
    return [5e-5 * scale, 1e-4 * scale], [0.002 * scale]


def _trainable_copy(model, device: torch.device):
    adapted = copy.deepcopy(model).to(device)
    adapted.eval()  # no dropout: the weights change only by the updates below
    params = list(adapted.parameters())
    for p in params:
        p.requires_grad_(True)
    return adapted, params


def gradient_statistics(
    model,
    ids: np.ndarray,
    eos_id: int,
    batch_size: int,
    bptt: int,
    device: torch.device,
    max_batches: Optional[int] = None,
) -> List[torch.Tensor]:
    """Root mean squared gradient of each parameter (in `model.parameters()` order) over
    the windows of `ids` read as `batch_size` rows, each window's gradient that of its mean
    NLL, the state carried (the paper: over the training data, before dynamic evaluation).
    `max_batches`: only the first ones. The model given is not changed."""
    adapted, params = _trainable_copy(model, device)
    squares = [torch.zeros_like(p) for p in params]
    state = adapted.initial_state(max(1, min(batch_size, len(ids))), device)[0]
    batches = 0
    for x, y in eval_batches(ids, eos_id, batch_size, bptt):
        if max_batches is not None and batches >= max_batches:
            break
        x, y = x.to(device), y.to(device)
        with torch.enable_grad():
            features, state = adapted(x, state, 0)
            loss, count = adapted.nll(features, y)
            grads = torch.autograd.grad(loss / count.clamp_min(1), params, allow_unused=True)
        state = detach_state(state)
        for s, g in zip(squares, grads):
            if g is not None:
                s.add_(g * g)
        batches += 1
    if batches == 0:
        raise ValueError("gradient statistics need at least one window of training text")
    return [(s / batches).sqrt() for s in squares]


def score_dynamic(
    model,
    ids: np.ndarray,
    eos_id: int,
    batch_size: int,
    bptt: int,
    device: torch.device,
    lr: float,
    decay: float = 0.0,
    method: str = "sgd",
    statistics: Optional[Sequence[torch.Tensor]] = None,
    eps: float = DEFAULT_EPS,
    per_token: bool = False,
) -> Dict:
    """{"tokens", "nll", "rows"} of the stream under dynamic evaluation (forward direction),
    and with `per_token` the NLL of every scored token in stream order of each row (for
    tests). `statistics`: `gradient_statistics` of the training text, for `rms`. The model
    given is not changed: a copy adapts."""
    if method not in METHODS:
        raise ValueError(f"dynamic evaluation method must be sgd or rms, got {method!r}")
    adapted, params = _trainable_copy(model, device)
    original = [p.detach().clone() for p in params]
    denominators: List[torch.Tensor] = []
    rates: List[torch.Tensor] = []
    if method == "rms":
        if statistics is None:
            raise ValueError("the rms rule needs gradient statistics of the training text (gradient_statistics)")
        roots = [r.to(device) for r in statistics]
        if [r.shape for r in roots] != [p.shape for p in params]:
            raise ValueError("gradient statistics are not of this model's parameters")
        average = float(sum(r.mean() for r in roots)) / len(roots)
        denominators = [r + eps for r in roots]
        rates = [r / average if average > 0 else torch.zeros_like(r) for r in roots]
        if decay > 0:
            rates = [r.clamp(max=1 / decay) for r in rates]
    rows = max(1, min(batch_size, len(ids)))
    state = adapted.initial_state(rows, device)[0]
    total, tokens = torch.zeros((), dtype=torch.float64, device=device), 0
    token_nll: List[torch.Tensor] = []
    for x, y in eval_batches(ids, eos_id, batch_size, bptt):
        x, y = x.to(device), y.to(device)
        with torch.enable_grad():
            features, state = adapted(x, state, 0)
            nll = -adapted.target_log_probs(features, y) * (y != IGNORE_INDEX)
            loss = nll.sum()
            count = int((y != IGNORE_INDEX).sum())
            grads = torch.autograd.grad(loss / max(1, count), params, allow_unused=True)
        state = detach_state(state)
        total += loss.detach().double()  # scored before the update below
        tokens += count
        if per_token:
            token_nll.append(nll.detach())
        with torch.no_grad():
            for i, (p, g, p0) in enumerate(zip(params, grads, original)):
                # The pull towards w0 reads w before the gradient step, as the rule is
                # written; a weight the window did not reach (g None) is only pulled back.
                pull = None
                if decay:
                    pull = (p0 - p) * rates[i] if method == "rms" else p0 - p
                if g is not None:
                    if method == "sgd":
                        p.add_(g, alpha=-lr)
                    else:
                        p.addcdiv_(g, denominators[i], value=-lr)
                if pull is not None:
                    p.add_(pull, alpha=decay)
    out: Dict = {"tokens": tokens, "nll": float(total), "rows": rows}
    if per_token:
        out["per_token"] = torch.cat(token_nll, dim=1).cpu() if token_nll else torch.zeros(rows, 0)
    return out
