"""Iterate averaging: NT-ASGD (Merity et al. 2017) and averaging from an epoch on (SWA).

Both keep a running mean of the weights after every step once started, and the run
evaluates and exports that mean instead of the last weights. They differ in when they
start: NT-ASGD once the validation loss stops improving (`optim=ntasgd`, after
`optim.nonmono` evaluations), SWA at the start of epoch `optim.average_from_epoch`.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from typing import List, Optional

import torch
from torch import Tensor
from torch.optim.swa_utils import AveragedModel

log = logging.getLogger("nlp_lstm")


def start_when_stalled(
    optim,
    averaged: Optional[AveragedModel],
    model: torch.nn.Module,
    earlier_losses: List[float],
    loss: float,
    step: int,
) -> Optional[AveragedModel]:
    """NT-ASGD's trigger, after a scheduled evaluation: the average (a new one once the
    validation `loss` is worse than the best of the evaluations before the last
    `optim.nonmono`), else `averaged` as it was."""
    if (
        optim.name == "ntasgd"
        and averaged is None
        and len(earlier_losses) > optim.nonmono
        and loss > min(earlier_losses[: -optim.nonmono])
    ):
        log.info(f"NT-ASGD: validation stalled, averaging iterates from step {step}")
        return AveragedModel(model)
    return averaged


def start_at_epoch(
    optim, averaged: Optional[AveragedModel], model: torch.nn.Module, epochs_done: int
) -> Optional[AveragedModel]:
    """`optim.average_from_epoch`, at the end of an epoch: the average (a new one, holding
    the weights the next epoch starts from, once that epoch is the configured one), else
    `averaged` as it was."""
    start = optim.average_from_epoch
    if start is None or averaged is not None or epochs_done < start:
        return averaged
    log.info(f"averaging the weights of every step from epoch {epochs_done + 1} on")
    averaged = AveragedModel(model)
    update_average(averaged, model, keep=None)
    return averaged


def restored(model: torch.nn.Module, state: Optional[dict]) -> Optional[AveragedModel]:
    """The average a checkpoint holds (None: averaging had not started)."""
    if state is None:
        return None
    averaged = AveragedModel(model)
    averaged.load_state_dict(state)
    return averaged


def update_average(averaged: AveragedModel, model: torch.nn.Module, keep: Optional[Tensor]) -> None:
    """AveragedModel.update_parameters (the running mean of the iterates) without its host
    read of `n_averaged`, and only where `keep` is true: a skipped step adds no iterate."""
    n = averaged.n_averaged
    add = torch.ones_like(n) if keep is None else keep.to(n.dtype)
    n_new = n + add
    # 1 for the first iterate (an exact copy: lerp at weight 1 returns the end point),
    # 1/(n+1) after it, 0 where the step was skipped.
    weight = add.float() / n_new.clamp(min=1).float()
    averaged_params = [p.detach() for p in averaged.module.parameters()]
    model_params = [p.detach() for p in model.parameters()]
    # A weight per tensor (an expanded view): the single-tensor-weight overload reads it on the host.
    torch._foreach_lerp_(averaged_params, model_params, [weight.expand_as(p) for p in averaged_params])
    n.copy_(n_new)
    for averaged_buffer, buffer in zip(averaged.module.buffers(), model.buffers()):
        averaged_buffer.detach().copy_(buffer.detach())  # buffers follow the model (use_buffers=False)


@contextlib.contextmanager
def evaluation_weights(model: torch.nn.Module, averaged: Optional[AveragedModel]):
    """The averaged weights in `model` for the block (evaluation and export) once averaging
    has started; the training weights back after it."""
    if averaged is None:
        yield
        return
    current = copy.deepcopy(model.state_dict())
    model.load_state_dict(averaged.module.state_dict())
    try:
        yield
    finally:
        model.load_state_dict(current)
