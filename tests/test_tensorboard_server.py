"""The real `tensorboard` server, started on a loopback port, serves the run's scalars."""

import contextlib
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


@contextlib.contextmanager
def _tensorboard(logdir, ready):
    """The real `tensorboard` on a free loopback port; yields (base URL, what `ready(base)`
    returned once it returned something truthy, or its last value after 60 s)."""
    port = _free_port()
    tb_bin = Path(sys.executable).with_name("tensorboard")
    cmd = [str(tb_bin)] if tb_bin.exists() else [sys.executable, "-m", "tensorboard.main"]
    proc = subprocess.Popen(
        cmd + ["--logdir", str(logdir), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        answer = None
        while time.monotonic() < deadline:
            try:
                answer = ready(base)
                if answer:
                    break
            except OSError:
                pass
            if proc.poll() is not None:
                pytest.fail(f"tensorboard exited: {proc.stdout.read().decode()[-2000:]}")
            time.sleep(0.5)
        yield base, answer
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_tensorboard_server_answers_with_the_runs_scalars(trained_lm):
    logdir = trained_lm["run_dir"]
    with _tensorboard(logdir, lambda base: _get(f"{base}/data/plugin/scalars/tags")) as (base, tags):
        assert tags, "tensorboard never listed a run"
        run = next(iter(tags))
        assert "valid/ppl" in tags[run] and "train/loss" in tags[run]
        query = urllib.parse.urlencode({"run": run, "tag": "valid/ppl"})
        points = _get(f"{base}/data/plugin/scalars/scalars?{query}")
        metrics = json.loads((logdir / "metrics.json").read_text())
        # [wall_time, step, value] rows: the per-epoch validation history of metrics.json
        assert [p[1] for p in points] == [h["step"] for h in metrics["history"]]
        assert points[-1][2] == pytest.approx(metrics["history"][-1]["valid"]["ppl"], rel=1e-5)


def _post(url: str, body: dict):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def test_tensorboard_lists_runs_by_name_with_their_layout_figures_and_hparams(trained_lm, trained_tagger, tmp_path):
    """`tensorboard --logdir outputs/` over two runs, as a user starts it: runs named after
    their dirs, the custom scalars layout, the tagger's figures and the HParams table."""
    import shutil

    outputs = tmp_path / "outputs"
    shutil.copytree(trained_lm["run_dir"], outputs / "lm")
    shutil.copytree(trained_tagger["run_dir"], outputs / "tagger")
    with _tensorboard(outputs, lambda base: len(_get(f"{base}/data/runs")) == 2 and _get(f"{base}/data/runs")) as (
        base,
        runs,
    ):
        assert sorted(runs) == ["lm", "tagger"]  # the run dirs' names: never `tb`

        layout = _get(f"{base}/data/plugin/custom_scalars/layout")
        charts = {c["title"]: c["multiline"]["tag"] for c in layout["category"][0]["chart"]}
        assert list(charts)[:2] == ["loss", "ppl"] or list(charts)[:2] == ["loss", "f1"]
        assert charts["loss"] == ["^train/loss$", "^valid/loss$"] and "learning rate" in charts

        images = _get(f"{base}/data/plugin/images/tags")
        assert {"valid_figures/confusion_matrix", "valid_figures/f1_per_type", "weights/crf_transitions"} <= set(
            images["tagger"]
        )
        query = urllib.parse.urlencode({"run": "tagger", "tag": "valid_figures/confusion_matrix", "sample": 0})
        entries = _get(f"{base}/data/plugin/images/images?{query}")
        with urllib.request.urlopen(
            f"{base}/data/plugin/images/individualImage?{entries[-1]['query']}", timeout=5
        ) as response:
            assert response.read()[:4] == b"\x89PNG"

        experiment = _post(f"{base}/data/plugin/hparams/experiment", {"experimentName": ""})
        metrics = {m["name"]["tag"] for m in experiment["metricInfos"]}
        # the table's columns are one run's headline metrics (TensorBoard shows one experiment)
        lm = {"valid_best/ppl", "valid_best/test_ppl", "valid_best/loss", "valid_best/test_loss"}
        tagger = {f"valid_best/{split}{key}" for split in ("", "test_") for key in ("f1", "acc", "loss")}
        assert metrics in (lm, tagger)
        assert "model.hidden_size" in {h["name"] for h in experiment["hparamInfos"]}
