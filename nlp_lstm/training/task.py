"""The contract between the generic trainer and a task (language modeling, tagging)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from torch import Tensor, nn


@dataclass
class StepOutput:
    loss: Tensor  # mean loss to back-propagate
    nll_sum: Tensor  # detached summed loss over the step's units, for the running average
    units: int  # tokens (or sentences) this step trained on
    tokens: int = 0  # tokens, where `units` are sentences
    # Further detached per-step terms of the loss (regularisers), logged as train/<name>.
    extras: Dict[str, Tensor] = field(default_factory=dict)
    # Set by the trainer's non-finite check: whether the step updated the model (a 0-d bool
    # tensor on the device); None when unchecked.
    kept: Optional[Tensor] = None


class TrainingTask(ABC):
    model: nn.Module
    unit = "tokens"  # what throughput is counted in: train.<unit>_per_sec
    monitor_key = "loss"  # validation metric that picks the best model
    monitor_mode = "min"
    # What a sweep optimises: the best model's value of this validation metric (same
    # direction as monitor_key; defaults to it). Language models report perplexity.
    objective_key: Optional[str] = None
    # The metrics a person looks for first: charted train against valid in the Custom
    # Scalars tab and recorded as the HParams tab's final numbers (those present).
    headline_keys: Tuple[str, ...] = ("loss",)

    @abstractmethod
    def steps_per_epoch(self) -> int:
        """An estimate (exact without variable-length windows), for progress and schedules."""

    @abstractmethod
    def start_epoch(self, epoch: int) -> None:
        """Reset the data position (and any carried state) for a new epoch."""

    def steps_done_in_epoch(self) -> int:
        """Steps already taken in the current epoch (non-zero after a resume)."""
        return 0

    @abstractmethod
    def next_batch(self) -> Optional[Any]:
        """The next training batch, or None at the end of the epoch."""

    @abstractmethod
    def training_step(self, batch: Any) -> StepOutput: ...

    @abstractmethod
    def probe_batch(self) -> Tuple[Any, str]:
        """A training batch of the usual shape for timing a step (trainer.precision=auto), and
        a description of its shape. Takes no data position; the carried state it may reset is
        set again by start_epoch or a resume."""

    def keep_step_state(self, keep: Tensor) -> None:
        """Where `keep` (a 0-d bool tensor on the device: no sync) is false, the last training
        step is skipped (non-finite loss or gradient): drop any state it produced."""

    def lr_scale(self, batch: Any) -> float:
        """Factor on the learning rate for this batch (variable-length BPTT)."""
        return 1.0

    @abstractmethod
    def evaluate(self, split: str) -> Dict[str, float]: ...

    @abstractmethod
    def has_split(self, split: str) -> bool: ...

    @abstractmethod
    def state_dict(self) -> Dict[str, Any]:
        """Data position and carried state, for exact resume."""

    @abstractmethod
    def load_state_dict(self, state: Dict[str, Any]) -> None: ...

    @abstractmethod
    def export(self, directory: Path) -> None:
        """Write a self-contained model package with the model's current weights."""

    def running_metrics(self, mean_loss: float) -> Dict[str, float]:
        return {"loss": mean_loss}

    def charted(self, metrics: Dict[str, Any]) -> Dict[str, Any]:
        """The validation metrics drawn as TensorBoard curves (all of metrics.json's by default)."""
        return metrics

    def on_evaluation(self, monitor, step: int) -> None:
        """Extra reporting after a validation pass (text samples...)."""

    def on_finish(self, monitor, step: int) -> None:
        """Extra reporting with the best model (embedding projector...)."""

    def hparams(self) -> Dict[str, Any]:
        return {}

    def data_summary(self) -> Dict[str, Any]:
        """Facts about the inputs worth keeping with the run (word-vector coverage...):
        written to metrics.json under "data" and to TensorBoard as data/* scalars."""
        return {}

    def describe(self, metrics: Dict[str, float]) -> str:
        return " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float))
