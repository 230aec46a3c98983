"""The trainer's state in a checkpoint: still the plain dict every checkpoint so far holds
(the same keys, plain values that `weights_only=True` reads), and checkpoints as earlier
versions wrote them (that dict built key by key, before the trainer kept its state in a
dataclass; without the keys added later; without the best weights) resume exactly."""

import shutil

import torch

from helpers.corpora import TINY_MODEL, text_data_overrides
from helpers.resume import same_run
from helpers.runs import run_train
from nlp_lstm.training.checkpoint import load_checkpoint, save_checkpoint

# The trainer state as every checkpoint of format 2 holds it (written by the trainer of
# 2026-11-27 on, a dict of these keys in this order).
OLD_TRAINER_KEYS = (
    "epoch",
    "step",
    "in_epoch",
    "wall_time",
    "train_time",
    "train_units",
    "train_tokens",
    "best",
    "best_step",
    "history",
    "evals_since_best",
    "last_eval_step",
    "stop_reason",
    "skipped_steps",
    "nonfinite_in_a_row",
)
# Keys the dict gained over time: a dict without them takes their defaults. (Every checkpoint
# that loads holds the first three, as they came before checksummed checkpoints, format 2;
# `precision`, the one trainer.precision=auto measured, came after TrainerState.)
LATER_KEYS = ("train_tokens", "skipped_steps", "nonfinite_in_a_row", "precision")
TRAINER_KEYS = OLD_TRAINER_KEYS + ("precision",)

QUIET = ["trainer.max_epochs=null", "trainer.max_time=null", "logger.tensorboard=false", "trainer.progress_bar=false"]
# NT-ASGD starts averaging at step 16: the first part's checkpoint (step 18) holds a best
# model, an evaluation history and averaged weights.
NTASGD = [
    "optim=ntasgd",
    "optim.nonmono=1",
    "optim.lr=20",
    "optim.schedule=none",
    "trainer.val_check_interval=4",
    "task.batch_size=20",
]


def _plain(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def _as_old_code_wrote_it(checkpoint_path, drop=(), without_best_model=False) -> None:
    """Rewrite the checkpoint's trainer state as a dict built key by key, as the trainer
    wrote it before TrainerState (less the keys in `drop`), and without the best weights
    if `without_best_model` (a checkpoint from before they were kept); all else stays."""
    payload = load_checkpoint(checkpoint_path)
    saved = payload["trainer"]
    payload["trainer"] = {key: saved[key] for key in OLD_TRAINER_KEYS if key not in drop}
    if without_best_model:
        del payload["best_model"]
    save_checkpoint(checkpoint_path, payload)  # payload's own rng and format are kept


def test_the_checkpoint_holds_the_trainer_state_as_the_same_plain_dict(tmp_path, text_corpus):
    run_dir = tmp_path / "run"
    run_train(
        run_dir,
        text_data_overrides(text_corpus) + TINY_MODEL + QUIET + NTASGD + ["trainer.max_steps=18"],
        tmp_path / "data",
    )
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")["trainer"]
    assert type(state) is dict and tuple(state) == TRAINER_KEYS
    assert _plain(state)
    assert state["step"] == 18 and state["best_step"] is not None and len(state["history"]) == 4
    assert state["best"] == min((h["valid"] for h in state["history"]), key=lambda v: v["loss"])


def test_checkpoints_as_earlier_versions_wrote_them_resume_exactly(tmp_path, text_corpus):
    """Stopped at step 18, its checkpoint rewritten as earlier versions wrote it: the state
    dict whole, or without the keys added later, resumed to 30 == the run never stopped;
    without the best weights, resumed to 22 (no better evaluation after the resume), the
    best weights are the package's, which at step 18 holds them (the final evaluation of
    the first part was no better)."""
    common = text_data_overrides(text_corpus) + TINY_MODEL + QUIET + NTASGD
    data = tmp_path / "data"
    run_train(tmp_path / "straight", common + ["trainer.max_steps=30"], data)
    run_train(tmp_path / "old", common + ["trainer.max_steps=18"], data)
    first_part = load_checkpoint(tmp_path / "old" / "checkpoints" / "last.pt")
    shutil.copytree(tmp_path / "old", tmp_path / "older")
    shutil.copytree(tmp_path / "old", tmp_path / "no_best_model")
    _as_old_code_wrote_it(tmp_path / "old" / "checkpoints" / "last.pt")
    _as_old_code_wrote_it(tmp_path / "older" / "checkpoints" / "last.pt", drop=LATER_KEYS)
    _as_old_code_wrote_it(tmp_path / "no_best_model" / "checkpoints" / "last.pt", without_best_model=True)
    for name in ("old", "older"):
        run_train(tmp_path / name, common + ["trainer.max_steps=30", "trainer.resume=true"], data)
        checkpoint = same_run(tmp_path / "straight", tmp_path / name)
        assert checkpoint["averaged"] is not None  # NT-ASGD had started before the stop
    straight, old, older = (
        load_checkpoint(tmp_path / name / "checkpoints" / "last.pt")["trainer"] for name in ("straight", "old", "older")
    )
    for key in ("train_units", "train_tokens", "skipped_steps", "nonfinite_in_a_row", "last_eval_step", "in_epoch"):
        assert old[key] == straight[key], key
    # The keys it lacked are written again, train_tokens counted from the resume on.
    assert tuple(older) == TRAINER_KEYS
    assert older["train_tokens"] == straight["train_tokens"] - first_part["trainer"]["train_tokens"] > 0
    assert older["skipped_steps"] == older["nonfinite_in_a_row"] == 0

    run_train(tmp_path / "no_best_model", common + ["trainer.max_steps=22", "trainer.resume=true"], data)
    resumed = load_checkpoint(tmp_path / "no_best_model" / "checkpoints" / "last.pt")
    assert resumed["trainer"]["step"] == 22 and resumed["trainer"]["best_step"] == first_part["trainer"]["best_step"]
    assert resumed["best_model"].keys() == first_part["best_model"].keys()
    for name, tensor in first_part["best_model"].items():
        assert torch.equal(resumed["best_model"][name], tensor), name


def test_trainer_state_reads_the_dict_of_every_checkpoint_version():
    from nlp_lstm.training.state import TrainerState

    state = TrainerState(
        epoch=2,
        step=40,
        in_epoch=True,
        wall_time=3.5,
        train_units=800,
        train_tokens=900,
        best={"loss": 3.2, "ppl": 24.5},
        best_step=32,
        history=[{"step": 32, "valid": {"loss": 3.2}}],
        evals_since_best=1,
        last_eval_step=36,
        skipped_steps=2,
        nonfinite_in_a_row=1,
    )
    saved = state.to_dict()
    assert tuple(saved) == TRAINER_KEYS and _plain(saved)
    assert TrainerState.from_dict(saved) == state
    saved["history"][0]["step"] = 0
    assert state.history[0]["step"] == 32  # the saved dict is a copy: the run goes on changing its own
    before_later_keys = {k: v for k, v in state.to_dict().items() if k not in LATER_KEYS}
    assert TrainerState.from_dict(before_later_keys) == TrainerState(**{**before_later_keys, "train_tokens": 0})
    # A key this version does not keep (one a later change removed) does not stop a resume.
    assert TrainerState.from_dict({**state.to_dict(), "removed_since": 1}) == state
