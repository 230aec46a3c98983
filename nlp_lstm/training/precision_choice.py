"""trainer.precision=auto: fp32 or bf16, whichever trains this model faster on this machine.

One training step (forward and backward, no update) on a batch of the run's shape is timed
in each candidate precision, once per machine and model shape (speed_choices keeps the
answer). The step leaves no trace: gradients are dropped, the random state is put back, and
the task's data position is not moved."""

from __future__ import annotations

import logging
from typing import Any, Dict

import torch

from nlp_lstm.device import autocast_context
from nlp_lstm.speed_choices import measured_precision
from nlp_lstm.training.distributed import SINGLE, DistInfo, broadcast_object
from nlp_lstm.training.state import TrainerState
from nlp_lstm.training.task import TrainingTask

log = logging.getLogger("nlp_lstm")


def training_precision(task: TrainingTask, device: torch.device, dist: DistInfo = SINGLE) -> str:
    """The measured precision; under torchrun rank 0 measures and every rank takes its answer."""
    choice = _measure(task, device) if dist.is_main else None
    return broadcast_object(choice, dist)


def _measure(task: TrainingTask, device: torch.device) -> str:
    model = task.model
    batch, shapes = task.probe_batch()
    was_training = model.training
    model.train()

    def step(precision: str) -> None:
        with autocast_context(device, precision):
            out = task.training_step(batch)
        out.loss.backward()
        for parameter in model.parameters():
            parameter.grad = None

    try:
        return measured_precision("trainer.precision=auto", model, shapes, device, step)
    finally:
        model.train(was_training)


def resumed_precision(state: TrainerState, run_config: Dict[str, Any], measured_now: str) -> str:
    """A run begun with trainer.precision=auto resumes in the precision it measured then."""
    configured = run_config.get("trainer", {}).get("precision")
    if configured == "auto" and state.precision and state.precision != measured_now:
        log.info(f"trainer.precision=auto: {state.precision}, as the run began (a timing now said {measured_now})")
        return state.precision
    return measured_now
