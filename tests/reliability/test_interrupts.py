"""SIGINT/SIGTERM during training: the step finishes, a checkpoint is written, TensorBoard
and metrics are flushed, the exit says how to resume, and that command works."""

import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

from helpers.corpora import TINY_MODEL, text_data_overrides
from helpers.paths import ROOT
from helpers.runs import train_py
from nlp_lstm.training.checkpoint import load_checkpoint


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_checkpoints_flushes_and_prints_the_resume_command(tmp_path, text_corpus, sig):
    run_dir = tmp_path / "run"
    env = {**os.environ, "NLP_LSTM_DATA_DIR": str(tmp_path / "data")}
    overrides = text_data_overrides(text_corpus) + TINY_MODEL + ["trainer.max_epochs=200", "trainer.max_time=null"]
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), f"hydra.run.dir={run_dir}", *overrides],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (run_dir / "metrics.json").exists() and time.monotonic() < deadline:  # first epoch done
        time.sleep(0.1)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    last = stderr.strip().splitlines()[-1]
    name = signal.Signals(sig).name
    assert last.startswith(f"interrupted: {name} at step ") and "checkpoint saved to" in last
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "interrupted"
    step = load_checkpoint(run_dir / "checkpoints" / "last.pt")["trainer"]["step"]
    assert metrics["train"]["steps"] == step > 0
    assert any(p.name.startswith("events.out.tfevents") for p in run_dir.iterdir())
    # The printed command resumes the run as it is, the run's overrides being kept in its run
    # dir (a budget is added, so that it ends).
    command = shlex.split(last.split("Resume with: ", 1)[1])
    assert command == ["python", "train.py", "trainer.resume=true", f"hydra.run.dir={run_dir}"]
    resumed = train_py([*command[2:], f"trainer.max_steps={step + 5}"], tmp_path / "data")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((run_dir / "metrics.json").read_text())["train"]["steps"] == step + 5
