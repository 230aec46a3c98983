"""The best model of a run: which validation result is better, the weights that scored it,
and the model package, which is written from them."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, Optional

import torch
from torch import Tensor

from nlp_lstm.errors import NlpLstmError
from nlp_lstm.training.task import TrainingTask


def is_better(value: float, best: Optional[float], mode: str) -> bool:
    """Whether a validation `value` improves on `best` ("min" or "max"); NaN/Inf never does."""
    if not math.isfinite(value):
        return False
    return best is None or (value < best if mode == "min" else value > best)


class BestModel:
    """The weights of the best validation result so far, kept whole in memory and in the
    checkpoint: the model package leaves out training-only parts, and a budget stop's final
    evaluation may overwrite the package (training/trainer.py: _final_evaluation)."""

    def __init__(self, task: TrainingTask, model_dir: Path, writes: bool) -> None:
        """`writes=False` (data-parallel ranks other than 0): no package."""
        self.task, self.model, self.model_dir, self.writes = task, task.model, model_dir, writes
        self.weights: Optional[Dict[str, Tensor]] = None
        # Whether the model package holds `weights`: after a resume it may hold the weights
        # of an earlier part's final evaluation instead (they are not in the checkpoint).
        self.in_package = False

    def offer(self, metrics: Dict[str, Any], best: Optional[Dict[str, Any]]) -> bool:
        """Whether the model as it is now, which scored `metrics`, improves on the best
        metrics so far; if it does, its weights become the best and the package."""
        key = self.task.monitor_key
        improved = is_better(metrics[key], (best or {}).get(key), self.task.monitor_mode)
        # A model with a NaN/Inf weight is never the best, whatever its metric says.
        improved = improved and all(bool(torch.isfinite(p).all()) for p in self.model.parameters())
        if improved:
            self.weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            if self.writes:
                self.task.export(self.model_dir)
            self.in_package = True
        return improved

    def restore(self, payload: Dict[str, Any], device: torch.device) -> None:
        """The best weights of a checkpoint's `payload`, read after its model weights."""
        self.weights = payload.get("best_model")
        if "best_model" not in payload and (self.model_dir / "weights.pt").exists():
            # A checkpoint from before best_model was kept: the package holds the best weights,
            # less the training-only parts, which only training reads (the current ones do).
            package = torch.load(self.model_dir / "weights.pt", map_location=device, weights_only=True)
            self.weights = {**self.model.state_dict(), **package}

    def load(self) -> None:
        """The best weights into the model, at the end of the run; the package is written
        from them again where it holds others."""
        if self.weights is None:
            raise NlpLstmError("no finite validation result: no model was saved (check the learning rate)")
        self.model.load_state_dict(self.weights)
        if self.writes and not self.in_package:  # resumed, and no better model since
            self.task.export(self.model_dir)
