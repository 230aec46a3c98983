"""Recurrent language model: embedding -> stacked LSTM/GRU -> (projection) -> softmax.

With `bidirectional=True` it is two directional LMs (ELMo-style) that share the embedding
and the softmax: direction 0 reads the text left to right, direction 1 reads the reversed
text, each with its own RNN stack. Each direction only ever sees the tokens before the one
it predicts in its own reading order, so neither can peek at its target.
"""

from __future__ import annotations

import logging
from typing import List, Tuple

import torch
from torch import Tensor, nn

from nlp_lstm.data.lm_batches import IGNORE_INDEX
from nlp_lstm.models.dropout import SequenceDropout, embedding_dropout
from nlp_lstm.models.rnn import StackedRNN, State
from nlp_lstm.models.softmax import AdaptiveSoftmax, linear_cross_entropy

log = logging.getLogger("nlp_lstm")


class RNNLanguageModel(nn.Module):
    def __init__(self, cfg, vocab_size: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.vocab_size = vocab_size
        self.num_directions = 2 if cfg.bidirectional else 1
        self.embedding = nn.Embedding(vocab_size, cfg.emb_size)
        self.rnns = nn.ModuleList(
            StackedRNN(
                cfg.cell,
                cfg.emb_size,
                cfg.hidden_size,
                cfg.num_layers,
                cfg.dropout_hidden,
                cfg.weight_drop,
                cfg.locked_dropout,
                cfg.last_layer_size,
            )
            for _ in range(self.num_directions)
        )
        self.input_dropout = SequenceDropout(cfg.dropout_input, cfg.locked_dropout)
        self.output_dropout = SequenceDropout(cfg.dropout_output, cfg.locked_dropout)
        out_size = cfg.last_layer_size or cfg.hidden_size
        self.decoder_in = out_size
        self.projection = None
        if cfg.tie_weights and out_size != cfg.emb_size:
            # Tying needs decoder input size == embedding size: project the RNN output.
            self.projection = nn.Linear(out_size, cfg.emb_size)
            self.decoder_in = cfg.emb_size
        nn.init.uniform_(self.embedding.weight, -cfg.init_range, cfg.init_range)
        self.decoder, self.adaptive = None, None
        # Cutoffs are set for a WikiText-sized vocabulary (the default LM is adaptive): on a
        # smaller one, clusters that would be empty go, and with none left the softmax is full.
        cutoffs = [c for c in cfg.adaptive_cutoffs if c < vocab_size]
        if cfg.softmax == "adaptive" and cutoffs:
            if cutoffs != list(cfg.adaptive_cutoffs):
                log.info(
                    f"model.adaptive_cutoffs={list(cfg.adaptive_cutoffs)}: {cutoffs} kept for a vocabulary "
                    f"of {vocab_size:,}"
                )
            self.adaptive = AdaptiveSoftmax(self.decoder_in, vocab_size, cutoffs, cfg.adaptive_div_value)
            return
        if cfg.softmax == "adaptive":
            log.info(
                f"model.adaptive_cutoffs={list(cfg.adaptive_cutoffs)}: none below the vocabulary size "
                f"{vocab_size:,}, so the softmax is full"
            )
        self.decoder = nn.Linear(self.decoder_in, vocab_size)
        nn.init.zeros_(self.decoder.bias)
        if cfg.tie_weights:
            self.decoder.weight = self.embedding.weight
        else:
            nn.init.uniform_(self.decoder.weight, -cfg.init_range, cfg.init_range)

    def initial_state(self, batch_size: int, device=None) -> List[State]:
        device = device or self.embedding.weight.device
        return [rnn.initial_state(batch_size, device) for rnn in self.rnns]

    def forward(self, tokens: Tensor, state: State, direction: int = 0) -> Tuple[Tensor, State]:
        """tokens (batch, time) -> features (batch, time, decoder_in), new state of `direction`."""
        features, state, _ = self.forward_with_activations(tokens, state, direction)
        return features, state

    def forward_with_activations(
        self, tokens: Tensor, state: State, direction: int = 0
    ) -> Tuple[Tensor, State, Tuple[Tensor, Tensor]]:
        """As forward, plus the last RNN layer's output before and after output dropout
        (what AWD-LSTM's temporal and plain activation regularisers read)."""
        x = embedding_dropout(self.embedding, tokens, self.cfg.dropout_embedding, self.training)
        x = self.input_dropout(x)
        raw, state = self.rnns[direction](x, state)
        dropped = self.output_dropout(raw)
        out = self.projection(dropped) if self.projection is not None else dropped
        return out, state, (raw, dropped)

    def layer_outputs(self, tokens: Tensor, state: State, direction: int = 0) -> List[Tensor]:
        """Every RNN layer's output of `direction` (batch, time, size), for features that mix
        the layers (ELMo); without the output projection, which belongs to the softmax."""
        x = self.input_dropout(embedding_dropout(self.embedding, tokens, self.cfg.dropout_embedding, self.training))
        return self.rnns[direction].forward_layers(x, state)[0]

    def activation_regularisers(self, raw: Tensor, dropped: Tensor) -> Tuple[Tensor, Tensor]:
        """(alpha * mean(dropped ** 2), beta * mean((raw[:, t] - raw[:, t - 1]) ** 2)), fp32."""
        ar = self.cfg.activation_reg * dropped.float().pow(2).mean()
        tar = (
            self.cfg.temporal_activation_reg * (raw[:, 1:] - raw[:, :-1]).float().pow(2).mean()
            if raw.size(1) > 1
            else raw.new_zeros((), dtype=torch.float32)
        )
        return ar, tar

    def logits(self, features: Tensor) -> Tensor:
        """Unnormalised scores (log-probabilities for the adaptive softmax) over the vocabulary."""
        if self.adaptive is not None:
            return self.adaptive.log_probs(features)
        return self.decoder(features)

    def target_log_probs(self, features: Tensor, targets: Tensor) -> Tensor:
        """log p(target) at every position, fp32, (batch, time); an IGNORE_INDEX target reads
        as id 0 (the caller masks it). Materialises the full distribution: for evaluation-time
        methods that need per-token probabilities, not for training (see `nll`)."""
        log_probs = torch.log_softmax(self.logits(features).float(), dim=-1)
        return log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)

    def target_clusters(self, targets: Tensor, pin: bool = False):
        """What the output layer needs to know of the targets before the step, computed
        where they are: on the host, for a batch on its way to the device, the step then
        reads nothing back (the adaptive softmax's rows per cluster; None for the full one)."""
        return self.adaptive.cluster_rows(targets, pin) if self.adaptive is not None else None

    def nll(self, features: Tensor, targets: Tensor, clusters=None) -> Tuple[Tensor, Tensor]:
        """Summed negative log-likelihood (fp32) and the number of scored targets;
        `clusters`: target_clusters(targets), else computed on the targets' device."""
        if self.adaptive is not None:
            loss = self.adaptive.nll(features, targets, clusters)
        else:
            flat = features.reshape(-1, features.size(-1))
            loss = linear_cross_entropy(flat, self.decoder.weight, self.decoder.bias, targets.reshape(-1))
        return loss, (targets != IGNORE_INDEX).sum()
