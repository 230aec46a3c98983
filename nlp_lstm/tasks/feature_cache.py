"""States of a frozen feature LM, computed once for the training sentences.

A frozen LM (model.lm_features without model.lm_fine_tune) gives every training sentence
the same features in every epoch, and running it is most of a step's cost for a large
character LM. The cache runs it once over the train split, at the first training step (so
under the run's precision), in a fixed order (length-sorted batches), which a resumed run
repeats exactly. It holds at most model.lm_features_cache_mb of states in host memory;
sentences past the budget are computed in their step as without the cache."""

from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor

from nlp_lstm.data.tagging_corpus import EncodedSentence, batch_indices, collate

log = logging.getLogger("nlp_lstm")


class FrozenFeatureCache:
    def __init__(self, budget_mb: float) -> None:
        self.budget_bytes = int(budget_mb * 2**20)
        self.states: Dict[int, Tensor] = {}
        self.filled = False

    @torch.no_grad()
    def fill(self, model, sentences: Sequence[EncodedSentence], batch_size: int, device) -> None:
        used, total = 0, len(sentences)
        for indices in batch_indices([len(s.words) for s in sentences], batch_size, shuffle=False):
            batch = collate([sentences[i] for i in indices]).to(device)
            states = model.lm_features(batch).cpu()
            for row, i in enumerate(indices):
                state = states[row, :len(sentences[i].words)].clone()
                size = state.numel() * state.element_size()
                if used + size > self.budget_bytes:
                    break
                self.states[i] = state
                used += size
            if used + states[0].numel() * states.element_size() > self.budget_bytes and len(self.states) < total:
                break
        self.filled = True
        log.info(f"feature LM states cached for {len(self.states):,} of {total:,} train sentences "
                 f"({used / 2**20:,.0f} MB; model.lm_features_cache_mb={self.budget_bytes / 2**20:,.0f})")

    def lookup(self, indices: List[int]) -> Optional[Tensor]:
        """(B, T, D) states of these sentences, zero-padded, or None if one is not cached."""
        rows = [self.states.get(i) for i in indices]
        if any(r is None for r in rows):
            return None
        return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)
