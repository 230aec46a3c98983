"""scripts/serve_load.py, briefly: against a real server it fills every row, checks every
answer against the model in-process, and stays bounded; it calls only this machine."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from helpers.paths import ROOT  # noqa: E402
from helpers.serve import thread_server  # noqa: E402
from nlp_lstm.serve.app import create_app  # noqa: E402
from nlp_lstm.serve.settings import ServeSettings  # noqa: E402

SCRIPT = ROOT / "scripts" / "serve_load.py"


def run_load(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    "fixture, sentences, fmt",
    [("trained_tagger", "test", "conll"), ("trained_lm", "test", "text")],
    ids=["tagger", "lm"],
)
def test_a_short_load_run_answers_every_request_right(request, tmp_path, fixture, sentences, fmt):
    trained = request.getfixturevalue(fixture)
    model = trained["run_dir"] / "model"
    with thread_server(create_app(ServeSettings(model=str(model), device="cpu"))) as url:
        proc = run_load(
            "--url",
            url,
            "--sentences",
            str(trained["corpus"][sentences]),
            "--input",
            fmt,
            "--limit",
            "20",
            "--clients",
            "1,4",
            "--duration",
            "2",
            "--max-requests",
            "40",
            "--model",
            str(model),
            "--json",
            str(tmp_path / "load.json"),
        )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "load.json").read_text())
    loaded = [r for r in report["rows"] if r["clients"]]
    assert [r["clients"] for r in loaded] == [1, 4]
    for row in loaded:
        assert 0 < row["requests"] <= 40 and row["failed"] == 0 and row["wrong"] == 0
        assert row["p50_ms"] <= row["p99_ms"]
    assert report["rows"][-1]["name"].startswith("in-process") and report["rows"][-1]["per_s"] > 0
    assert "| 4 clients |" in proc.stdout and "no failed or wrong answer" in proc.stdout


def test_only_a_server_on_this_machine_is_called(tmp_path):
    (tmp_path / "s.txt").write_text("a cat .\n")
    proc = run_load("--url", "http://example.org:8000", "--sentences", str(tmp_path / "s.txt"), "--input", "text")
    assert proc.returncode == 2 and "only a server on this machine" in proc.stderr
