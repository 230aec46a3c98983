"""Resume and run dirs from the command line: a bare `trainer.resume=true hydra.run.dir=RUN`
resumes the run as it was started, a finished run is never overwritten, and resuming a
finished run changes nothing. (The signal path: tests/reliability/test_interrupts.py.)"""

import json

from helpers.corpora import TINY_MODEL, text_data_overrides
from helpers.runs import run_train


def _common(corpus):
    return text_data_overrides(corpus) + TINY_MODEL + ["trainer.max_epochs=null", "trainer.max_time=null"]


def test_a_bare_resume_takes_the_runs_own_overrides(tmp_path, text_corpus):
    run_dir = tmp_path / "run"
    run_train(run_dir, _common(text_corpus) + ["trainer.max_steps=4", "model.hidden_size=20"], tmp_path / "data")
    proc = run_train(run_dir, ["trainer.resume=true", "trainer.max_steps=8"], tmp_path / "data")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["train"]["steps"] == 8
    assert "wikitext" not in proc.stderr.lower()  # the default corpus was never composed
    composed = (run_dir / ".hydra" / "config.yaml").read_text()
    assert "hidden_size: 20" in composed and str(text_corpus["train"]) in composed


def test_resume_refuses_a_changed_model_before_reading_any_data(tmp_path, text_corpus):
    run_dir = tmp_path / "run"
    run_train(run_dir, _common(text_corpus) + ["trainer.max_steps=3"], tmp_path / "data")
    text_corpus["train"].unlink()  # were data read first, the error would name this file
    proc = run_train(run_dir, ["trainer.resume=true", "model.hidden_size=32"], tmp_path / "data", check=False)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "model.hidden_size=32 differs from the run's 24" in errors[0], proc.stderr[-2000:]
    assert "train.txt" not in proc.stderr


def test_training_into_a_dir_that_holds_a_run_is_refused_and_leaves_it_alone(tmp_path, text_corpus):
    run_dir = tmp_path / "run"
    run_train(run_dir, _common(text_corpus) + ["trainer.max_steps=3"], tmp_path / "data")
    before = {p: p.read_bytes() for p in (run_dir / "metrics.json", run_dir / "checkpoints" / "last.pt")}
    proc = run_train(run_dir, _common(text_corpus) + ["trainer.max_steps=5"], tmp_path / "data", check=False)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: run dir {run_dir} already holds a run") and "trainer.resume=true" in last
    assert {p: p.read_bytes() for p in before} == before


def test_resuming_a_finished_run_changes_nothing(tmp_path, text_corpus):
    run_dir = tmp_path / "run"
    run_train(run_dir, _common(text_corpus) + ["trainer.max_steps=3", "logger.projector_tokens=20"], tmp_path / "data")
    files = [run_dir / "metrics.json", run_dir / "model" / "weights.pt", run_dir / "checkpoints" / "last.pt"]
    before = {p: p.read_bytes() for p in files}
    events = lambda: sorted((p.name, p.stat().st_size) for p in run_dir.rglob("events.out.tfevents.*"))  # noqa: E731
    tb_before = events()
    assert tb_before
    proc = run_train(run_dir, ["trainer.resume=true"], tmp_path / "data")
    said = proc.stdout + proc.stderr
    assert "the run is complete (max_steps reached at step 3)" in said
    assert "Embedding dir exists" not in said and "end of training" not in said  # nothing scored again
    assert {p: p.read_bytes() for p in files} == before
    assert events() == tb_before  # no new event file, nothing appended
