"""The real `tensorboard` server, started on a loopback port, serves the run's scalars."""

import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def test_tensorboard_server_answers_with_the_runs_scalars(trained_lm):
    port = _free_port()
    logdir = trained_lm["run_dir"]
    tb_bin = Path(sys.executable).with_name("tensorboard")
    cmd = [str(tb_bin)] if tb_bin.exists() else [sys.executable, "-m", "tensorboard.main"]
    proc = subprocess.Popen(cmd + ["--logdir", str(logdir), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        tags = None
        while time.monotonic() < deadline:
            try:
                tags = _get(f"{base}/data/plugin/scalars/tags")
                if tags:
                    break
            except OSError:
                pass
            if proc.poll() is not None:
                pytest.fail(f"tensorboard exited: {proc.stdout.read().decode()[-2000:]}")
            time.sleep(0.5)
        assert tags, "tensorboard never listed a run"
        run = next(iter(tags))
        assert "valid/ppl" in tags[run] and "train/loss" in tags[run]
        query = urllib.parse.urlencode({"run": run, "tag": "valid/ppl"})
        points = _get(f"{base}/data/plugin/scalars/scalars?{query}")
        metrics = json.loads((logdir / "metrics.json").read_text())
        # [wall_time, step, value] rows: the per-epoch validation history of metrics.json
        assert [p[1] for p in points] == [h["step"] for h in metrics["history"]]
        assert points[-1][2] == pytest.approx(metrics["history"][-1]["valid"]["ppl"], rel=1e-5)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
