"""Sequence tagger: word (+ char, + extra column) embeddings -> stacked BiLSTM/BiGRU ->
softmax or CRF head."""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nlp_lstm.data.lm_batches import IGNORE_INDEX
from nlp_lstm.errors import ConfigError
from nlp_lstm.models.crf import CRF
from nlp_lstm.models.dropout import SequenceDropout, embedding_dropout
from nlp_lstm.models.encoders import BiRNN, CharBiLSTM, CharCNN, reverse_padded
from nlp_lstm.models.softmax import linear_cross_entropy, sampled_softmax_nll

UNK_INDEX = 1  # <unk> in the word vocabulary (0 is padding)
TRAINING_ONLY_PREFIX = "neighbour_words."  # state_dict keys a model package leaves out


class NeighbourWordObjective(nn.Module):
    """Rei (2017)'s auxiliary language-modelling cost on a bidirectional layer: the forward
    state at word t predicts word t+1, the backward state predicts word t-1, each through its
    own tanh layer and softmax. Only the first layer qualifies: above it, the forward
    direction has already read the next word through the layer below's backward direction.

    Classes are word-vocabulary ids below `num_classes` (the vocabulary is ordered by
    frequency, so these are the most frequent words); rarer words are <unk>. Id 0, padding
    in the word vocabulary and never a word, is the sentence-boundary class: what follows
    the last word and precedes the first.
    """

    def __init__(self, state_size: int, hidden_size: int, num_classes: int, num_samples: int = 0) -> None:
        """`num_samples` > 0: in training, a sampled softmax over that many drawn classes
        (fewer than num_classes; else the full softmax); evaluation computes the full one."""
        super().__init__()
        self.num_classes = num_classes
        self.num_samples = num_samples

        def head() -> nn.Module:
            return nn.Sequential(nn.Linear(state_size, hidden_size), nn.Tanh(), nn.Linear(hidden_size, num_classes))

        self.next_word, self.previous_word = head(), head()

    def forward(self, states: Tensor, words: Tensor, positions: Tensor) -> Tensor:
        """Summed NLL over the real words of both directions. states (B, T, 2s), words (B, T),
        positions: the flat indices of the real words in (B, T) (TaggingBatch.real_word_positions).

        Only real words are scored (padding would be a third of the rows). In training with
        num_samples, each direction's softmax is sampled (sampled_softmax_nll: its own draws
        per direction and step); otherwise it is the full one through the fused
        linear_cross_entropy."""
        half = states.size(-1) // 2
        boundary = words.new_zeros(words.size(0), 1)
        # Padding is 0 = boundary, so the last real word's successor is the boundary class.
        following = torch.cat([words[:, 1:], boundary], dim=1)
        preceding = torch.cat([boundary, words[:, :-1]], dim=1)
        flat_states = states.reshape(-1, states.size(-1)).index_select(0, positions)

        def nll(head: nn.Sequential, x: Tensor, targets: Tensor) -> Tensor:
            targets = targets.reshape(-1).index_select(0, positions)
            targets = targets.masked_fill(targets >= self.num_classes, UNK_INDEX)
            hidden, output = head[1](head[0](x)), head[2]
            if self.training and 0 < self.num_samples < self.num_classes:
                return sampled_softmax_nll(hidden, output.weight, output.bias, targets, self.num_samples)
            return linear_cross_entropy(hidden, output.weight, output.bias, targets)

        return nll(self.next_word, flat_states[:, :half], following) + nll(
            self.previous_word, flat_states[:, half:], preceding
        )


class SequenceTagger(nn.Module):
    def __init__(
        self,
        cfg,
        num_words: int,
        num_chars: int,
        num_tags: int,
        feature_sizes: Dict[str, int],
        crf_constraints: Optional[Dict[str, Tensor]] = None,
        lm: Optional[nn.Module] = None,
        lm_eos: int = 0,
        for_inference: bool = False,
    ) -> None:
        """`for_inference`: leave out what only training uses (the auxiliary LM heads)."""
        super().__init__()
        self.cfg = cfg
        self.num_tags = num_tags
        self.word_embedding = nn.Embedding(num_words, cfg.emb_size, padding_idx=0)
        nn.init.uniform_(self.word_embedding.weight, -cfg.init_range, cfg.init_range)
        if cfg.word_vectors and cfg.word_vectors_freeze:
            self.word_embedding.weight.requires_grad_(False)
        size = cfg.emb_size
        self.char_encoder = None
        if cfg.char_features == "cnn":
            self.char_encoder = CharCNN(num_chars, cfg.char_emb_size, cfg.char_hidden_size)
        elif cfg.char_features == "lstm":
            self.char_encoder = CharBiLSTM(num_chars, cfg.char_emb_size, cfg.char_hidden_size)
        if self.char_encoder is not None:
            size += self.char_encoder.output_size
        self.feature_embeddings = nn.ModuleDict(
            {name: nn.Embedding(n, cfg.feature_emb_size, padding_idx=0) for name, n in sorted(feature_sizes.items())}
        )
        size += cfg.feature_emb_size * len(feature_sizes)
        self.lm, self.lm_eos = lm, lm_eos
        self.base_input_size = size
        self.lm_mix = None
        self.lm_size = 0  # the feature LM's values per word and direction
        if lm is not None:
            self.lm_size = lm.decoder_in
            if cfg.lm_features_layers == "mix":
                self.lm_mix = LayerMix(lm)
                self.lm_size = self.lm_mix.size
        # With the auxiliary LM cost, each direction of the first layer reads only the feature
        # LM's direction that has not seen the word it predicts: a backward LM state at word t
        # has read word t+1 (the forward direction's target), a forward LM state has read word
        # t-1 (the backward direction's). Upper layers read both directions as usual.
        self.lm_directions_split = lm is not None and cfg.lm_loss_weight > 0
        backward_size = None  # the first layer's backward input, where it differs
        if lm is not None:
            if self.lm_directions_split:
                backward_size = size + (self.lm_size if lm.num_directions == 2 else 0)
                size += self.lm_size
            else:
                size += self.lm_size * lm.num_directions
            if not cfg.lm_fine_tune:
                for p in lm.parameters():
                    p.requires_grad_(False)
        self.input_dropout = SequenceDropout(cfg.dropout_input, cfg.locked_dropout)
        self.encoder = BiRNN(
            cfg.cell,
            size,
            cfg.hidden_size,
            cfg.num_layers,
            cfg.dropout_hidden,
            cfg.locked_dropout,
            cfg.weight_drop,
            backward_input_size=backward_size,
        )
        self.output_dropout = SequenceDropout(cfg.dropout_output, cfg.locked_dropout)
        self.emissions = nn.Linear(self.encoder.output_size, num_tags)
        self.crf = CRF(num_tags, **(crf_constraints or {})) if cfg.head == "crf" else None
        self.neighbour_words = None
        if cfg.lm_loss_weight > 0 and not for_inference:
            self.neighbour_words = NeighbourWordObjective(
                cfg.hidden_size, cfg.lm_loss_hidden, min(cfg.lm_loss_vocab, num_words), cfg.lm_loss_samples
            )

    def forward(self, batch) -> Tensor:
        """Emission scores (B, T, num_tags)."""
        return self.emissions(self.output_dropout(self.encode(batch)[-1]))

    def training_losses(self, batch) -> Tuple[Tensor, Tensor]:
        """Summed tagging NLL over the batch's sentences, and the weighted auxiliary
        language-modelling NLL (zero without model.lm_loss_weight)."""
        layers = self.encode(batch)
        nll = self.loss(self.emissions(self.output_dropout(layers[-1])), batch)
        if self.neighbour_words is None:
            return nll, nll.new_zeros(())
        lm_nll = self.neighbour_words(self.output_dropout(layers[0]), batch.words, batch.real_word_positions())
        return nll, self.cfg.lm_loss_weight * lm_nll

    def encode(self, batch) -> List[Tensor]:
        """Every encoder layer's output (B, T, 2 * hidden_size)."""
        words = batch.words
        if self.training and self.cfg.word_dropout > 0:
            drop = torch.rand(words.shape, device=words.device) < self.cfg.word_dropout
            words = words.masked_fill(drop & batch.mask, UNK_INDEX)
        parts = [embedding_dropout(self.word_embedding, words, self.cfg.dropout_embedding, self.training)]
        if self.char_encoder is not None:
            per_word = self.char_encoder(batch.chars, batch.char_lengths)  # (U, c): each distinct word once
            if batch.char_index is not None:
                per_word = per_word.index_select(0, batch.char_index)  # (W, c) for the real words
            grid = per_word.new_zeros(words.numel(), per_word.size(1))
            grid = grid.index_copy(0, batch.real_word_positions(), per_word)  # row-major, as collate's
            parts.append(grid.view(*words.shape, -1))
        for name, embedding in self.feature_embeddings.items():
            parts.append(embedding(batch.features[name]))
        if self.lm is not None:
            states = batch.lm_states
            if states is None:
                with torch.set_grad_enabled(self.cfg.lm_fine_tune and torch.is_grad_enabled()):
                    states = self.lm_features(batch)
            states = states.to(parts[0].dtype)
            parts.append(self.lm_mix(states) if self.lm_mix is not None else states)
        x = self.input_dropout(torch.cat(parts, dim=-1))
        if not self.lm_directions_split:
            return self.encoder.forward_layers_out(x, batch.lengths)
        # [base | forward LM | backward LM]: the forward direction reads base + forward LM,
        # the backward direction base + backward LM (nothing of a forward-only LM).
        split = self.base_input_size + self.lm_size
        x_backward = torch.cat([x[..., : self.base_input_size], x[..., split:]], dim=-1)
        return self.encoder.forward_layers_out(x[..., :split], batch.lengths, x_backward)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.lm is not None and not self.cfg.lm_fine_tune:
            self.lm.eval()  # a frozen LM gives the same features in training as in use
        return self

    def lm_features(self, batch) -> Tensor:
        """(B, T, D): per word, the feature LM's forward state after the word's last token
        and, for a bidirectional LM, its backward state after reading back to the word's
        first token (Akbik et al. 2018 for character LMs; Peters et al. 2018 for word LMs).

        Each direction reads <eos> (a line start, as in its training) and then the sentence's
        stream in its own order; the backward direction gets each stream reversed within its
        length, so both read real tokens before any padding."""
        lm_ids, lengths = batch.lm_ids, batch.lm_lengths
        start = torch.full_like(lm_ids[:, :1], self.lm_eos)
        states = self.lm.initial_state(lm_ids.size(0), lm_ids.device)

        def run(tokens: Tensor, direction: int) -> Tensor:
            if self.lm_mix is None:
                return self.lm(tokens, states[direction], direction)[0]
            return torch.cat(self.lm.layer_outputs(tokens, states[direction], direction), dim=-1)

        forward = run(torch.cat([start, lm_ids], 1), 0)
        out = [_gather_positions(forward, batch.lm_last + 1)]  # +1: past the <eos> read first
        if self.lm.num_directions == 2:
            backward = run(torch.cat([start, reverse_padded(lm_ids, lengths)], 1), 1)
            # In the reversed stream a word's first token sits at length - 1 - first.
            position = (lengths.unsqueeze(1) - batch.lm_first).clamp(min=0)
            out.append(_gather_positions(backward, position))
        return torch.cat(out, dim=-1)

    def loss(self, emissions: Tensor, batch) -> Tensor:
        """Summed negative log-likelihood over the batch's sentences."""
        if self.crf is not None:
            return self.crf.nll(emissions, batch.tags, batch.mask)
        targets = batch.tags.masked_fill(~batch.mask, IGNORE_INDEX)
        return F.cross_entropy(
            emissions.float().reshape(-1, emissions.size(-1)),
            targets.reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        )

    @torch.no_grad()
    def decode(self, emissions: Tensor, batch) -> List[List[int]]:
        if self.crf is not None:
            return self.crf.viterbi(emissions, batch.mask)
        best = emissions.argmax(-1).cpu()
        return [best[b, :n].tolist() for b, n in enumerate(batch.lengths.tolist())]


class LayerMix(nn.Module):
    """ELMo's scalar mix (Peters et al. 2018, eq. 1): gamma * sum_j softmax(w)_j * h_j over
    the feature LM's layers, with one set of weights learned by the tagger for both
    directions. Lower layers of a bidirectional LM carry more syntax (ELMo sec. 5.3: POS
    tagging is best from the first layer), so a tagger should not get only the top one.
    Input: per word [forward layer 1 .. L | backward layer 1 .. L]; output [forward | backward]."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        sizes = {layer.hidden_size for layer in lm.rnns[0].layers}
        if len(sizes) != 1:
            raise ConfigError(
                f"config model.lm_features_layers=mix: the feature LM's layers differ in size "
                f"({sorted(sizes)}); use model.lm_features_layers=top"
            )
        self.size, self.num_layers, self.num_directions = sizes.pop(), len(lm.rnns[0].layers), lm.num_directions
        self.weights = nn.Parameter(torch.zeros(self.num_layers))  # softmax(0) = an even mix to start
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, states: Tensor) -> Tensor:
        layers = states.unflatten(-1, (self.num_directions, self.num_layers, self.size))
        mix = torch.softmax(self.weights.float(), 0).to(states.dtype)
        return (self.scale.to(states.dtype) * torch.einsum("...dls,l->...ds", layers, mix)).flatten(-2)


def _gather_positions(states: Tensor, positions: Tensor) -> Tensor:
    """states (B, S, D), positions (B, T) -> (B, T, D)."""
    return states.gather(1, positions.unsqueeze(-1).expand(-1, -1, states.size(-1)))
