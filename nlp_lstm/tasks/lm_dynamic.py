"""Dynamic evaluation (Krause et al. 2018, "Dynamic evaluation of neural sequence models")
for any LM package of this project: the model adapts its weights to the text it has
already scored. The stream is read in windows; each window is scored first, then one
gradient step is taken on that window's loss, so no token is ever seen before it is
scored. The state carries across windows as in ordinary evaluation.

Two update rules, both pulling the weights back towards the trained ones by `decay`:
- `sgd`:  w <- w - lr * g + decay * (w0 - w)
- `rms`:  Krause et al.'s RMS rule,
          w <- w - lr * g / (sqrt(ms) + floor) + decay * rms_scale * (w0 - w),
  ms the mean squared gradient, estimated from the first `rms_windows` windows' gradients
  (scored without updates; the paper estimates it on training data), floor its average
  root (a weight that got no gradient there would otherwise take a huge first step), and
  rms_scale = sqrt(ms) / mean sqrt(ms): weights with larger typical gradients decay
  faster, as in the paper.
"""

from __future__ import annotations

import copy
from typing import Dict, List, Optional

import numpy as np
import torch

from nlp_lstm.data.lm_batches import IGNORE_INDEX, eval_batches
from nlp_lstm.models.rnn import detach_state


def score_dynamic(model, ids: np.ndarray, eos_id: int, batch_size: int, bptt: int, device: torch.device,
                  lr: float, decay: float = 0.0, method: str = "sgd", rms_windows: int = 5, eps: float = 1e-8,
                  per_token: bool = False) -> Dict:
    """{"tokens", "nll"} of the stream under dynamic evaluation (forward direction), and with
    `per_token` the NLL of every scored token in stream order of each row (for tests).
    The model given is not changed: a copy adapts."""
    if method not in ("sgd", "rms"):
        raise ValueError(f"dynamic evaluation method must be sgd or rms, got {method!r}")
    adapted = copy.deepcopy(model).to(device)
    adapted.eval()  # no dropout: the weights change only by the updates below
    params = [p for p in adapted.parameters()]
    for p in params:
        p.requires_grad_(True)
    original = [p.detach().clone() for p in params]
    mean_square: Optional[List[torch.Tensor]] = None
    rms_scale: List[torch.Tensor] = []
    rms_denominator: List[torch.Tensor] = []
    squares = [torch.zeros_like(p) for p in params]
    rows = max(1, min(batch_size, len(ids)))
    state = adapted.initial_state(rows, device)[0]
    total, tokens, windows = torch.zeros((), dtype=torch.float64, device=device), 0, 0
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
        windows += 1
        with torch.no_grad():
            for i, (p, g, p0) in enumerate(zip(params, grads, original)):
                if g is None:
                    continue
                if method == "sgd":
                    p.add_(g, alpha=-lr).add_(p0 - p, alpha=decay)
                    continue
                if mean_square is None:  # still estimating the gradient statistics: no update yet
                    squares[i].add_(g * g)
                    continue
                p.addcdiv_(g, rms_denominator[i], value=-lr)
                p.add_((p0 - p) * rms_scale[i], alpha=decay)
            if method == "rms" and mean_square is None and windows >= rms_windows:
                mean_square = [s / windows for s in squares]
                roots = torch.cat([m.sqrt().flatten() for m in mean_square])
                average = roots.mean().clamp_min(eps)
                rms_scale = [m.sqrt() / average for m in mean_square]
                # The average root as a floor: a word that never occurred in the estimation
                # windows has a zero mean square, and its first gradient would blow up.
                rms_denominator = [m.sqrt() + average for m in mean_square]
    out: Dict = {"tokens": tokens, "nll": float(total)}
    if per_token:
        out["per_token"] = torch.cat(token_nll, dim=1).cpu() if token_nll else torch.zeros(rows, 0)
    return out
