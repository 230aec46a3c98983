"""States of a frozen feature LM, computed once per split.

A frozen LM (model.lm_features without model.lm_fine_tune) gives every sentence the same
features in every epoch, and running it is most of a step's cost for a large character
LM. The cache runs it once over a split when the split is first used (train at the first
training step, valid at the first evaluation: under the run's precision), in a fixed order
(length-sorted batches), which a resumed run repeats exactly. All splits together hold at
most model.lm_features_cache_mb of states in host memory; sentences past the budget are
computed when used, as without the cache."""

from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence, Set, Tuple

import torch
from torch import Tensor

from nlp_lstm.data.tagging_batch import batch_indices, collate
from nlp_lstm.data.tagging_corpus import EncodedSentence

log = logging.getLogger("nlp_lstm")


class FrozenFeatureCache:
    def __init__(self, budget_mb: float) -> None:
        self.budget_bytes = int(budget_mb * 2**20)
        self.used = 0
        self.states: Dict[Tuple[str, int], Tensor] = {}
        self.filled: Set[str] = set()

    @torch.no_grad()
    def fill(self, model, split: str, sentences: Sequence[EncodedSentence], batch_size: int, device) -> None:
        before, full = len(self.states), False
        for indices in batch_indices([len(s.words) for s in sentences], batch_size, shuffle=False):
            batch = collate([sentences[i] for i in indices]).to(device)
            states = model.lm_features(batch).cpu()
            for row, i in enumerate(indices):
                state = states[row, : len(sentences[i].words)].clone()
                size = state.numel() * state.element_size()
                if self.used + size > self.budget_bytes:
                    full = True
                    break
                self.states[(split, i)] = state
                self.used += size
            if full:
                break
        self.filled.add(split)
        log.info(
            f"feature LM states cached for {len(self.states) - before:,} of {len(sentences):,} {split} "
            f"sentences ({self.used / 2**20:,.0f} MB in all; model.lm_features_cache_mb="
            f"{self.budget_bytes / 2**20:,.0f})"
        )

    def lookup(self, split: str, indices: List[int]) -> Optional[Tensor]:
        """(B, T, D) states of these sentences, zero-padded, or None if one is not cached."""
        rows = [self.states.get((split, i)) for i in indices]
        if any(r is None for r in rows):
            return None
        return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)
