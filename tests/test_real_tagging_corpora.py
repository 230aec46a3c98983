"""The tagging readers against the real corpora (through NLP_LSTM_DATA_MIRROR): every
published sentence, token and entity count must match."""

import pytest

from helpers.paths import MIRROR
from nlp_lstm.data.conll import read_conll, read_conllu
from nlp_lstm.data.fetch import fetch_corpus
from nlp_lstm.data.tag_schemes import check_tags, spans_from_tags

pytestmark = pytest.mark.skipif(not MIRROR, reason="NLP_LSTM_DATA_MIRROR is not set")


def test_conll2000_counts_and_the_unseen_test_label(tmp_path):
    paths = fetch_corpus("conll2000", tmp_path, mirror=MIRROR)
    train, test = read_conll(paths["train"], 0, 2, {"pos": 1}), read_conll(paths["test"], 0, 2, {"pos": 1})
    assert (len(train), len(test)) == (8_936, 2_012)
    assert (sum(len(s.words) for s in train), sum(len(s.words) for s in test)) == (211_727, 47_377)
    for s in train + test:
        check_tags(s.tags, "iob2")
    train_tags = {t for s in train for t in s.tags}
    assert "I-LST" not in train_tags and any("I-LST" in s.tags for s in test)


def test_ud_english_ewt_counts(tmp_path):
    paths = fetch_corpus("ud_ewt", tmp_path, mirror=MIRROR)
    splits = {k: read_conllu(p) for k, p in paths.items()}
    assert {k: len(v) for k, v in splits.items()} == {"train": 12_544, "valid": 2_001, "test": 2_077}
    assert {k: sum(len(s.words) for s in v) for k, v in splits.items()} == {
        "train": 204_577,
        "valid": 25_147,
        "test": 25_094,
    }
    assert len({t for s in splits["train"] for t in s.tags}) == 17  # the UPOS tag set


def test_wnut17_counts(tmp_path):
    paths = fetch_corpus("wnut17", tmp_path, mirror=MIRROR)
    splits = {k: read_conll(p, 0, 1) for k, p in paths.items()}
    assert {k: len(v) for k, v in splits.items()} == {"train": 3_394, "valid": 1_009, "test": 1_287}
    entities = {k: sum(len(spans_from_tags(s.tags, "iob2")) for s in v) for k, v in splits.items()}
    assert entities == {"train": 1_975, "valid": 836, "test": 1_079}
    types = {label for s in splits["train"] for label, _, _ in spans_from_tags(s.tags, "iob2")}
    assert len(types) == 6


def test_conll2000_test_in_iobes_scores_perfectly_against_itself(tmp_path):
    """conlleval on IOBES: the CoNLL-2000 test split rewritten in IOBES keeps every chunk
    (it scored 98.98 when E and S were read with IOB rules)."""
    from nlp_lstm.data.tag_schemes import convert
    from nlp_lstm.metrics import conlleval

    test = read_conll(fetch_corpus("conll2000", tmp_path, mirror=MIRROR)["test"], 0, 2)
    iob2 = [s.tags for s in test]
    iobes = [convert(t, "iob2", "iobes") for t in iob2]
    reference = conlleval(iob2, iob2, "iob2")
    result = conlleval(iobes, iobes, "iobes")
    assert result["f1"] == 100 and result["chunks_gold"] == reference["chunks_gold"] == 23_852
