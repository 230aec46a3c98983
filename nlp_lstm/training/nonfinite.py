"""Skipping optimiser steps whose loss or gradient is NaN/Inf, without a host sync per step.

The verdict of a step is a boolean tensor that stays on the device, as GradScaler keeps its
`found_inf`: the fused optimisers (AdamW, SGD) take it as `found_inf` and leave weights,
moments and step counts untouched (optimizer_step.py), the iterate average (averaging.py)
and the carried LM state are masked with it, and the counters behind `trainer.nonfinite`
and `trainer.max_nonfinite_steps` are read once per log line (`NonfiniteSteps.read`). On a
GPU a read per step would stall the queue of kernels every step; on a CPU it is free, but
one code path serves both.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import List

import torch
from torch import Tensor

from nlp_lstm.errors import NlpLstmError
from nlp_lstm.training.task import StepOutput

log = logging.getLogger("nlp_lstm")


@dataclass
class NonfiniteReport:
    skipped: int  # non-finite steps since the last read
    run: int  # non-finite steps in a row up to now (0 if the last step was finite)
    longest_run: int  # the longest run of them in a row (runs continue across reads)
    first_step: int  # the first of them (1-based step number), or -1
    first_was_loss: bool  # whether that step's loss was non-finite (else only a gradient)


class NonfiniteSteps:
    """Device-side counters of non-finite steps."""

    def __init__(self, device: torch.device, run: int = 0) -> None:
        counter = lambda value=0: torch.full((), value, dtype=torch.long, device=device)  # noqa: E731
        self.skipped, self.run, self.longest = counter(), counter(run), counter(run)
        self.first_step, self.first_was_loss = counter(-1), counter()

    def check(self, loss: Tensor, grad_norm: Tensor, step: int) -> Tensor:
        """Whether step `step` may update the model: a 0-d bool tensor (no sync)."""
        loss_ok = torch.isfinite(loss.detach())
        keep = loss_ok & torch.isfinite(grad_norm.detach())
        bad = (~keep).long()
        self.skipped += bad
        self.run = (self.run + 1) * bad
        self.longest = torch.maximum(self.longest, self.run)
        first_here = bad.bool() & (self.first_step < 0)
        self.first_step = torch.where(first_here, step, self.first_step)
        self.first_was_loss = torch.where(first_here, (~loss_ok).long(), self.first_was_loss)
        return keep

    def read(self) -> NonfiniteReport:
        """The counters since the last read, in one device-to-host copy; then restarts them."""
        skipped, run, longest, first, was_loss = torch.stack(
            [self.skipped, self.run, self.longest, self.first_step, self.first_was_loss]
        ).tolist()
        self.skipped.zero_()
        self.longest.fill_(run)  # a run that goes on counts from where it is
        self.first_step.fill_(-1)
        return NonfiniteReport(skipped, run, longest, first, bool(was_loss))


def without_skipped(out: StepOutput, keep: Tensor) -> StepOutput:
    """The step's output as the running averages count it: a skipped step adds no loss and
    no regulariser values, and `kept` says which steps counted."""
    zero = torch.zeros((), device=out.nll_sum.device)
    return dataclasses.replace(
        out,
        nll_sum=torch.where(keep, out.nll_sum, zero),
        kept=keep,
        extras={k: torch.where(keep, v, zero) for k, v in out.extras.items()},
    )


def stop_or_warn(report: NonfiniteReport, trainer_cfg, skipped_so_far: int) -> None:
    """trainer.nonfinite=stop and trainer.max_nonfinite_steps, for a report of skipped
    steps: the run stops with a message naming the fix, or goes on with a warning."""
    t = trainer_cfg
    what = f"non-finite {'loss' if report.first_was_loss else 'gradient'} at step {report.first_step}"
    if t.nonfinite == "stop":
        raise NlpLstmError(
            f"{what} (trainer.nonfinite=stop): lower optim.lr, set optim.clip_grad_norm, or check the data"
        )
    if report.longest_run >= t.max_nonfinite_steps:
        raise NlpLstmError(
            f"{what}: {report.longest_run} non-finite steps in a row "
            f"(trainer.max_nonfinite_steps={t.max_nonfinite_steps}); the model has diverged: "
            "lower optim.lr or set optim.clip_grad_norm"
        )
    log.warning(f"{what}: {report.skipped} step(s) skipped since the last report ({skipped_so_far} so far)")


def grad_norm_of(params: List[torch.nn.Parameter], fallback: Tensor) -> Tensor:
    """The global gradient norm (the finiteness of every gradient in one value)."""
    grads = [p.grad for p in params if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) if grads else fallback
