from dataclasses import replace

import numpy as np
import pytest

from nlp_lstm.config import DataConfig, TokenizerConfig
from nlp_lstm.data.lm_corpus import prepare_lm_corpus
from nlp_lstm.errors import ConfigError, DataError


def _data(corpus, **kw):
    return DataConfig(
        name="text", train=str(corpus["train"]), valid=str(corpus["valid"]), test=str(corpus["test"]), **kw
    )


def test_ids_stats_and_cache_hit(tmp_path, text_corpus):
    logs = []
    corpus = prepare_lm_corpus(_data(text_corpus), TokenizerConfig(), tmp_path / "d", log=logs.append)
    lines = text_corpus["valid"].read_text().split("\n")[:-1]
    stats = corpus.stats["valid"]
    assert stats.lines == len(lines)
    assert stats.tokens == len(corpus.ids["valid"]) == sum(len(line.split()) for line in lines) + len(lines)
    assert stats.chars == sum(len(line) for line in lines) + len(lines)
    assert (corpus.ids["valid"] == corpus.tokenizer.eos_id).sum() == len(lines)
    # the unseen word of valid maps to <unk>
    assert corpus.tokenizer.unk_id in corpus.ids["valid"]
    assert any("fitting" in m for m in logs)

    logs.clear()
    again = prepare_lm_corpus(_data(text_corpus), TokenizerConfig(), tmp_path / "d", log=logs.append)
    assert any("cached" in m for m in logs) and not any("fitting" in m for m in logs)
    assert np.array_equal(again.ids["train"], corpus.ids["train"])


def test_cache_key_changes_with_settings_and_content(tmp_path, text_corpus):
    a = prepare_lm_corpus(_data(text_corpus), TokenizerConfig(), tmp_path, log=lambda *_: None)
    b = prepare_lm_corpus(_data(text_corpus), TokenizerConfig(min_freq=3), tmp_path, log=lambda *_: None)
    assert a.cache_dir != b.cache_dir
    with open(text_corpus["train"], "a") as handle:
        handle.write("brand new words here\n")
    c = prepare_lm_corpus(_data(text_corpus), TokenizerConfig(), tmp_path, log=lambda *_: None)
    assert c.cache_dir != a.cache_dir
    assert "brand" in c.tokenizer.vocab


def test_test_split_is_optional(tmp_path, text_corpus):
    cfg = replace(_data(text_corpus), test=None)
    assert set(prepare_lm_corpus(cfg, TokenizerConfig(), tmp_path, log=lambda *_: None).ids) == {"train", "valid"}


def test_tagging_corpus_rejected_for_lm(tmp_path):
    with pytest.raises(ConfigError, match="data.name='conll2000'.*tagging corpus"):
        prepare_lm_corpus(DataConfig(name="conll2000"), TokenizerConfig(), tmp_path)


def test_missing_split_file_names_the_key(tmp_path, text_corpus):
    cfg = replace(_data(text_corpus), valid=str(tmp_path / "nope.txt"))
    with pytest.raises(DataError, match="nope.txt: no such data.valid file"):
        prepare_lm_corpus(cfg, TokenizerConfig(), tmp_path)
