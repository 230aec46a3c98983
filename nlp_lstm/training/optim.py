"""Optimisers and learning-rate schedules from an OptimConfig."""

from __future__ import annotations

import math
from typing import Iterable, Optional

import torch
from torch.optim.lr_scheduler import LambdaLR, ReduceLROnPlateau

from nlp_lstm.errors import ConfigError


def build_optimizer(cfg, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    # The fused kernels update every tensor in one pass (CPU and CUDA): with a tagger's many
    # small parameters the per-tensor loop cost as much as the LSTM's backward. They also
    # take the trainer's device-side verdict on a non-finite step (`found_inf`), so skipping
    # a step needs no host sync (training/nonfinite.py).
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point for p in params) or None
    if cfg.name in ("sgd", "ntasgd"):
        # NT-ASGD (Merity et al. 2017) is SGD whose iterates are averaged once validation
        # stalls; the averaging lives in training/averaging.py (an AveragedModel).
        optimizer = torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, fused=fused
        )
        if cfg.momentum and fused:
            # Fused SGD makes its momentum buffers uninitialised on the first step and fills
            # them in the kernel, which a skipped (found_inf) first step never runs: garbage
            # momentum from then on (torch 2.13). Buffers of zeros from the start are the same
            # first step without dampening (buffer = 0 * momentum + gradient), skipped or not.
            for p in params:
                optimizer.state[p]["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return optimizer
    return torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, fused=fused)


def build_scheduler(cfg, optimizer: torch.optim.Optimizer, total_steps: Optional[int], monitor_mode: str = "min"):
    """(scheduler, when): `when` is "step" (called after each optimiser step), "epoch"
    (after each epoch), "eval" (called with the validation loss) or None."""
    if cfg.schedule == "none":
        return None, None
    if cfg.schedule == "plateau":
        return ReduceLROnPlateau(
            optimizer, mode=monitor_mode, factor=cfg.plateau_factor, patience=cfg.plateau_patience, min_lr=cfg.min_lr
        ), "eval"
    if cfg.schedule == "exponential":
        # Zaremba et al. (2014): constant lr, then multiplied by decay_factor after every
        # epoch from decay_start_epoch on (epochs counted from 1).
        def epoch_factor(epochs_done: int) -> float:
            return cfg.decay_factor ** max(0, epochs_done - cfg.decay_start_epoch + 1)

        return LambdaLR(optimizer, epoch_factor), "epoch"
    if not total_steps:
        raise ConfigError(
            "config optim.schedule=cosine: needs trainer.max_steps or trainer.max_epochs to know its length"
        )
    floor = cfg.min_lr / cfg.lr

    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor), "step"


def schedule_back(scheduler: LambdaLR, skipped: int) -> None:
    """A per-step schedule (warmup, cosine) counts optimiser updates, and the steps just
    read as skipped made none: its clock goes back by them. It advanced on them because
    the verdict stays on the device (no host read per step), so the steps between a
    skipped one and this read ran that many steps ahead on the schedule. LambdaLR's lr
    is a function of its count alone: one step() from the corrected count sets it."""
    scheduler.last_epoch -= skipped + 1
    scheduler.step()
