"""NaN/Inf losses and gradients: skipped with a counter, or the run stops; a non-finite
model is never saved as the best."""

import json

import pytest
import torch

from conftest import TINY_MODEL, make_lines, write_lines
from nlp_lstm.errors import NlpLstmError
from nlp_lstm.train_entry import build_task, compose_config
from nlp_lstm.training.trainer import Trainer

FAULT_WORD = "zzzfault"


def _corpus(tmp_path):
    """Train holds FAULT_WORD in a few lines; valid and test never do."""
    d = tmp_path / "corpus"
    d.mkdir()
    train = make_lines(300, 1)
    for i in (40, 160, 250):
        train[i] = f"the {FAULT_WORD} sat on the mat ."
    return {"train": write_lines(d / "train.txt", train), "valid": write_lines(d / "valid.txt", make_lines(50, 2)),
            "test": write_lines(d / "test.txt", make_lines(50, 3))}


def _trainer(tmp_path, *overrides):
    corpus = _corpus(tmp_path)
    cfg = compose_config(["data=text", *(f"data.{s}={p}" for s, p in corpus.items()), *TINY_MODEL,
                   f"paths.data_dir={tmp_path / 'data'}", "trainer.max_time=null",
                   "logger.tensorboard=false", *overrides], tmp_path / "run")
    torch.manual_seed(0)
    task = build_task(cfg, torch.device("cpu"))
    # The fault: an overflowed embedding row, as a bad initialisation or an fp16 overflow leaves.
    with torch.no_grad():
        task.model.embedding.weight[task.tokenizer.vocab[FAULT_WORD]] = float("inf")
    return Trainer(cfg, task, tmp_path / "run", torch.device("cpu")), task


def _batches_with_fault(task) -> int:
    fault = task.tokenizer.vocab[FAULT_WORD]
    task.start_epoch(0)
    count = 0
    while (batch := task.next_batch()) is not None:
        count += int((batch[0][0] == fault).any())
    return count


def test_nonfinite_steps_are_skipped_and_counted_and_nothing_else_is_touched(tmp_path):
    trainer, task = _trainer(tmp_path)
    fault = task.tokenizer.vocab[FAULT_WORD]
    before = {n: p.detach().clone() for n, p in task.model.named_parameters()}
    task.start_epoch(0)
    faulty, steps = 0, 0
    while (batch := task.next_batch()) is not None:
        has_fault = bool((batch[0][0] == fault).any())
        out, _ = trainer.train_step(batch)
        steps += 1
        faulty += has_fault
        assert (out.units == 0) == has_fault  # a skipped step trains on nothing
        assert torch.isfinite(out.nll_sum)  # and never poisons the running loss
    assert faulty >= 1 and trainer.state["skipped_steps"] == faulty
    weights = dict(task.model.named_parameters())
    rows = torch.ones(weights["embedding.weight"].size(0), dtype=torch.bool)
    rows[fault] = False
    # No NaN update reached any weight; the faulty row itself was never updated.
    assert torch.isfinite(weights["embedding.weight"][rows]).all()
    assert all(torch.isfinite(p).all() for n, p in weights.items() if n != "embedding.weight")
    assert torch.equal(weights["embedding.weight"][fault], before["embedding.weight"][fault])
    assert not torch.equal(weights["embedding.weight"][rows], before["embedding.weight"][rows])  # others trained


def test_a_non_finite_model_is_never_saved_as_best(tmp_path):
    trainer, _ = _trainer(tmp_path, "trainer.max_epochs=1")
    with pytest.raises(NlpLstmError, match="no finite validation result: no model was saved"):
        trainer.fit()  # valid never holds the faulty word, so its loss is finite: the weights decide
    assert not (tmp_path / "run" / "model").exists()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["train"]["skipped_steps"] >= 1 and metrics["best_valid"] is None


def test_nonfinite_stop_policy_names_the_step(tmp_path):
    trainer, _ = _trainer(tmp_path, "trainer.nonfinite=stop", "trainer.max_epochs=1")
    with pytest.raises(NlpLstmError, match=r"non-finite loss at step \d+ \(trainer.nonfinite=stop\)"):
        trainer.fit()


def test_too_many_nonfinite_steps_in_a_row_stop_the_run(tmp_path):
    trainer, _ = _trainer(tmp_path, "trainer.max_nonfinite_steps=1", "trainer.max_epochs=1")
    with pytest.raises(NlpLstmError, match=r"1 non-finite steps in a row \(trainer.max_nonfinite_steps=1\); "
                                           r"the model has diverged"):
        trainer.fit()
    assert not (tmp_path / "run" / "model").exists()
