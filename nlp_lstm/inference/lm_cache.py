"""The neural cache pointer (Grave et al. 2017, "Improving neural language models with a
continuous cache") at evaluation time, for any LM package of this project.

The probability of the next token mixes the model's softmax with a cache of the text
already read:

    p(w | h_t) = (1 - lambda) * p_model(w | h_t) + lambda * p_cache(w | h_t)
    p_cache(w | h_t) = sum over the last `size` positions i < t with x_{i+1} = w of
                       softmax_i(theta * h_t . h_i)

where h_i is the state the model's output layer reads at position i (the decoder input)
and x_{i+1} the token that followed it. Only tokens already scored enter the cache. With an
empty cache (the very first token of a row) p = p_model. Probabilities stay in log space
(a token the model gives log p < -104 underflows fp32's exp).

Each evaluation row is one continuous text with its own cache, which never sees the text
of the other rows: one row (the default, as AWD-LSTM's pointer.py with batch size 1)
scores every token with the full history; with more rows, none is made shorter than the
cache.
"""

from __future__ import annotations

import math
from typing import Dict, Iterable, Tuple

import numpy as np
import torch

from nlp_lstm.data.lm_batches import IGNORE_INDEX, eval_batches
from nlp_lstm.metrics import safe_exp
from nlp_lstm.models.rnn import detach_state


@torch.no_grad()
def score_with_cache(
    model,
    ids: np.ndarray,
    eos_id: int,
    batch_size: int,
    bptt: int,
    device: torch.device,
    size: int,
    settings: Iterable[Tuple[float, float]],
    direction: int = 0,
) -> Dict:
    """Summed NLL without the cache and with it for each (theta, lambda) in `settings`, over
    every token of `ids` read in `direction`: {"tokens", "rows", "nll", "cache": {(theta,
    lam): nll}}. At most `batch_size` rows, each at least `size` tokens long (one row when
    the text is shorter than two caches).

    One pass of the model; the cache terms for every setting come from the same states.
    """
    settings = list(settings)
    was_training = model.training
    model.eval()
    rows = max(1, min(batch_size, len(ids) // size))
    state = model.initial_state(rows, device)[direction]
    keys = torch.zeros(rows, 0, model.decoder_in, device=device)  # cached states
    values = torch.zeros(rows, 0, dtype=torch.long, device=device)  # the token after each
    plain = torch.zeros((), dtype=torch.float64, device=device)
    cached = [torch.zeros((), dtype=torch.float64, device=device) for _ in settings]
    tokens = 0
    for x, y in eval_batches(ids, eos_id, rows, bptt, reverse=direction == 1):
        x, y = x.to(device), y.to(device)
        features, state = model(x, state, direction)
        state = detach_state(state)
        features = features.float()
        scored = y != IGNORE_INDEX
        target = y.clamp(min=0)
        log_model = model.target_log_probs(features, y)  # (B, L)
        plain -= torch.where(scored, log_model, 0.0).sum().double()
        tokens += int(scored.sum())
        # Keys for the window's queries: the cache, then the window's own earlier positions.
        all_keys = torch.cat([keys, features], dim=1)  # (B, N + L, d)
        all_values = torch.cat([values, torch.where(scored, y, IGNORE_INDEX)], dim=1)
        n, length = keys.size(1), features.size(1)
        query = torch.arange(length, device=device).unsqueeze(1) + n  # each query's own position
        key = torch.arange(n + length, device=device).unsqueeze(0)
        visible = (key < query) & (key >= query - size)  # the `size` positions before the query
        visible = visible.unsqueeze(0) & (all_values != IGNORE_INDEX).unsqueeze(1)  # (B, L, N + L)
        dots = torch.einsum("bld,bkd->blk", features, all_keys)
        hits = (all_values.unsqueeze(1) == target.unsqueeze(2)) & visible  # keys followed by the target
        has_cache = visible.any(dim=2)
        for i, (theta, lam) in enumerate(settings):
            # log p = logaddexp(log(1 - lam) + log p_model, log lam + log p_cache), log p_cache
            # the log-sum of the attention weights of the keys followed by the target (-inf
            # for none). NaN (a query with an empty cache) is only ever masked out.
            log_weights = torch.log_softmax((theta * dots).masked_fill(~visible, float("-inf")), dim=2)
            log_cache = torch.logsumexp(log_weights.masked_fill(~hits, float("-inf")), dim=2)
            log_mix = torch.logaddexp(_log(1 - lam) + log_model, _log(lam) + log_cache)
            log_p = torch.where(has_cache, log_mix, log_model)
            cached[i] -= torch.where(scored, log_p, 0.0).sum().double()
        keys, values = all_keys[:, -size:], all_values[:, -size:]
    model.train(was_training)
    return {
        "tokens": tokens,
        "rows": rows,
        "nll": float(plain),
        "cache": {setting: float(total) for setting, total in zip(settings, cached)},
    }


def _log(weight: float) -> float:
    return math.log(weight) if weight > 0 else float("-inf")


def cache_report(result: Dict) -> Dict:
    """Perplexities from `score_with_cache`'s sums, the best setting first."""
    tokens = result["tokens"]
    rows = [
        {"theta": theta, "lambda": lam, "ppl": safe_exp(nll / tokens)} for (theta, lam), nll in result["cache"].items()
    ]
    rows.sort(key=lambda r: r["ppl"])
    return {"tokens": tokens, "rows": result["rows"], "ppl": safe_exp(result["nll"] / tokens), "cache": rows}
