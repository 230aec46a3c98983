"""Shared fixtures. Every corpus a fast test uses is written here, by the test run."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

ROOT = Path(__file__).resolve().parent.parent
MIRROR = os.environ.get("NLP_LSTM_DATA_MIRROR")

SUBJECTS = ["the cat", "a dog", "the old man", "my sister", "the committee", "a small bird", "the river"]
VERBS = ["sat on", "looked at", "walked past", "talked about", "jumped over", "found"]
OBJECTS = ["the mat", "a tree", "the house", "the report", "a red ball", "the bridge", "her friend"]
ENDINGS = [".", "today .", "again .", "yesterday ."]


def make_lines(n: int, seed: int) -> List[str]:
    """Sentences from a tiny grammar: a corpus an LM can learn in a few steps."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        if i % 17 == 0:
            lines.append("")  # blank lines are data (one <eos> each), as in WikiText
            continue
        lines.append(" ".join([rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS), rng.choice(ENDINGS)]))
    return lines


def write_lines(path: Path, lines: List[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


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


TINY_MODEL = [
    "model.emb_size=16", "model.hidden_size=24", "model.num_layers=2",
    "task.batch_size=4", "task.bptt=8", "task.eval_batch_size=3", "task.sample_tokens=10",
    "logger.histogram_every_n_steps=5", "logger.projector_tokens=20",
    "trainer.progress_bar=false", "trainer.log_every_n_steps=2",
    "trainer.num_threads=1",  # tiny models: more threads only add synchronisation
    # The LM default is auto (bf16 on a CPU with bf16 units); the tests recompute numbers in
    # fp32 and must not depend on the machine. test_config checks the default itself.
    "trainer.precision=fp32",
]


def text_data_overrides(corpus) -> List[str]:
    return ["data=text", f"data.train={corpus['train']}", f"data.valid={corpus['valid']}",
            f"data.test={corpus['test']}"]


def run_train(run_dir: Path, overrides: List[str], data_dir: Path, timeout: int = 300,
              check: bool = True) -> subprocess.CompletedProcess:
    """Run `python train.py` as a user would, in a subprocess."""
    env = {**os.environ, "NLP_LSTM_DATA_DIR": str(data_dir)}
    cmd = [sys.executable, str(ROOT / "train.py"), f"hydra.run.dir={run_dir}", *overrides]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"train.py failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def step_trainer(tmp_path: Path, overrides: List[str], device: str = "cpu"):
    """(Trainer, task) built in process as train.py builds them, the task at its first
    epoch: for tests that drive `Trainer.train_step` themselves."""
    import torch

    from nlp_lstm.train_entry import build_task, compose_config
    from nlp_lstm.training.trainer import Trainer

    config = compose_config(overrides + ["trainer.progress_bar=false", f"trainer.device={device}"], tmp_path / "run")
    task = build_task(config, torch.device(device))
    task.start_epoch(0)
    return Trainer(config, task, tmp_path / "run", torch.device(device)), task


def run_cli(args: List[str], stdin: str | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nlp_lstm.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, input=stdin, timeout=timeout)


@pytest.fixture(scope="session")
def trained_lm(tmp_path_factory):
    """One small LM trained end to end on the toy corpus, shared by read-only tests."""
    tmp = tmp_path_factory.mktemp("trained")
    d = tmp / "corpus"
    d.mkdir()
    corpus = {"train": write_lines(d / "train.txt", make_lines(400, 1)),
              "valid": write_lines(d / "valid.txt", make_lines(60, 2)),
              "test": write_lines(d / "test.txt", make_lines(60, 3))}
    run_dir = tmp / "run"
    run_train(run_dir, text_data_overrides(corpus) + TINY_MODEL + ["trainer.max_epochs=2", "trainer.max_time=null",
                                                                   "optim.lr=5"], tmp / "data")
    return {"run_dir": run_dir, "corpus": corpus, "data_dir": tmp / "data"}


@pytest.fixture(scope="session")
def trained_tagger(tmp_path_factory):
    """One small chunker trained end to end on the toy CoNLL corpus, shared by read-only tests."""
    from tagging_fixtures import TINY_TAGGER, conll_overrides, tagging_corpus

    tmp = tmp_path_factory.mktemp("tagger")
    corpus = tagging_corpus(tmp / "corpus")
    # the test set holds a chunk type never seen in training (as CoNLL-2000's I-LST)
    test_text = corpus["test"].read_text() + "\nlist NN B-LST\nitem NN I-LST\n"
    corpus["test"].write_text(test_text)
    run_dir = tmp / "run"
    run_train(run_dir, conll_overrides(corpus) + TINY_TAGGER + ["trainer.max_epochs=6", "trainer.max_time=null"],
              tmp / "data")
    return {"run_dir": run_dir, "corpus": corpus, "data_dir": tmp / "data"}
