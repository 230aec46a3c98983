"""Checkpoints: checksummed, atomic, detected when truncated or corrupt; kill -9 at any
moment (also mid-write) leaves a run that `trainer.resume=true` continues."""

import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from helpers.corpora import TINY_MODEL, text_data_overrides
from helpers.paths import ROOT
from helpers.runs import run_train
from nlp_lstm.errors import NlpLstmError
from nlp_lstm.training.checkpoint import load_checkpoint, save_checkpoint


def _payload(value: float):
    return {"model": {"w": torch.full((64, 64), value)}, "trainer": {"step": int(value)}}


def test_checkpoint_round_trip_and_truncation_is_named(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, _payload(3.0))
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.full((64, 64), 3.0))
    data = path.read_bytes()
    for keep in (len(data) - 1, len(data) // 2, 30, 0):
        path.write_bytes(data[:keep])
        with pytest.raises(NlpLstmError, match=f"{path}: (truncated|not an nlp_lstm) checkpoint"):
            load_checkpoint(path)


def test_a_flipped_byte_is_detected_before_loading(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, _payload(1.0))
    data = bytearray(path.read_bytes())
    data[-5000] ^= 0x01  # inside the tensor data: torch.load alone would not notice
    path.write_bytes(bytes(data))
    with pytest.raises(NlpLstmError, match=rf"{path}: corrupt checkpoint \(sha256 mismatch\): not loaded"):
        load_checkpoint(path)


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, _payload(2.0))
    # pickle's refusal of a local function (an AttributeError in Python 3.11, a PicklingError later)
    with pytest.raises((pickle.PicklingError, AttributeError)):
        save_checkpoint(path, {"model": {"w": torch.zeros(3)}, "not_serialisable": lambda: None})
    assert load_checkpoint(path)["trainer"]["step"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_resume_from_a_corrupt_checkpoint_is_a_one_line_error(tmp_path, text_corpus):
    run_dir = tmp_path / "run"
    overrides = text_data_overrides(text_corpus) + TINY_MODEL + ["trainer.max_steps=4", "trainer.max_epochs=null"]
    run_train(run_dir, overrides, tmp_path / "data")
    checkpoint = run_dir / "checkpoints" / "last.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:-100])
    proc = run_train(
        run_dir, overrides + ["trainer.resume=true", "trainer.max_steps=8"], tmp_path / "data", check=False
    )
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {checkpoint}: truncated checkpoint (") and last.endswith("bytes): not loaded")


def test_kill_9_at_random_moments_then_resume_completes(tmp_path, text_corpus):
    """SIGKILL (no handler can run) at random times while a checkpoint is written every
    step; after each kill the last complete checkpoint must load and the run resume."""
    run_dir = tmp_path / "run"
    overrides = (
        text_data_overrides(text_corpus)
        + TINY_MODEL
        + [
            "trainer.max_epochs=30",
            "trainer.max_time=null",
            "trainer.checkpoint_every_minutes=0.00001",
            "logger.tensorboard=false",
        ]
    )
    env = {**os.environ, "NLP_LSTM_DATA_DIR": str(tmp_path / "data")}
    rng = random.Random(0)
    steps_seen = []
    for _attempt in range(3):
        extra = ["trainer.resume=true"] if (run_dir / "checkpoints" / "last.pt").exists() else []
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "train.py"), f"hydra.run.dir={run_dir}", *overrides, *extra],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Wait for training to be under way (a checkpoint written by this process), then kill.
        deadline = time.monotonic() + 120
        start_mtime = (run_dir / "checkpoints" / "last.pt").stat().st_mtime if extra else 0
        while time.monotonic() < deadline:
            path = run_dir / "checkpoints" / "last.pt"
            if path.exists() and path.stat().st_mtime > start_mtime:
                break
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        state = load_checkpoint(run_dir / "checkpoints" / "last.pt")  # complete, whatever the moment
        steps_seen.append(state["trainer"]["step"])
    assert steps_seen == sorted(steps_seen) and steps_seen[-1] > steps_seen[0]
    finish = run_train(
        run_dir,
        overrides + ["trainer.resume=true", "trainer.max_epochs=30", f"trainer.max_steps={steps_seen[-1] + 10}"],
        tmp_path / "data",
    )
    assert finish.returncode == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["train"]["steps"] == steps_seen[-1] + 10
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))  # interrupted writes were cleaned up
