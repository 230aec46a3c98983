"""The registry against the real corpora, read through the mirror (NLP_LSTM_DATA_MIRROR).

These check the published counts, so a wrong checksum, a dropped line or a tokenization
slip in the word pipeline shows up as a number that no longer matches.
"""

import pytest

from helpers.paths import MIRROR
from nlp_lstm.config import DataConfig, TokenizerConfig
from nlp_lstm.data.fetch import fetch_corpus
from nlp_lstm.data.lm_corpus import corpus_stats, prepare_lm_corpus
from nlp_lstm.data.registry import CORPORA

pytestmark = pytest.mark.skipif(not MIRROR, reason="NLP_LSTM_DATA_MIRROR is not set")


@pytest.mark.parametrize("name", sorted(CORPORA))
def test_every_registry_corpus_fetches_and_verifies(tmp_path, name):
    paths = fetch_corpus(name, tmp_path, mirror=MIRROR)
    assert set(paths) == set(CORPORA[name].files)
    assert all(p.stat().st_size > 0 for p in paths.values())


@pytest.mark.parametrize(
    "name, vocab, tokens",
    [
        ("wikitext2", 33_278, (2_088_628, 217_646, 245_569)),
        ("ptb", 10_000, (929_589, 73_760, 82_430)),
    ],
)
def test_word_level_counts_match_published(tmp_path, name, vocab, tokens):
    corpus = prepare_lm_corpus(DataConfig(name=name), TokenizerConfig(kind="word"), tmp_path, log=lambda *_: None)
    assert corpus.tokenizer.vocab_size == vocab
    assert tuple(len(corpus.ids[s]) for s in ("train", "valid", "test")) == tokens
    assert corpus_stats(DataConfig(name=name), tmp_path)["train"]["tokens"] == tokens[0]


def test_tinyshakespeare_split_keeps_every_character(tmp_path):
    corpus = prepare_lm_corpus(
        DataConfig(name="tinyshakespeare"), TokenizerConfig(kind="char"), tmp_path, log=lambda *_: None
    )
    assert sum(len(corpus.ids[s]) for s in ("train", "valid", "test")) == 1_115_394
    assert corpus.tokenizer.vocab_size == 65 + 1  # 65 characters, newline is <eos>, plus <unk>
