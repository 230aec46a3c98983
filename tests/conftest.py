"""Shared fixtures. Every corpus a fast test uses is written here, by the test run. The
helpers the tests import live in the helpers package (tests/helpers/)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from helpers.corpora import TINY_MODEL, make_lines, text_data_overrides, write_lines
from helpers.runs import run_train
from nlp_lstm.speed_choices import CACHE_DIR_ENV as SPEED_CACHE_ENV

# One intra-op thread in the test process (runs in it that set trainer.num_threads still set
# theirs, and put this back): the tests' tensors are tiny, and on a small machine shared
# with other work torch's default of one thread per core stalls each op whenever a core is
# busy elsewhere (on 2 cores, tests/test_tag_files.py, test_crf.py, test_gru_cpu.py and
# test_cli.py took 360 s instead of 60 s).
torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def speed_choices_cache(tmp_path_factory):
    """Speed choices (nlp_lstm.speed_choices) are timed once and kept in a cache file: the
    tests keep theirs in the test session's directory, never in the user's ~/.cache."""
    directory = tmp_path_factory.mktemp("speed_choices")
    os.environ[SPEED_CACHE_ENV] = str(directory)
    return directory


def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto` (pyproject's addopts): one worker per core, at most 4. Each worker trains its
    own session fixtures, and the tests that time signals and servers need the machine to be
    not too oversubscribed."""
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


@pytest.fixture
def text_corpus(tmp_path: Path):
    """train/valid/test files of a toy corpus; valid and test hold words unseen in train."""
    d = tmp_path / "corpus"
    d.mkdir()
    valid = make_lines(60, 2) + ["the zebra sat on the mat ."]
    test = make_lines(60, 3) + ["a unicorn found the bridge ."]
    return {
        "train": write_lines(d / "train.txt", make_lines(400, 1)),
        "valid": write_lines(d / "valid.txt", valid),
        "test": write_lines(d / "test.txt", test),
    }


@pytest.fixture(scope="session")
def trained_lm(tmp_path_factory):
    """One small LM trained end to end on the toy corpus, shared by read-only tests."""
    tmp = tmp_path_factory.mktemp("trained")
    d = tmp / "corpus"
    d.mkdir()
    corpus = {
        "train": write_lines(d / "train.txt", make_lines(400, 1)),
        "valid": write_lines(d / "valid.txt", make_lines(60, 2)),
        "test": write_lines(d / "test.txt", make_lines(60, 3)),
    }
    run_dir = tmp / "run"
    run_train(
        run_dir,
        text_data_overrides(corpus) + TINY_MODEL + ["trainer.max_epochs=2", "trainer.max_time=null", "optim.lr=5"],
        tmp / "data",
    )
    return {"run_dir": run_dir, "corpus": corpus, "data_dir": tmp / "data"}


@pytest.fixture(scope="session")
def trained_tagger(tmp_path_factory):
    """One small chunker trained end to end on the toy CoNLL corpus, shared by read-only tests."""
    from helpers.tagging import TINY_TAGGER, conll_overrides, tagging_corpus

    tmp = tmp_path_factory.mktemp("tagger")
    corpus = tagging_corpus(tmp / "corpus")
    # the test set holds a chunk type never seen in training (as CoNLL-2000's I-LST)
    test_text = corpus["test"].read_text() + "\nlist NN B-LST\nitem NN I-LST\n"
    corpus["test"].write_text(test_text)
    run_dir = tmp / "run"
    run_train(
        run_dir, conll_overrides(corpus) + TINY_TAGGER + ["trainer.max_epochs=6", "trainer.max_time=null"], tmp / "data"
    )
    return {"run_dir": run_dir, "corpus": corpus, "data_dir": tmp / "data"}
