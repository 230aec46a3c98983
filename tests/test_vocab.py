from collections import Counter

import pytest

from nlp_lstm.data.vocab import Vocab, build_vocab_from_counter, build_vocab_from_iterator


def test_specials_first_then_frequency_then_alphabetical():
    vocab = build_vocab_from_iterator([["b", "a", "c", "a"], ["c", "d"]], specials=["<unk>", "<eos>"])
    assert vocab.get_itos() == ["<unk>", "<eos>", "a", "c", "b", "d"]


def test_min_freq_and_max_tokens_count_specials():
    counter = Counter({"x": 5, "y": 3, "z": 1})
    assert build_vocab_from_counter(counter, min_freq=2, specials=["<unk>"]).get_itos() == ["<unk>", "x", "y"]
    assert len(build_vocab_from_counter(counter, specials=["<unk>", "<eos>"], max_tokens=3)) == 3


def test_torchtext_style_lookups_and_default_index():
    vocab = Vocab(["<unk>", "hello", "world"])
    assert vocab.lookup_indices(["world", "hello"]) == [2, 1]
    assert vocab.lookup_tokens([1, 2]) == ["hello", "world"]
    assert vocab.get_stoi()["world"] == 2
    with pytest.raises(KeyError, match="missing"):
        vocab["missing"]
    vocab.set_default_index(0)
    assert vocab["missing"] == 0
    assert vocab.lookup_indices(["missing", "world"]) == [0, 2]
    assert "hello" in vocab and "missing" not in vocab


def test_save_load_round_trip_keeps_whitespace_tokens(tmp_path):
    vocab = Vocab(["<unk>", " ", "\t", "\n", "é"], default_index=0)
    vocab.save(tmp_path / "v.json")
    loaded = Vocab.load(tmp_path / "v.json")
    assert loaded.get_itos() == vocab.get_itos()
    assert loaded.get_default_index() == 0


def test_duplicate_tokens_rejected():
    with pytest.raises(ValueError, match="duplicate"):
        Vocab(["a", "b", "a"])
