"""`nlp-lstm bench`: real runs of the configured model and the reference loop on fixtures."""

import json

import pytest
import torch

from helpers.corpora import TINY_MODEL, text_data_overrides
from helpers.runs import run_cli
from helpers.tagging import TINY_TAGGER, conll_overrides, tagging_corpus


def run_bench(args, data_dir, timeout=300):
    return run_cli(["bench", *args], timeout=timeout, env={"NLP_LSTM_DATA_DIR": str(data_dir)})


def _check_report(report, unit, overrides):
    assert report["unit"] == unit and report["overrides"] == overrides
    for who in ("ours", "reference"):
        for phase in ("train", "infer"):
            assert report[f"{who}.{phase}.{unit}_per_sec"] > 0
            assert report[f"{who}.{phase}.peak_memory_mb"] > 0
    for phase in ("train", "infer"):
        expected = report[f"ours.{phase}.{unit}_per_sec"] / report[f"reference.{phase}.{unit}_per_sec"]
        assert report[f"ratio.{phase}"] == pytest.approx(expected)


def test_bench_runs_the_precision_a_training_run_would(text_corpus, tmp_path):
    """`trainer.precision=auto` (the LM default) is resolved for the device as `train.py`
    does it (bf16 where native, else fp32), never left to autocast as fp16."""
    from nlp_lstm.bench import run_bench as bench_in_process
    from nlp_lstm.device import resolve_precision

    overrides = (
        text_data_overrides(text_corpus)
        + TINY_MODEL
        + ["trainer.precision=auto", f"paths.data_dir={tmp_path / 'data'}"]
    )
    report = bench_in_process(overrides, steps=2, warmup=1, reference_precision="same")
    expected = resolve_precision("auto", torch.device("cpu"))
    assert report["precision"] == report["reference_precision"] == expected


def test_autocast_context_refuses_an_unresolved_precision():
    from nlp_lstm.device import autocast_context

    with pytest.raises(ValueError, match="precision 'auto'"):
        autocast_context(torch.device("cpu"), "auto")


def test_bench_language_model_against_reference(text_corpus, tmp_path):
    overrides = text_data_overrides(text_corpus) + TINY_MODEL + ["trainer.precision=bf16"]
    out = tmp_path / "bench.json"
    proc = run_bench([*overrides, "--steps", "4", "--warmup", "1", "--json", str(out)], tmp_path / "data")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    _check_report(report, "tokens", overrides)
    assert report["precision"] == "bf16" and report["task"] == "lm" and report["steps"] == 4
    # The table names both loops and the ratio row.
    assert [line.split()[0] for line in proc.stdout.splitlines()[-3:]] == ["ours", "reference", "ratio"]


def test_bench_tagger_against_reference(tmp_path):
    corpus = tagging_corpus(tmp_path / "corpus")
    overrides = conll_overrides(corpus) + TINY_TAGGER
    out = tmp_path / "bench.json"
    proc = run_bench([*overrides, "--steps", "3", "--warmup", "1", "--json", str(out)], tmp_path / "data")
    assert proc.returncode == 0, proc.stderr
    _check_report(json.loads(out.read_text()), "sentences", overrides)


def test_bench_without_reference_and_bad_input(text_corpus, tmp_path):
    overrides = text_data_overrides(text_corpus) + TINY_MODEL
    out = tmp_path / "bench.json"
    proc = run_bench([*overrides, "--steps", "2", "--no-reference", "--json", str(out)], tmp_path / "data")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert "reference.train.tokens_per_sec" not in report and "ratio.train" not in report
    assert report["ours.train.tokens_per_sec"] > 0
    bad = run_bench([*overrides, "model.hidden_size=-3"], tmp_path / "data")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert "model.hidden_size" in bad.stderr
    unknown = run_bench(["model=nonexistent"], tmp_path / "data")
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: ") and "nonexistent" in unknown.stderr
