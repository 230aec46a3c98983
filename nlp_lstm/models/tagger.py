"""Sequence tagger: word (+ char, + extra column) embeddings -> stacked BiLSTM/BiGRU ->
softmax or CRF head."""

from __future__ import annotations

from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nlp_lstm.models.crf import CRF
from nlp_lstm.models.dropout import SequenceDropout
from nlp_lstm.models.encoders import BiRNN, CharBiLSTM, CharCNN, reverse_padded

UNK_INDEX = 1  # <unk> in the word vocabulary (0 is padding)


class SequenceTagger(nn.Module):
    def __init__(self, cfg, num_words: int, num_chars: int, num_tags: int, feature_sizes: Dict[str, int],
                 crf_constraints: Optional[Dict[str, Tensor]] = None, lm: Optional[nn.Module] = None,
                 lm_eos: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_tags = num_tags
        self.word_embedding = nn.Embedding(num_words, cfg.emb_size, padding_idx=0)
        nn.init.uniform_(self.word_embedding.weight, -cfg.init_range, cfg.init_range)
        size = cfg.emb_size
        self.char_encoder = None
        if cfg.char_features == "cnn":
            self.char_encoder = CharCNN(num_chars, cfg.char_emb_size, cfg.char_hidden_size)
        elif cfg.char_features == "lstm":
            self.char_encoder = CharBiLSTM(num_chars, cfg.char_emb_size, cfg.char_hidden_size)
        if self.char_encoder is not None:
            size += self.char_encoder.output_size
        self.feature_embeddings = nn.ModuleDict(
            {name: nn.Embedding(n, cfg.feature_emb_size, padding_idx=0) for name, n in sorted(feature_sizes.items())})
        size += cfg.feature_emb_size * len(feature_sizes)
        self.lm, self.lm_eos = lm, lm_eos
        if lm is not None:
            size += lm.decoder_in * lm.num_directions
            if not cfg.lm_fine_tune:
                for p in lm.parameters():
                    p.requires_grad_(False)
        self.input_dropout = SequenceDropout(cfg.dropout_input, cfg.locked_dropout)
        self.encoder = BiRNN(cfg.cell, size, cfg.hidden_size, cfg.num_layers, cfg.dropout_hidden, cfg.locked_dropout)
        self.output_dropout = SequenceDropout(cfg.dropout_output, cfg.locked_dropout)
        self.emissions = nn.Linear(self.encoder.output_size, num_tags)
        self.crf = CRF(num_tags, **(crf_constraints or {})) if cfg.head == "crf" else None

    def forward(self, batch) -> Tensor:
        """Emission scores (B, T, num_tags)."""
        words = batch.words
        if self.training and self.cfg.word_dropout > 0:
            drop = torch.rand(words.shape, device=words.device) < self.cfg.word_dropout
            words = words.masked_fill(drop & batch.mask, UNK_INDEX)
        parts = [self.word_embedding(words)]
        if self.char_encoder is not None:
            per_word = self.char_encoder(batch.chars, batch.char_lengths)  # (W, c) for the real words
            grid = per_word.new_zeros(*words.shape, per_word.size(1))
            grid[batch.mask] = per_word  # row-major order matches collate's
            parts.append(grid)
        for name, embedding in self.feature_embeddings.items():
            parts.append(embedding(batch.features[name]))
        if self.lm is not None:
            with torch.set_grad_enabled(self.cfg.lm_fine_tune and torch.is_grad_enabled()):
                parts.append(self.lm_features(batch.lm_ids, batch.lengths))
        x = self.input_dropout(torch.cat(parts, dim=-1))
        h = self.output_dropout(self.encoder(x, batch.lengths))
        return self.emissions(h)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.lm is not None and not self.cfg.lm_fine_tune:
            self.lm.eval()  # a frozen LM gives the same features in training as in use
        return self

    def lm_features(self, lm_ids: Tensor, lengths: Tensor) -> Tensor:
        """The feature LM's state after each word: forward, and backward for a bidirectional LM.

        Each direction reads <eos> (a line start, as in its training) and then the words in
        its own order; the backward direction gets each sentence reversed within its length.
        """
        start = torch.full_like(lm_ids[:, :1], self.lm_eos)
        states = self.lm.initial_state(lm_ids.size(0), lm_ids.device)
        forward, _ = self.lm(torch.cat([start, lm_ids], 1), states[0], 0)
        out = [forward[:, 1:]]
        if self.lm.num_directions == 2:
            backward, _ = self.lm(torch.cat([start, reverse_padded(lm_ids, lengths)], 1), states[1], 1)
            out.append(reverse_padded(backward[:, 1:], lengths))
        return torch.cat(out, dim=-1)

    def loss(self, emissions: Tensor, batch) -> Tensor:
        """Summed negative log-likelihood over the batch's sentences."""
        if self.crf is not None:
            return self.crf.nll(emissions, batch.tags, batch.mask)
        return F.cross_entropy(emissions.float()[batch.mask], batch.tags[batch.mask], reduction="sum")

    @torch.no_grad()
    def decode(self, emissions: Tensor, batch) -> List[List[int]]:
        if self.crf is not None:
            return self.crf.viterbi(emissions, batch.mask)
        best = emissions.argmax(-1).cpu()
        return [best[b, :n].tolist() for b, n in enumerate(batch.lengths.tolist())]
