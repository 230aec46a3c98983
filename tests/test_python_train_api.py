"""nlp_lstm.train from Python: the config train.py would compose, the same run, the same
one-line errors (as exceptions), and a result that holds the trained model."""

import json

import pytest
import torch

import nlp_lstm
from helpers.corpora import TINY_MODEL, text_data_overrides
from helpers.runs import run_train
from nlp_lstm.errors import ConfigError, NlpLstmError


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """A run sets torch's thread count (trainer.num_threads) for this whole process."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _overrides(corpus):
    return (
        text_data_overrides(corpus)
        + TINY_MODEL
        + [
            "trainer.max_steps=6",
            "trainer.max_epochs=null",
            "trainer.max_time=null",
            f"paths.data_dir={corpus['train'].parent.parent / 'data'}",
        ]
    )


def test_train_from_python_gives_the_command_lines_run(tmp_path, text_corpus):
    overrides = _overrides(text_corpus)
    run_train(tmp_path / "cli", overrides, tmp_path / "data")
    result = nlp_lstm.train(overrides, run_dir=tmp_path / "api")
    cli = json.loads((tmp_path / "cli" / "metrics.json").read_text())
    assert result.run_dir == tmp_path / "api"
    assert result.metrics["status"] == "completed"
    assert result.metrics["best_valid"] == cli["best_valid"] and result.metrics["test"] == cli["test"]
    assert result.objective["value"] == cli["best_valid"][result.objective["metric"]]
    assert "end of training" in (tmp_path / "api" / "train.log").read_text()
    scored = result.model.score_lines(["the cat sat on the mat ."])  # 7 words + <eos>
    assert scored["tokens"] == 8 and scored["ppl"] > 1


def test_train_from_python_raises_the_command_lines_one_line_errors(tmp_path, text_corpus):
    with pytest.raises(ConfigError, match=r"^config model.dropout_output=2.0: must be in \[0, 1\)$"):
        nlp_lstm.train(_overrides(text_corpus) + ["model.dropout_output=2.0"], run_dir=tmp_path / "a")
    with pytest.raises(ConfigError, match="trainer.max_tme"):
        nlp_lstm.train(["trainer.max_tme=60"], run_dir=tmp_path / "b")
    nlp_lstm.train(_overrides(text_corpus), run_dir=tmp_path / "c")
    with pytest.raises(NlpLstmError, match="already holds a run"):
        nlp_lstm.train(_overrides(text_corpus), run_dir=tmp_path / "c")


def test_train_from_python_resumes_with_the_runs_own_overrides(tmp_path, text_corpus):
    nlp_lstm.train(_overrides(text_corpus), run_dir=tmp_path / "run")
    result = nlp_lstm.train(["trainer.resume=true", "trainer.max_steps=9"], run_dir=tmp_path / "run")
    assert result.metrics["train"]["steps"] == 9
