"""Your own files with only data.train (and optionally data.valid), for both tasks: a
share of train is held out as valid (an LM's the last lines, a tagger's seeded
sentences), a missing test split means no test
evaluation, and the log says both."""

import json
from pathlib import Path

import pytest
import torch

import nlp_lstm
from helpers.corpora import TINY_MODEL, make_lines, write_lines
from helpers.tagging import TINY_TAGGER, write_conll
from nlp_lstm.config import DataConfig
from nlp_lstm.data.lm_corpus import read_lm_splits

SHORT = ["trainer.max_steps=3", "trainer.max_epochs=null", "trainer.max_time=null", "logger.tensorboard=false"]
NO_TEST = "no test split (data.test unset): the run ends without a test evaluation"


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """A run sets torch's thread count (trainer.num_threads) for this whole process."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _check_run(run_dir: Path, result, held_out: str) -> None:
    log = (run_dir / "train.log").read_text()
    assert held_out in log
    assert NO_TEST in log
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["best_valid"]
    assert "test" not in metrics and "test" not in result.metrics


def test_lm_on_a_train_file_alone(tmp_path):
    lines = make_lines(400, 1)
    train = write_lines(tmp_path / "mine.txt", lines)
    run_dir = tmp_path / "run"
    result = nlp_lstm.train(
        ["data=text", f"data.train={train}", f"paths.data_dir={tmp_path / 'data'}", *TINY_MODEL, *SHORT],
        run_dir=run_dir,
    )
    _check_run(
        run_dir, result, "text has no dev split: the last 40 train lines (data.dev_fraction=0.1) are held out as valid"
    )
    # The split is the file's last tenth, contiguous (running text keeps its context), every
    # line in exactly one split, in order.
    splits = read_lm_splits(DataConfig(name="text", train=str(train)), tmp_path / "data")
    assert set(splits) == {"train", "valid"}
    assert splits["train"] == lines[:-40] and splits["valid"] == lines[-40:]
    fifth = read_lm_splits(DataConfig(name="text", train=str(train), dev_fraction=0.2), tmp_path / "data")
    assert fifth["valid"] == lines[-80:]


def test_tagger_on_a_train_file_alone(tmp_path):
    train = write_conll(tmp_path / "mine.conll", 100, seed=1)
    run_dir = tmp_path / "run"
    result = nlp_lstm.train(
        [
            "task=tagging",
            "data=conll",
            f"data.train={train}",
            "data.tag_column=2",
            f"paths.data_dir={tmp_path / 'data'}",
            *TINY_TAGGER,
            *SHORT,
        ],
        run_dir=run_dir,
    )
    _check_run(
        run_dir,
        result,
        "conll has no dev split: 10 train sentences (data.dev_fraction=0.1, seed 12345) are held out as valid",
    )
