"""TaggingBatch is built, moved and narrowed by field name: a field added to it is moved by
`to` and picked by `select_rows` without touching either, and a narrowed batch is the batch
`collate` makes of those sentences alone."""

from __future__ import annotations

import random
from dataclasses import fields

import pytest
import torch

from nlp_lstm.data.tagging_batch import TaggingBatch, collate
from nlp_lstm.data.tagging_corpus import EncodedSentence


def sentences(n: int, seed: int, gold: bool = True):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        length = rng.randint(1, 7)
        words = [rng.randint(2, 30) for _ in range(length)]
        chars = [[w % 7 + 2, w % 5 + 2][: 1 + w % 2] + [w % 11 + 2] * (w % 3) for w in words]
        lm_ids = [rng.randint(1, 20) for _ in range(length + rng.randint(0, 3))]
        out.append(
            EncodedSentence(
                words=words,
                chars=chars,
                features={"pos": [rng.randint(1, 5) for _ in words]},
                tags=[rng.randint(1, 4) for _ in words] if gold or i % 3 else None,
                lm_ids=lm_ids,
                lm_first=list(range(length)),
                lm_last=list(range(length)),
            )
        )
    return out


def word_characters(batch: TaggingBatch):
    """Each real word's character ids, row-major: what the char encoder reads."""
    index = batch.char_index if batch.char_index is not None else torch.arange(batch.num_tokens)
    return [batch.chars[row, : batch.char_lengths[row]].tolist() for row in index.tolist()]


def test_every_field_says_what_it_is_indexed_by():
    # select_rows picks "sentence" fields by row: a new field without this would be left
    # unpicked, silently
    for f in fields(TaggingBatch):
        assert f.metadata.get("per") in ("sentence", "word"), f.name


@pytest.mark.parametrize("rows", [[0, 2, 5], [4, 1], [3], [0, 1, 2, 3, 4, 5, 6]])
def test_selected_rows_are_the_batch_of_those_sentences_alone(rows):
    items = sentences(7, seed=len(rows), gold=False)
    batch = collate(items)
    batch.lm_states = torch.randn(*batch.words.shape, 3)
    picked = batch.select_rows(torch.tensor(rows))
    alone = collate([items[r] for r in rows])
    width = int(alone.lengths.max())
    for name in ("words", "tags", "mask", "lengths", "has_gold", "lm_lengths"):
        got, want = getattr(picked, name), getattr(alone, name)
        assert torch.equal(got[..., :width] if got.dim() > 1 else got, want), name
    assert torch.equal(picked.features["pos"][:, :width], alone.features["pos"])
    assert torch.equal(picked.lm_ids[:, : alone.lm_ids.size(1)], alone.lm_ids)
    assert torch.equal(picked.lm_states, batch.lm_states[torch.tensor(rows)])
    assert picked.num_tokens == alone.num_tokens
    assert word_characters(picked) == word_characters(alone)
    assert torch.equal(picked.real_word_positions(), picked.mask.reshape(-1).nonzero().squeeze(1))


def test_to_moves_every_tensor_field():
    batch = collate(sentences(5, seed=3))
    batch.lm_states = torch.randn(*batch.words.shape, 2)
    moved = batch.to("meta", non_blocking=False)  # a device no field is on already
    for f in fields(TaggingBatch):
        value = getattr(moved, f.name)
        values = value.values() if isinstance(value, dict) else [value]
        for v in values:
            if isinstance(v, torch.Tensor):
                assert v.device.type == "meta", f.name
            else:
                assert v == getattr(batch, f.name), f.name
    assert all(getattr(batch, f.name) is not None for f in fields(TaggingBatch))  # every field was set


def test_prediction_batches_hold_every_sentence_once_with_little_padding():
    import random

    from nlp_lstm.data.tagging_batch import prediction_batches

    rng = random.Random(3)
    lengths = [max(1, int(rng.lognormvariate(3.0, 0.6))) for _ in range(2000)] + [0, 0, 400]
    batches = prediction_batches(lengths, 256, waste=0.25, min_size=16)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    assert all(1 <= len(batch) <= 256 for batch in batches)
    for batch in batches[:-1]:
        longest, real = max(max(1, lengths[i]) for i in batch), sum(max(1, lengths[i]) for i in batch)
        # closed early only once past min_size, and then with at most `waste` padding
        assert len(batch) == 256 or len(batch) >= 16
        assert len(batch) <= 16 or longest * len(batch) <= 1.25 * real
    assert prediction_batches(lengths, 256) == batches  # deterministic
    # Equal lengths: full batches, as batch_indices gives.
    assert [len(b) for b in prediction_batches([7] * 600, 256)] == [256, 256, 88]
