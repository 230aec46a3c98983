"""What the trainer counts and remembers over a run, and how a checkpoint keeps it.

A checkpoint holds the state as a plain dict (`to_dict`), never the class: checkpoints are
read with `weights_only=True`, which loads no classes, and every checkpoint written before
this class existed holds the same dict, with the same keys.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


@dataclass
class TrainerState:
    epoch: int = 0  # epochs completed
    step: int = 0  # optimiser steps taken, skipped (non-finite) ones included
    in_epoch: bool = False  # whether epoch `epoch` has begun (the data position is mid-epoch)
    wall_time: float = 0.0  # seconds in the training loop, evaluations included, over all parts of a resumed run
    train_time: float = 0.0  # of those, seconds in training steps (throughput)
    train_units: int = 0  # what the task counts throughput in: tokens, or sentences
    train_tokens: int = 0
    best: Optional[Dict[str, Any]] = None  # the validation metrics of the best model
    best_step: Optional[int] = None
    history: List[Dict[str, Any]] = field(default_factory=list)  # one entry per validation
    evals_since_best: int = 0  # scheduled evaluations since the best (early stopping)
    last_eval_step: int = -1
    stop_reason: Optional[str] = None  # the budget that ended the run (not set by a signal)
    skipped_steps: int = 0  # non-finite steps, skipped
    # The run of non-finite steps up to the last read: trainer.max_nonfinite_steps counts
    # it across a resume.
    nonfinite_in_a_row: int = 0
    # The precision the run trains in (trainer.precision=auto is measured once: a resume
    # keeps what the run began with, whatever a new timing would say).
    precision: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, saved: Dict[str, Any]) -> "TrainerState":
        """The state a checkpoint holds. Keys the dict gained later (`train_tokens`,
        `skipped_steps`, `nonfinite_in_a_row`, `precision`) take their defaults where a checkpoint lacks
        them, and a key this version does not know is dropped (one a later change removed
        must not stop a resume)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in saved.items() if key in known})

    def budget_reached(self, trainer_cfg) -> Optional[str]:
        """The trainer.* budget this state has used up (max_steps, max_time, max_epochs,
        early_stopping_patience), or None."""
        t = trainer_cfg
        if t.max_steps is not None and self.step >= t.max_steps:
            return "max_steps"
        if t.max_time is not None and self.wall_time >= t.max_time:
            return "max_time"
        if t.max_epochs is not None and self.epoch >= t.max_epochs and not self.in_epoch:
            return "max_epochs"
        if t.early_stopping_patience is not None and self.evals_since_best >= t.early_stopping_patience:
            return "early_stopping"
        return None
