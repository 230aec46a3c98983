"""`python train.py` and `nlp-lstm` as a user runs them, and the trainer as train.py builds it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import List

from helpers.paths import ROOT


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
