"""Shared by the resume tests: a run stopped and resumed against one never stopped."""

import torch

from helpers.runs import run_train
from nlp_lstm.training.checkpoint import load_checkpoint


def same_run(a_dir, b_dir):
    """Assert two run dirs ended in the same state, bitwise: trainer state and history (less
    wall time), weights, averaged weights, scheduler, learning rates, package; returns a's
    checkpoint."""
    a = load_checkpoint(a_dir / "checkpoints" / "last.pt")
    b = load_checkpoint(b_dir / "checkpoints" / "last.pt")
    for key in ("step", "epoch", "best", "best_step", "evals_since_best", "stop_reason"):
        assert a["trainer"][key] == b["trainer"][key], key
    strip = lambda history: [{k: v for k, v in h.items() if k != "wall_time_s"} for h in history]  # noqa: E731
    assert strip(a["trainer"]["history"]) == strip(b["trainer"]["history"])
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert (a["averaged"] is None) == (b["averaged"] is None)
    if a["averaged"] is not None:
        for name, tensor in a["averaged"].items():
            assert torch.equal(tensor, b["averaged"][name]), name
    assert a["scheduler"] == b["scheduler"]
    assert [g["lr"] for g in a["optimizer"]["param_groups"]] == [g["lr"] for g in b["optimizer"]["param_groups"]]
    package_a = torch.load(a_dir / "model" / "weights.pt", weights_only=True)
    package_b = torch.load(b_dir / "model" / "weights.pt", weights_only=True)
    assert package_a.keys() == package_b.keys()
    for name, tensor in package_a.items():
        assert torch.equal(tensor, package_b[name]), name
    return a


def straight_and_split(tmp_path, common, total, first):
    """Run `total` steps straight (a), and `first` steps then resumed to `total` (b)."""
    run_train(tmp_path / "a", common + [f"trainer.max_steps={total}"], tmp_path / "data")
    run_train(tmp_path / "b", common + [f"trainer.max_steps={first}"], tmp_path / "data")
    run_train(tmp_path / "b", common + [f"trainer.max_steps={total}", "trainer.resume=true"], tmp_path / "data")
    return same_run(tmp_path / "a", tmp_path / "b")
