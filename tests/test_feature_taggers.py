"""Chained taggers: a chunker that reads POS carries the POS tagger that predicts it
(model.feature_taggers.pos), so raw text works end to end and the package stands alone."""

from __future__ import annotations

import json
import re
import shutil

import pytest

import nlp_lstm
from helpers.runs import run_cli, run_train
from helpers.tagging import TINY_TAGGER, conll_overrides, tagging_corpus, untrained_package
from nlp_lstm.errors import ConfigError, NlpLstmError


def test_a_chunker_carries_its_pos_tagger_and_tags_raw_text(tmp_path):
    corpus = tagging_corpus(tmp_path / "corpus")
    common = ["trainer.max_epochs=3", "trainer.max_time=null", "logger.tensorboard=false"]
    pos_run = tmp_path / "pos"
    pos_overrides = [o for o in conll_overrides(corpus) if not o.startswith("data.tag_column")]
    run_train(
        pos_run, pos_overrides + ["data.tag_column=1", "data.tag_scheme=none"] + TINY_TAGGER + common, tmp_path / "data"
    )
    pos_package = tmp_path / "pos_package"
    shutil.copytree(pos_run / "model", pos_package)
    chunk_run = tmp_path / "chunk"
    run_train(
        chunk_run,
        conll_overrides(corpus, pos_feature=True)
        + TINY_TAGGER
        + common
        + [f"+model.feature_taggers.pos={pos_package}"],
        tmp_path / "data",
    )
    shutil.rmtree(pos_package)  # the chunker's package must stand alone
    chunker = nlp_lstm.load(chunk_run / "model", device="cpu").set_precision("fp32")
    pos = chunker.feature_taggers["pos"]
    words = ["the", "cat", "saw", "Bob", "."]
    predicted_pos = pos.tag_tokens([words])[0]
    expected = chunker.tag_tokens([words], features=[{"pos": predicted_pos}])[0]
    proc = run_cli(["tag", str(chunk_run / "model"), "--precision", "fp32"], stdin="the cat saw Bob .\n")
    assert proc.returncode == 0, proc.stderr
    assert [line.split("\t")[1] for line in proc.stdout.split("\n")[1:] if line] == expected  # after "# line = 1"
    # Scored with predicted POS instead of the file's column, and with the column.
    gold_pos = run_cli(
        [
            "evaluate",
            str(chunk_run / "model"),
            str(corpus["test"]),
            "--precision",
            "fp32",
            "--json",
            str(tmp_path / "g.json"),
        ]
    )  # training evaluated in fp32
    predicted = run_cli(
        [
            "evaluate",
            str(chunk_run / "model"),
            str(corpus["test"]),
            "--predict-features",
            "--json",
            str(tmp_path / "p.json"),
        ]
    )
    assert gold_pos.returncode == 0 and predicted.returncode == 0, predicted.stderr
    metrics = json.loads((chunk_run / "metrics.json").read_text())
    assert json.loads((tmp_path / "g.json").read_text())["f1"] == metrics["test"]["f1"]
    assert 0 < json.loads((tmp_path / "p.json").read_text())["f1"] <= 100


def test_a_feature_tagger_for_a_column_the_model_lacks_is_one_line(tmp_path):
    corpus = tagging_corpus(tmp_path / "corpus")
    proc = run_train(
        tmp_path / "run",
        conll_overrides(corpus) + TINY_TAGGER + [f"+model.feature_taggers.pos={tmp_path}"],
        tmp_path / "data",
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: config model.feature_taggers.pos: the model has no input column 'pos' (data.feature_columns={})"
    )


def test_the_missing_column_error_gives_an_override_train_py_accepts(tmp_path):
    corpus = tagging_corpus(tmp_path / "corpus")
    overrides = conll_overrides(corpus, pos_feature=True) + TINY_TAGGER
    chunker = nlp_lstm.load(untrained_package(overrides, tmp_path / "run", tmp_path / "chunker"), device="cpu")
    with pytest.raises(NlpLstmError) as raised:
        chunker.tag(["the cat saw Bob ."])
    suggested = re.search(r"(\S*model\.feature_taggers\.pos=)PATH", str(raised.value))
    assert suggested, str(raised.value)
    # The suggested override, as given, reaches the feature tagger's path (which is missing here).
    missing = tmp_path / "no_pos_tagger"
    proc = run_train(
        tmp_path / "train", overrides + [suggested.group(1) + str(missing)], tmp_path / "data", check=False
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"error: config model.feature_taggers.pos={str(missing)!r}: "), proc.stderr


def test_a_feature_tagger_whose_tags_do_not_cover_the_column_is_refused(tmp_path):
    """A chunk tagger given as the POS tagger (its tags B-NP, I-NP... are no POS tags) would
    train without a word and then feed the chunker nonsense on raw text."""
    import torch

    from nlp_lstm.train_entry import build_task, compose_config

    corpus = tagging_corpus(tmp_path / "corpus")
    wrong = untrained_package(conll_overrides(corpus) + TINY_TAGGER, tmp_path / "wrong_run", tmp_path / "wrong")
    pos_overrides = [o for o in conll_overrides(corpus) if not o.startswith("data.tag_column")]
    pos = untrained_package(
        pos_overrides + ["data.tag_column=1", "data.tag_scheme=none"] + TINY_TAGGER,
        tmp_path / "pos_run",
        tmp_path / "pos",
    )
    chunker = conll_overrides(corpus, pos_feature=True) + TINY_TAGGER
    task = build_task(
        compose_config(chunker + [f"+model.feature_taggers.pos={pos}"], tmp_path / "ok"), torch.device("cpu")
    )
    assert set(task.feature_taggers) == {"pos"}
    overrides = chunker + [f"+model.feature_taggers.pos={wrong}"]
    message = (
        f"config model.feature_taggers.pos={str(wrong)!r}: its tags do not cover the values of column 'pos' "
        f"in the train split: 7 value(s) it never predicts, e.g. "
    )
    with pytest.raises(ConfigError) as raised:
        build_task(compose_config(overrides, tmp_path / "bad"), torch.device("cpu"))
    assert str(raised.value).startswith(message), str(raised.value)
    # The most frequent first (every toy NP but a name has one DT and one NN; each sentence one '.').
    assert re.search(r"e\.g\. 'DT' \((\d+) tokens\), 'NN' \(\1 tokens\), '\.' \(300 tokens\)$", str(raised.value))
    proc = run_train(tmp_path / "bad", overrides, tmp_path / "data", check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: " + message)
