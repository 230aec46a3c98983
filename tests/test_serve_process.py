"""`nlp-lstm serve` as a process: a signal stops it cleanly with requests in flight, it
binds this machine only by default, `--workers` serves from several processes, the command
says how to install a missing extra, and the page shows labelled spans in a real browser."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import nlp_lstm  # noqa: E402
from helpers.paths import ROOT  # noqa: E402
from helpers.serve import ServeProcess  # noqa: E402

TEXTS = [
    "the old cat saw a dog near the river .",
    "Alice likes the red house .",
    "Bob reads a report .",
    "every happy man chased a small bird .",
]


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_signal_finishes_the_requests_in_flight_refuses_new_ones_and_exits_0(trained_tagger, stop):
    model = trained_tagger["run_dir"] / "model"
    expected = [[t["tag"] for t in tokens] for tokens in nlp_lstm.load(model, device="cpu").tag(TEXTS)]
    # Requests wait 3 s for company in the queue: they are in flight when the signal comes.
    server = ServeProcess(model, "--max-wait-ms", "3000", "--device", "cpu")
    try:
        assert f"Uvicorn running on http://127.0.0.1:{server.port}" in server.output()  # this machine only
        with ThreadPoolExecutor(len(TEXTS)) as pool:
            pending = [pool.submit(httpx.post, server.url + "/tag", json={"texts": [t]}, timeout=60) for t in TEXTS]
            deadline = time.monotonic() + 20
            while httpx.get(server.url + "/health").json()["queue"] < len(TEXTS):
                assert time.monotonic() < deadline, "the requests never reached the queue"
                time.sleep(0.05)
            server.proc.send_signal(stop)
            time.sleep(0.5)
            with pytest.raises(httpx.ConnectError):  # no new connection once stopping
                httpx.get(server.url + "/health", timeout=5)
            answers = [p.result() for p in pending]
        assert [a.status_code for a in answers] == [200] * len(TEXTS)
        assert [[t["tag"] for t in a.json()["results"][0]["tokens"]] for a in answers] == expected
        assert server.proc.wait(60) == 0, server.output()
    finally:
        server.stop()


def test_workers_serve_from_several_processes_and_metrics_count_them_all(trained_tagger):
    server = ServeProcess(trained_tagger["run_dir"] / "model", "--workers", "2", "--device", "cpu")
    try:
        for text in TEXTS * 3:
            assert httpx.post(server.url + "/tag", json={"texts": [text]}, timeout=60).status_code == 200
        metrics = httpx.get(server.url + "/metrics").text
        assert 'nlp_lstm_requests_total{route="/tag",status="200"} 12.0' in metrics
        assert server.output().count("Application startup complete") == 2
        assert server.stop() == 0
    finally:
        server.stop()


def _without_the_extra(code: str) -> subprocess.CompletedProcess:
    """Run `code` in a Python where fastapi cannot be imported (as without the serve extra)."""
    prelude = "import sys; sys.modules['fastapi'] = None\nfrom nlp_lstm.cli import main\n"
    return subprocess.run([sys.executable, "-c", prelude + code], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_without_the_serve_extra_serve_says_how_to_install_it_and_tag_still_works(trained_tagger, tmp_path):
    model = trained_tagger["run_dir"] / "model"
    proc = _without_the_extra(f"sys.exit(main(['serve', {str(model)!r}]))")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: nlp-lstm serve needs fastapi: pip install 'nlp-lstm[serve]' "
        "(or pip install fastapi uvicorn prometheus-client)"
    ]
    source = tmp_path / "in.txt"
    source.write_text("Alice likes the red house .\n")
    proc = _without_the_extra(f"sys.exit(main(['tag', {str(model)!r}, {str(source)!r}, '--device', 'cpu']))")
    assert proc.returncode == 0 and "Alice" in proc.stdout, proc.stderr


def test_a_tagger_that_needs_an_input_column_is_refused_in_one_line(tmp_path):
    from helpers.tagging import TINY_TAGGER, conll_overrides, tagging_corpus, untrained_package

    corpus = tagging_corpus(tmp_path / "corpus")
    package = untrained_package(
        conll_overrides(corpus, pos_feature=True) + TINY_TAGGER, tmp_path / "run", tmp_path / "model"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "nlp_lstm.cli", "serve", str(package), "--port", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: this tagger reads input column(s) pos besides the words")
    assert len(proc.stderr.strip().splitlines()) == 1


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def rendered_dom(url: str, profile_dir) -> str:
    """The page's DOM after headless Chromium has run its scripts (up to 10 s of page time)."""
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        f"--user-data-dir={profile_dir}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        url,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120).stdout


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium to render the page")
def test_the_page_shows_the_text_with_its_spans_labelled_in_a_browser(trained_tagger, tmp_path):
    from helpers.serve import thread_server
    from nlp_lstm.serve.app import create_app
    from nlp_lstm.serve.settings import ServeSettings

    text = "Alice likes the red house ."
    spans = nlp_lstm.load(trained_tagger["run_dir"] / "model", device="cpu").spans([text])[0]
    app = create_app(ServeSettings(model=str(trained_tagger["run_dir"] / "model"), device="cpu"))
    with thread_server(app) as url:
        dom = rendered_dom(f"{url}/?text=Alice%20likes%20the%20red%20house%20.", tmp_path)
    assert spans  # the chunker finds chunks here: the page must show each of them, labelled
    for span in spans:
        mark = (
            f'<mark class="span" data-label="{span["type"]}" title="{span["type"]} · confidence '
            f'{span["confidence"]:.3f}"'
        )
        assert mark in dom, dom[-3000:]
        assert f'{span["text"]}<span class="span-label"' in dom


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium to render the page")
def test_an_lm_page_scores_the_linked_text_in_a_browser(trained_lm, tmp_path):
    from helpers.serve import thread_server
    from nlp_lstm.serve.app import create_app
    from nlp_lstm.serve.settings import ServeSettings

    model = trained_lm["run_dir"] / "model"
    ppl = nlp_lstm.load(model, device="cpu").score_lines(["the cat sat on the mat ."], 10)["ppl"]
    with thread_server(create_app(ServeSettings(model=str(model), device="cpu"))) as url:
        dom = rendered_dom(f"{url}/?text=the%20cat%20sat%20on%20the%20mat%20.", tmp_path)
    assert '<table id="scores">' in dom, dom[-3000:]
    assert f'<td>the cat sat on the mat .</td><td class="number">8</td><td class="number">{ppl:.2f}</td>' in dom
