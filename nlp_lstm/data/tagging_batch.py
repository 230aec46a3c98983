"""A batch of encoded sentences for a tagger: TaggingBatch, `collate` and length batching.

Every TaggingBatch field says what it is indexed by (`per`): a sentence ("sentence": its
first dimension is the batch's rows), a word ("word": the distinct-word character table and
what points into it) or nothing. `to` and `select_rows` go by those fields, so a new input
is one new field here, filled by `collate` (see nlp_lstm/inference/tagger.py for the whole
path of a new tagger input).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, fields, replace
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from nlp_lstm.data.tagging_corpus import EncodedSentence


def _per(what: str, default=None, required: bool = False):
    metadata = {"per": what}
    return field(metadata=metadata) if required else field(default=default, metadata=metadata)


@dataclass
class TaggingBatch:
    words: Tensor = _per("sentence", required=True)  # (B, T)
    chars: Tensor = _per("word", required=True)  # (U, C): the batch's distinct words, as character ids (see char_index)
    char_lengths: Tensor = _per("word", required=True)  # (U,)
    features: Dict[str, Tensor] = _per("sentence", required=True)  # name -> (B, T)
    tags: Tensor = _per("sentence", required=True)  # (B, T), 0 where padded or unknown
    mask: Tensor = _per("sentence", required=True)  # (B, T) bool
    lengths: Tensor = _per("sentence", required=True)  # (B,)
    has_gold: Tensor = _per("sentence", required=True)  # (B,) bool: every gold tag is known
    lm_ids: Optional[Tensor] = _per("sentence")  # (B, S) the feature LM's token streams, zero-padded
    # Flat positions (in B * T) of the real words, in `chars` order: made on the host by
    # collate, so placing per-word features needs no boolean indexing (a device sync).
    word_positions: Optional[Tensor] = _per("word")
    token_count: Optional[int] = _per("word")  # real words, counted by collate on the host
    lm_lengths: Optional[Tensor] = _per("sentence")  # (B,) stream lengths
    lm_first: Optional[Tensor] = _per("sentence")  # (B, T) stream position of each word's first token
    lm_last: Optional[Tensor] = _per("sentence")  # (B, T) ... and of its last
    # (B, T, D) feature-LM states given ready-made (a frozen LM's, cached by the task):
    # the model then does not run the LM.
    lm_states: Optional[Tensor] = _per("sentence")
    # (W,) for each real word (row-major), its row of `chars`: a word type's characters are
    # encoded once per batch ("the" 300 times is one row); None: one row per real word.
    char_index: Optional[Tensor] = _per("word")

    def real_word_positions(self) -> Tensor:
        if self.word_positions is not None:
            return self.word_positions
        return self.mask.reshape(-1).nonzero().squeeze(1)

    def to(self, device, non_blocking: bool = True) -> "TaggingBatch":
        """Every tensor field (and feature) on `device`; to a GPU from pinned memory, so the
        copies overlap with compute."""
        pin = torch.device(device).type == "cuda" and non_blocking

        def move(value):
            if isinstance(value, dict):
                return {name: move(t) for name, t in value.items()}
            if isinstance(value, Tensor):
                return (value.pin_memory() if pin else value).to(device, non_blocking=non_blocking)
            return value

        return replace(self, **{f.name: move(getattr(self, f.name)) for f in fields(self)})

    def select_rows(self, rows: Tensor) -> "TaggingBatch":
        """The batch of the sentences at `rows` (a 1-D index tensor, in any order): each
        per-sentence field picked by row; the distinct-word table is kept, with `char_index`
        narrowed to the kept words (so the characters of every kept word are unchanged)."""
        rows = rows.to(self.lengths.device)
        changes = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.metadata["per"] != "sentence" or value is None:
                continue
            changes[f.name] = ({name: t.index_select(0, rows) for name, t in value.items()}
                               if isinstance(value, dict) else value.index_select(0, rows))
        lengths = changes["lengths"]
        total = int(lengths.sum())
        # Real words are numbered row-major; row r's are starts[r] ... starts[r] + lengths[r] - 1.
        starts = torch.cumsum(self.lengths, 0) - self.lengths
        new_starts = torch.cumsum(lengths, 0) - lengths
        offset_in_row = torch.arange(total, device=lengths.device) - torch.repeat_interleave(
            new_starts, lengths, output_size=total)
        kept_words = torch.repeat_interleave(starts.index_select(0, rows), lengths, output_size=total) + offset_in_row
        char_rows = self.char_index if self.char_index is not None else torch.arange(
            int(self.lengths.sum()), device=lengths.device)
        return replace(self, **changes, char_index=char_rows.index_select(0, kept_words), token_count=total,
                       word_positions=None)  # positions in the new rows: computed when asked for

    @property
    def num_tokens(self) -> int:
        return self.token_count if self.token_count is not None else int(self.lengths.sum())


def _padded(rows: Sequence[Sequence[int]], width: int) -> Tensor:
    """(len(rows), width) long tensor, zero-padded: one tensor construction for the batch,
    not one per row (per-row copies dominated prediction time)."""
    return torch.tensor([list(r) + [0] * (width - len(r)) for r in rows], dtype=torch.long)


def collate(items: Sequence[EncodedSentence]) -> TaggingBatch:
    lengths = torch.tensor([len(s.words) for s in items])
    longest = int(lengths.max())
    words = _padded([s.words for s in items], longest)
    tags = _padded([s.tags if s.tags is not None else [] for s in items], longest)
    features = {n: _padded([s.features[n] for s in items], longest) for n in (items[0].features if items else {})}
    rows: Dict[Tuple[int, ...], int] = {}  # distinct words (character ids) -> row
    char_index = []
    for s in items:
        for word_chars in s.chars:
            key = tuple(word_chars)
            row = rows.get(key)
            if row is None:
                row = rows[key] = len(rows)
            char_index.append(row)
    char_lengths = torch.tensor([len(c) for c in rows])
    chars = _padded(list(rows), int(char_lengths.max()))
    mask = torch.arange(longest).unsqueeze(0) < lengths.unsqueeze(1)
    has_gold = torch.tensor([s.tags is not None for s in items])
    lm = {}
    if items and items[0].lm_ids is not None:
        lm_lengths = torch.tensor([len(s.lm_ids) for s in items])
        lm = {"lm_ids": _padded([s.lm_ids for s in items], int(lm_lengths.max())), "lm_lengths": lm_lengths,
              "lm_first": _padded([s.lm_first for s in items], longest),
              "lm_last": _padded([s.lm_last for s in items], longest)}
    return TaggingBatch(words=words, chars=chars, char_lengths=char_lengths, features=features, tags=tags, mask=mask,
                        lengths=lengths, has_gold=has_gold, word_positions=mask.reshape(-1).nonzero().squeeze(1),
                        token_count=sum(len(s.words) for s in items), char_index=torch.tensor(char_index), **lm)


def batch_indices(lengths: Sequence[int], batch_size: int, shuffle: bool, rng: Optional[random.Random] = None
                  ) -> List[List[int]]:
    """Sentences grouped by similar length (less padding), `batch_size` per batch; the
    batch order is shuffled in training. Every sentence is in exactly one batch."""
    if shuffle:
        # sort by a jittered length: similar lengths still share a batch, but which
        # sentences do changes from epoch to epoch; then shuffle the batches themselves
        order = sorted(range(len(lengths)), key=lambda i: lengths[i] + rng.uniform(-2, 2))
    else:
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if shuffle:
        rng.shuffle(batches)
    return batches


def prediction_batches(
    lengths: Sequence[int], batch_size: int, waste: float = 0.25, min_size: int = 16
) -> List[List[int]]:
    """Batches for prediction: sentences in length order, at most `batch_size` a batch, and a
    batch closed early (once it holds `min_size`) when padding it to its longest sentence
    would cost more than `waste` of its real tokens. Two length-sorted batches of 256 out of
    512 CoNLL-2000 sentences are each padded to their longest (up to 70 words where most have
    25): the padded RNN spent over half its time on padding. Smaller batches of like lengths
    cost no more per sentence down to a few dozen sentences, so closing them early only cuts
    the padding. Every sentence is in exactly one batch; the order is deterministic."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: List[List[int]] = []
    current: List[int] = []
    real = 0
    for i in order:
        n = max(1, lengths[i])  # sorted: this sentence is the longest of the batch so far
        if current and (
            len(current) == batch_size or (len(current) >= min_size and n * (len(current) + 1) > (1 + waste) * (real + n))
        ):
            batches.append(current)
            current, real = [], 0
        current.append(i)
        real += n
    if current:
        batches.append(current)
    return batches
