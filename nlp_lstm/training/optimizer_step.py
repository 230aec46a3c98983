"""The optimiser update of a training step: at the batch's learning rate, through
GradScaler under fp16, and skipped on the device where the step was non-finite."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


def step_optimizer(
    optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, keep: Optional[Tensor], lr_scale: float
) -> None:
    """One update; `keep` is the step's non-finite verdict (None: unchecked), `lr_scale`
    the task's factor on the learning rate for this batch (variable-length BPTT)."""
    if lr_scale != 1.0:
        for group in optimizer.param_groups:
            group["lr"] *= lr_scale
    if scaler.is_enabled():
        scaler.step(optimizer)
        scaler.update()
    else:
        step_unless_skipped(optimizer, keep)
    if lr_scale != 1.0:
        for group in optimizer.param_groups:
            group["lr"] /= lr_scale


def step_unless_skipped(optimizer: torch.optim.Optimizer, keep: Optional[Tensor]) -> None:
    """optimizer.step(), skipped on the device where `keep` is false."""
    if keep is None:
        optimizer.step()
    elif getattr(optimizer, "_step_supports_amp_scaling", False):
        # The fused kernels read `found_inf` as GradScaler hands it to them: 1.0 = skip.
        optimizer.found_inf = (~keep).float()
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf
    elif bool(keep):  # an optimiser without a fused kernel (another device type): one read
        optimizer.step()
