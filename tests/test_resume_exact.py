"""Stopped by a budget, then resumed with a larger budget == the uninterrupted run, bitwise
on CPU: weights, optimiser, schedule, averaging, early stopping, best model and package;
for the LM and the tagger. A run killed before its first checkpoint starts again."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from helpers.corpora import TINY_MODEL, text_data_overrides
from helpers.paths import ROOT
from helpers.resume import straight_and_split
from helpers.runs import run_train
from helpers.tagging import TINY_TAGGER, conll_overrides, tagging_corpus
from nlp_lstm.training.checkpoint import load_checkpoint

QUIET = ["trainer.max_epochs=null", "trainer.max_time=null", "logger.tensorboard=false", "trainer.progress_bar=false"]


def _lr_was_cut(checkpoint) -> bool:
    return checkpoint["trainer"]["history"][-1]["lr"] < checkpoint["trainer"]["history"][0]["lr"]


@pytest.mark.parametrize(
    "schedule, exercised",
    [
        (["optim.schedule=plateau", "optim.lr=20"], _lr_was_cut),
        (
            ["optim=ntasgd", "optim.nonmono=1", "optim.lr=20", "optim.schedule=none"],
            lambda c: c["averaged"] is not None,
        ),
        (["optim.schedule=plateau", "optim.average_from_epoch=1"], lambda c: c["averaged"] is not None),
        (
            ["optim.schedule=plateau", "trainer.early_stopping_patience=2", "optim.lr=60"],
            lambda c: c["trainer"]["stop_reason"] == "early_stopping" and c["trainer"]["step"] > 18,
        ),
    ],
    ids=["plateau", "ntasgd", "swa", "early_stopping"],
)
def test_lm_budget_stop_then_resume_equals_the_uninterrupted_run(tmp_path, text_corpus, schedule, exercised):
    """Evaluations every 4 steps; the first part stops at step 18, between two of them."""
    common = (
        text_data_overrides(text_corpus)
        + TINY_MODEL
        + QUIET
        + ["trainer.val_check_interval=4", "task.batch_size=20"]
        + schedule
    )
    checkpoint = straight_and_split(tmp_path, common, total=30, first=18)
    assert exercised(checkpoint)  # the schedule did act in this run


@pytest.mark.parametrize(
    "schedule",
    [
        ["optim.schedule=plateau", "optim.plateau_patience=0", "optim.lr=0.05"],
        ["optim.average_from_epoch=1", "trainer.early_stopping_patience=3"],
    ],
    ids=["plateau", "swa_early_stopping"],
)
def test_tagger_budget_stop_then_resume_equals_the_uninterrupted_run(tmp_path, schedule):
    corpus = tagging_corpus(tmp_path / "corpus")
    common = conll_overrides(corpus) + TINY_TAGGER + QUIET + ["trainer.val_check_interval=5"] + schedule
    checkpoint = straight_and_split(tmp_path, common, total=45, first=27)
    assert _lr_was_cut(checkpoint) or checkpoint["averaged"] is not None


def test_resumed_tagger_without_a_new_best_finishes_with_its_best_model(tmp_path):
    """Resumed with the same budget: no evaluation improves, the best weights come from the
    checkpoint (the package leaves the auxiliary LM heads out), test metrics are written."""
    import json

    corpus = tagging_corpus(tmp_path / "corpus")
    common = (
        conll_overrides(corpus)
        + TINY_TAGGER
        + ["trainer.max_epochs=2", "trainer.max_time=null", "logger.tensorboard=false", "model.lm_loss_weight=0.1"]
    )
    run_train(tmp_path / "run", common, tmp_path / "data")
    before = json.loads((tmp_path / "run" / "metrics.json").read_text())
    run_train(tmp_path / "run", common + ["trainer.resume=true"], tmp_path / "data")
    after = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert after["status"] == "completed" and after["test"] == before["test"]
    assert after["best_valid"] == before["best_valid"]


def _popen_train(run_dir, overrides, data_dir):
    env = {**os.environ, "NLP_LSTM_DATA_DIR": str(data_dir)}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), f"hydra.run.dir={run_dir}", *overrides],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_kill_before_the_first_checkpoint_then_resume_starts_the_run_again(tmp_path, text_corpus):
    common = text_data_overrides(text_corpus) + TINY_MODEL + QUIET + ["trainer.max_steps=12"]
    run_dir = tmp_path / "killed"
    proc = _popen_train(run_dir, common, tmp_path / "data")
    deadline = time.monotonic() + 60
    while not (run_dir / "checkpoints" / "run.json").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert not (run_dir / "checkpoints" / "last.pt").exists()
    run_train(run_dir, common + ["trainer.resume=true"], tmp_path / "data")
    log = (run_dir / "train.log").read_text()
    assert "no checkpoint yet" in log and "starting the run from the beginning" in log
    run_train(tmp_path / "straight", common, tmp_path / "data")
    straight = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")["model"]
    for name, tensor in load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"].items():
        assert torch.equal(tensor, straight[name]), name


def test_resume_in_a_dir_that_never_held_a_run_is_still_refused(tmp_path, text_corpus):
    proc = run_train(
        tmp_path / "fresh",
        text_data_overrides(text_corpus) + TINY_MODEL + ["trainer.resume=true"],
        tmp_path / "data",
        check=False,
    )
    assert proc.returncode == 2 and "no checkpoint to resume from" in proc.stderr
    assert not (tmp_path / "fresh" / "checkpoints" / "run.json").exists()


def test_resume_of_an_unstarted_run_with_other_settings_is_refused(tmp_path, text_corpus):
    common = text_data_overrides(text_corpus) + TINY_MODEL + QUIET
    run_dir = tmp_path / "run"
    proc = _popen_train(run_dir, common + ["trainer.max_steps=500"], tmp_path / "data")
    deadline = time.monotonic() + 60
    while not (run_dir / "checkpoints" / "run.json").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    if (run_dir / "checkpoints" / "last.pt").exists():
        (run_dir / "checkpoints" / "last.pt").unlink()  # as if killed before it
    proc = run_train(
        run_dir,
        common + ["trainer.max_steps=500", "model.hidden_size=32", "trainer.resume=true"],
        tmp_path / "data",
        check=False,
    )
    assert proc.returncode == 2 and "config model.hidden_size=32 differs" in proc.stderr
