"""NaN/Inf losses and gradients: skipped with a counter, or the run stops; a non-finite
model is never saved as the best."""

import json

import pytest
import torch

from helpers.corpora import TINY_MODEL, make_lines, write_lines
from nlp_lstm.errors import NlpLstmError
from nlp_lstm.train_entry import build_task, compose_config
from nlp_lstm.training.checkpoint import load_checkpoint
from nlp_lstm.training.trainer import Trainer

FAULT_WORD = "zzzfault"


def _corpus(tmp_path):
    """Train holds FAULT_WORD in a few lines; valid and test never do."""
    d = tmp_path / "corpus"
    d.mkdir()
    train = make_lines(300, 1)
    for i in (40, 160, 250):
        train[i] = f"the {FAULT_WORD} sat on the mat ."
    return {
        "train": write_lines(d / "train.txt", train),
        "valid": write_lines(d / "valid.txt", make_lines(50, 2)),
        "test": write_lines(d / "test.txt", make_lines(50, 3)),
    }


def _trainer(tmp_path, *overrides):
    corpus = _corpus(tmp_path)
    cfg = compose_config(
        [
            "data=text",
            *(f"data.{s}={p}" for s, p in corpus.items()),
            *TINY_MODEL,
            f"paths.data_dir={tmp_path / 'data'}",
            "trainer.max_time=null",
            "logger.tensorboard=false",
            *overrides,
        ],
        tmp_path / "run",
    )
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
        assert bool(out.kept) != has_fault  # a skipped step trains on nothing
        assert torch.isfinite(out.nll_sum)  # and never poisons the running loss
    trainer.read_step_flags()  # the flags stay on the device until log time
    assert faulty >= 1 and trainer.state.skipped_steps == faulty
    weights = dict(task.model.named_parameters())
    rows = torch.ones(weights["embedding.weight"].size(0), dtype=torch.bool)
    rows[fault] = False
    # No NaN update reached any weight; the faulty row itself was never updated.
    assert torch.isfinite(weights["embedding.weight"][rows]).all()
    assert all(torch.isfinite(p).all() for n, p in weights.items() if n != "embedding.weight")
    assert torch.equal(weights["embedding.weight"][fault], before["embedding.weight"][fault])
    assert not torch.equal(weights["embedding.weight"][rows], before["embedding.weight"][rows])  # others trained


def _state_after(tmp_path, name, optim, steps):
    """Weights and optimiser state after train_step on `steps` (batch, seed) pairs; the
    carried state restarts and the RNG is reseeded before each, so that two runs differ only
    in the batches they see."""
    (tmp_path / name).mkdir()
    extra = ["optim.momentum=0.9"] if optim == "sgd" else []
    trainer, task = _trainer(tmp_path / name, f"optim={optim}", "optim.weight_decay=0.01", *extra)
    for batch, seed in steps:
        task.hidden = task.model.initial_state(task.cfg.task.batch_size, task.device)
        torch.manual_seed(seed)
        trainer.train_step(batch)
    optimiser = [t for state in trainer.optimizer.state.values() for t in state.values()]
    return [p.detach() for p in task.model.parameters()], optimiser


@pytest.mark.parametrize("optim", ["sgd", "adamw"])
@pytest.mark.parametrize("where", ["first", "later"])
def test_a_skipped_step_leaves_weights_and_optimiser_as_if_its_batch_never_came(tmp_path, optim, where):
    """Momentum, weight decay and Adam's step count included: fused optimisers skip with a
    device-side flag, and a momentum buffer made on a skipped first step must not be garbage."""
    (tmp_path / "batches").mkdir()
    _, task = _trainer(tmp_path / "batches")
    fault = task.tokenizer.vocab[FAULT_WORD]
    task.start_epoch(0)
    batches = []
    while (batch := task.next_batch()) is not None:
        batches.append(batch)
    bad = next(b for b in batches if (b[0][0] == fault).any())
    good = [b for b in batches if not (b[0][0] == fault).any()][:3]
    clean = [(b, i) for i, b in enumerate(good)]
    with_fault = [(bad, 99)] + clean if where == "first" else clean[:1] + [(bad, 99)] + clean[1:]
    weights, optimiser = _state_after(tmp_path, "clean", optim, clean)
    weights_f, optimiser_f = _state_after(tmp_path, "fault", optim, with_fault)
    assert len(optimiser) == len(optimiser_f) > 0
    for a, b in zip(weights + optimiser, weights_f + optimiser_f):
        finite = torch.isfinite(a)  # the faulty embedding row is inf in both
        assert torch.equal(finite, torch.isfinite(b)) and torch.equal(a[finite], b[finite])


@pytest.mark.parametrize("log_every", [1, 50])
def test_a_skipped_step_does_not_advance_the_per_step_schedule(tmp_path, log_every):
    """Warmup and cosine count optimiser updates: a skipped step makes none, so the schedule
    stands where it would had its batch never come. The verdict stays on the device, so the
    schedule's clock is put back when the counters are read: every step with a log line
    each step, else at the next log line, checkpoint or evaluation (here the last one)."""
    steps = 30
    trainer, _ = _trainer(
        tmp_path,
        "optim=adamw",
        "optim.schedule=cosine",
        "optim.warmup_steps=100",
        f"trainer.max_steps={steps}",
        f"trainer.log_every_n_steps={log_every}",
        "trainer.val_check_interval=null",
    )
    lrs, kept = [], []
    step_once = trainer.train_step

    def recording_step(batch):  # the lr each step really runs with, and whether it updated
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
        out, grad_norm = step_once(batch)
        kept.append(bool(out.kept))
        return out, grad_norm

    trainer.train_step = recording_step
    with pytest.raises(NlpLstmError, match="no finite validation result"):
        trainer.fit()  # the faulty embedding row stays inf: no model is ever the best
    skipped = trainer.state.skipped_steps
    assert trainer.state.step == steps and skipped >= 1
    base = trainer.cfg.optim.lr
    assert trainer.scheduler.last_epoch == steps - skipped
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(base * (steps - skipped + 1) / 100)
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["scheduler"]
    assert saved["last_epoch"] == steps - skipped  # a resumed run continues from the same place
    assert kept.count(False) == skipped
    if log_every == 1:  # read every step: each step's lr is that of the updates made before it
        updates_before = [sum(kept[:i]) for i in range(steps)]
        assert lrs == pytest.approx([base * (u + 1) / 100 for u in updates_before])


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
    with pytest.raises(
        NlpLstmError,
        match=r"1 non-finite steps in a row \(trainer.max_nonfinite_steps=1\); "
        r"the model has diverged",
    ):
        trainer.fit()
    assert not (tmp_path / "run" / "model").exists()
