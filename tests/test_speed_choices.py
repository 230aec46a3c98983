"""Speed switches are chosen by timing the candidates on this machine, kept in a cache file
keyed by the machine and the shapes, read back without timing again, and switched off by
NLP_LSTM_SPEED_CHOICES=off; trainer.precision=auto and a tagger's precision=auto go through
them, and measuring changes nothing about what a run computes."""

from __future__ import annotations

import json
import logging
import time

import pytest
import torch

import nlp_lstm
from helpers.corpora import TINY_MODEL, text_data_overrides
from helpers.runs import run_train
from nlp_lstm import speed_choices
from nlp_lstm.device import precision_candidates

CPU = torch.device("cpu")


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    """An empty cache dir and an empty in-process memo."""
    monkeypatch.setenv(speed_choices.CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(speed_choices.MODE_ENV, raising=False)
    speed_choices.forget_in_process()
    yield tmp_path / "cache" / speed_choices.CACHE_FILE
    speed_choices.forget_in_process()


def sleeper(seconds: float, calls: list, name: str):
    def run():
        calls.append(name)
        time.sleep(seconds)

    return run


def test_the_fastest_candidate_is_chosen_kept_and_read_back_without_timing(own_cache, caplog):
    calls: list = []
    candidates = {"slow": sleeper(0.03, calls, "slow"), "fast": sleeper(0.002, calls, "fast")}
    with caplog.at_level(logging.INFO, logger="nlp_lstm"):
        assert speed_choices.choose("demo switch", "shape 3x4", CPU, candidates, default="slow") == "fast"
    # One untimed call each, then timed calls taking turns: three for the fast one; the slow
    # one, over twice as slow after its first, is not called again.
    assert calls[:4] == ["slow", "fast", "slow", "fast"]
    assert calls.count("fast") == 4 and calls.count("slow") == 2
    assert "demo switch: fast (timed on shape 3x4: fast" in caplog.text
    saved = json.loads(own_cache.read_text())
    (machine,) = saved
    assert machine == speed_choices.machine_key(CPU) and "torch " in machine
    record = saved[machine]["demo switch | shape 3x4"]
    assert record["choice"] == "fast" and record["ms"]["slow"] > record["ms"]["fast"]

    # Another process (an empty memo) reads the file and times nothing.
    speed_choices.forget_in_process()
    never = {"slow": lambda: pytest.fail("timed again"), "fast": lambda: pytest.fail("timed again")}
    assert speed_choices.choose("demo switch", "shape 3x4", CPU, never, default="slow") == "fast"
    # Other shapes are another choice.
    calls.clear()
    assert speed_choices.choose("demo switch", "shape 5x6", CPU, candidates, default="slow") == "fast"
    assert calls


def test_a_choice_made_among_other_candidates_is_made_again(own_cache):
    """A version that adds a candidate (a new softmax layout) must not reuse a choice made
    without it: the record keeps the candidates it was chosen among."""
    calls: list = []
    old = {"a": sleeper(0.002, calls, "a"), "b": sleeper(0.02, calls, "b")}
    assert speed_choices.choose("demo", "s", CPU, old, default="b") == "a"
    speed_choices.forget_in_process()
    calls.clear()
    new = {**old, "c": sleeper(0.0005, calls, "c")}
    assert speed_choices.choose("demo", "s", CPU, new, default="b") == "c"
    assert "c" in calls
    record = json.loads(own_cache.read_text())[speed_choices.machine_key(CPU)]["demo | s"]
    assert record["candidates"] == ["a", "b", "c"]


def test_a_screen_rules_candidates_out_before_any_is_timed(own_cache, caplog):
    calls: list = []
    candidates = {"a": sleeper(0.001, calls, "a"), "b": sleeper(0.001, calls, "b"), "c": sleeper(0.002, calls, "c")}
    with caplog.at_level(logging.INFO, logger="nlp_lstm"):
        choice = speed_choices.choose("demo", "s", CPU, candidates, default="c", screen=lambda: {"a": "too slow here"})
    assert choice in ("b", "c") and "a" not in calls
    assert "a left out: too slow here" in caplog.text
    # One candidate left: nothing to time.
    calls.clear()
    assert speed_choices.choose("demo", "t", CPU, candidates, default="a", screen=lambda: {"a": "x", "b": "y"}) == "c"
    assert calls == []
    record = json.loads(own_cache.read_text())[speed_choices.machine_key(CPU)]["demo | t"]
    assert record["choice"] == "c" and record["ms"] == {} and record["left_out"] == {"a": "x", "b": "y"}


def test_bf16_products_are_screened_against_fp32_on_this_machine():
    ruled_out = speed_choices.emulated_precisions(CPU, ["fp32", "bf16"])
    assert set(ruled_out) <= {"bf16"}
    assert all(why.startswith("its matrix products ran ") for why in ruled_out.values())


def test_off_takes_the_default_and_times_nothing(own_cache, monkeypatch):
    monkeypatch.setenv(speed_choices.MODE_ENV, "off")
    never = {"a": lambda: pytest.fail("timed"), "b": lambda: pytest.fail("timed")}
    assert speed_choices.choose("demo switch", "s", CPU, never, default="b") == "b"
    assert not own_cache.exists()


def test_a_candidate_that_fails_here_is_left_out_and_an_unwritable_cache_is_no_error(tmp_path, monkeypatch):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    monkeypatch.setenv(speed_choices.CACHE_DIR_ENV, str(blocker))  # a file where the dir should be
    speed_choices.forget_in_process()

    def unsupported():
        raise RuntimeError("no kernel for this dtype here")

    assert speed_choices.choose("demo switch", "s", CPU, {"x": unsupported, "y": lambda: None}, default="x") == "y"
    speed_choices.forget_in_process()
    assert speed_choices.choose("demo switch", "t", CPU, {"x": unsupported}, default="x") == "x"
    speed_choices.forget_in_process()


def test_a_damaged_cache_file_is_measured_again(own_cache):
    own_cache.parent.mkdir(parents=True)
    own_cache.write_text("{not json")
    assert speed_choices.choose("demo switch", "s", CPU, {"only": lambda: None}, default="only") == "only"
    assert json.loads(own_cache.read_text())[speed_choices.machine_key(CPU)]["demo switch | s"]["choice"] == "only"


def _lm_run(tmp_path, text_corpus, name, extra=()):
    run_dir = tmp_path / name
    proc = run_train(
        run_dir,
        text_data_overrides(text_corpus)
        + TINY_MODEL
        + ["trainer.precision=auto", "trainer.max_steps=6", "trainer.max_time=null", "logger.tensorboard=false"]
        + list(extra),
        tmp_path / "data",
    )
    return run_dir, proc


def test_precision_auto_is_timed_once_and_timing_changes_nothing_the_run_computes(tmp_path, text_corpus, own_cache):
    dropout = ["model.dropout_output=0.3"]  # training draws random masks: the timing must not move them
    first, proc = _lm_run(tmp_path, text_corpus, "first", dropout)
    log = (first / "train.log").read_text()
    assert "trainer.precision=auto: " in log and "timed on RNNLanguageModel" in log, log
    assert log.count("softmax products: ") == 1, log  # said once, not at every step
    record = json.loads(own_cache.read_text())[speed_choices.machine_key(CPU)]
    ((key, choice),) = [(k, v) for k, v in record.items() if k.startswith("trainer.precision=auto")]
    # bf16 is timed on the model, or left out by the product screen (a CPU without bf16 units)
    assert choice["choice"] in precision_candidates(CPU)
    assert set(choice["ms"]) | set(choice["left_out"]) | {choice["choice"]} == set(precision_candidates(CPU))
    assert not choice["left_out"] or "bf16 left out: its matrix products ran" in log
    speed_choices.forget_in_process()  # the second run as a new process: the file, not the memo
    second, _ = _lm_run(tmp_path, text_corpus, "second", dropout)
    assert "measured on this machine earlier" in (second / "train.log").read_text()
    # The timing ran a training step in each precision: it must have left no trace (weights,
    # random state, data position) on the run that followed it.
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (first, second)]
    for key in ("best_valid", "test"):
        assert metrics[0][key] == metrics[1][key], key
    assert [h["valid"] for h in metrics[0]["history"]] == [h["valid"] for h in metrics[1]["history"]]


def test_a_resumed_auto_run_keeps_the_precision_it_began_with(tmp_path, text_corpus, own_cache):
    run_dir, _ = _lm_run(tmp_path, text_corpus, "run", ["trainer.max_steps=3"])
    machine = speed_choices.machine_key(CPU)
    data = json.loads(own_cache.read_text())
    (key,) = [k for k in data[machine] if k.startswith("trainer.precision=auto")]
    began = data[machine][key]["choice"]
    other = "bf16" if began == "fp32" else "fp32"
    data[machine][key]["choice"] = other  # as if a timing now said otherwise
    own_cache.write_text(json.dumps(data))
    speed_choices.forget_in_process()
    run_train(
        run_dir,
        text_data_overrides(text_corpus)
        + TINY_MODEL
        + ["trainer.precision=auto", "trainer.max_steps=6", "trainer.max_time=null", "logger.tensorboard=false"]
        + ["trainer.resume=true"],
        tmp_path / "data",
    )
    log = (run_dir / "train.log").read_text()
    assert f"trainer.precision=auto: {began}, as the run began (a timing now said {other})" in log


def test_a_taggers_auto_precision_is_timed_on_the_tagger(trained_tagger, own_cache):
    tagger = nlp_lstm.load(trained_tagger["run_dir"] / "model", device="cpu")
    assert tagger.precision in precision_candidates(CPU)
    record = json.loads(own_cache.read_text())[speed_choices.machine_key(CPU)]
    (key,) = [k for k in record if k.startswith("tagging precision=auto")]
    assert "SequenceTagger" in key and "sentences x 24 words" in key
    assert record[key]["choice"] == tagger.precision
    assert nlp_lstm.load(trained_tagger["run_dir"] / "model", device="cpu").set_precision("fp32").precision == "fp32"
