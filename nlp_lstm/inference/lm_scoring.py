"""Scoring a language model on a stream of ids: the one place LM metrics are computed."""

from __future__ import annotations

import math
import sys
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
from tqdm import tqdm

from nlp_lstm.data.lm_batches import IGNORE_INDEX, eval_batches
from nlp_lstm.metrics import lm_metrics
from nlp_lstm.models.rnn import detach_state


@torch.no_grad()
def score_stream(
    model,
    ids: np.ndarray,
    eos_id: int,
    batch_size: int,
    bptt: int,
    device: torch.device,
    words: Optional[int] = None,
    chars: Optional[int] = None,
    unit: str = "word",
    limit_batches: Optional[int] = None,
    rank: int = 0,
    world_size: int = 1,
    sum_over_processes: Callable[[List[float]], List[float]] = list,
    progress: Optional[bool] = False,
) -> Dict[str, float]:
    """Metrics over every token of `ids` (each line ended by eos), for each direction.

    For a bidirectional LM, `loss`/`ppl` are those of the two directions averaged in log
    space, and `ppl_forward`/`ppl_backward` are reported as well. Data-parallel (`rank` of
    `world_size` processes): the rows of the stream are independent, so rank r scores every
    world-th row and `sum_over_processes` adds the sums over ranks; every rank returns the
    one-process metrics. `progress`: a
    bar with tokens/s on stderr (None: when stderr is a terminal).
    """
    was_training = model.training
    model.eval()
    rows = range(max(1, min(batch_size, len(ids))))[rank::world_size]
    per_direction = []
    bar = _progress_bar(progress, len(ids) * model.num_directions)
    for direction in range(model.num_directions):
        total, count = torch.zeros((), dtype=torch.float64, device=device), 0
        state = model.initial_state(len(rows), device)[direction]
        for i, (x, y) in enumerate(eval_batches(ids, eos_id, batch_size, bptt, reverse=direction == 1)):
            if limit_batches is not None and i >= limit_batches:
                break
            if not rows:
                continue  # more ranks than rows: this one has nothing to score
            x, y = x[rows.start :: rows.step], y[rows.start :: rows.step]
            clusters = model.target_clusters(y)  # on the host, as the count: nothing read back per batch
            count += int((y != IGNORE_INDEX).sum())
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            features, state = model(x, state, direction)
            state = detach_state(state)
            nll, _ = model.nll(features, y, clusters)
            total += nll.double()
            if bar is not None:
                bar.update(x.numel())
        total, count = sum_over_processes([float(total), count])
        count = int(count)
        partial = count < len(ids)
        # Word- and character-normalised numbers only make sense over the whole split.
        per_direction.append(lm_metrics(total, count, None if partial else words, None if partial else chars, unit))
    model.train(was_training)
    if bar is not None:
        bar.close()
    if len(per_direction) == 1:
        return per_direction[0]
    forward, backward = per_direction
    out = {k: (forward[k] + backward[k]) / 2 for k in ("loss", "bpc") if k in forward}
    out["ppl"] = math.exp(out["loss"])
    if "word_ppl" in forward:
        out["word_ppl"] = math.exp((math.log(forward["word_ppl"]) + math.log(backward["word_ppl"])) / 2)
    out["ppl_forward"], out["ppl_backward"] = forward["ppl"], backward["ppl"]
    out["tokens"] = forward["tokens"]
    return out


def _progress_bar(progress: Optional[bool], total: int):
    if not (sys.stderr.isatty() if progress is None else progress):
        return None
    return tqdm(total=total, unit=" tokens", unit_scale=True, file=sys.stderr, desc="scoring", dynamic_ncols=True)
