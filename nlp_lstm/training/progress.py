"""What a run shows while it trains: a progress line every trainer.log_every_n_steps, made
from the totals of the steps since the last one, and a progress bar per epoch on a terminal."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Dict

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from nlp_lstm.training.state import TrainerState
from nlp_lstm.training.task import StepOutput

# The line every trainer.log_every_n_steps: in train.log always, on a console only where no
# progress bar shows the same numbers.
progress_log = logging.getLogger("nlp_lstm.progress")


class _NotOnTheBar(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.name != progress_log.name


@contextlib.contextmanager
def terminal_logging(bar_shown: bool):
    """With a progress bar on the terminal: log lines print above it (tqdm's redirect), and
    the console leaves out the progress lines, which the bar shows."""
    if not bar_shown:
        yield
        return

    loggers = [
        logger
        for logger in (logging.getLogger(), logging.getLogger("nlp_lstm"))
        if any(type(h) is logging.StreamHandler for h in logger.handlers)
    ]
    before = {h for logger in loggers for h in logger.handlers}
    with logging_redirect_tqdm(loggers=loggers):
        for logger in loggers:
            for handler in logger.handlers:
                if handler not in before:  # tqdm's stand-in for a console handler
                    handler.addFilter(_NotOnTheBar())
        yield


def epoch_bar(epoch: int, steps_per_epoch: int, steps_done: int, shown: bool) -> tqdm:
    """The bar of epoch `epoch` (0-based), from the steps already done (a resume). Only on
    a terminal, where each epoch's finished bar stays on screen; in a log file (no
    terminal) the progress lines say the same."""
    return tqdm(
        total=steps_per_epoch,
        desc=f"epoch {epoch + 1}",
        unit="step",
        initial=steps_done,
        disable=not shown,
        dynamic_ncols=True,
        leave=True,
        mininterval=0.5,
    )


@dataclass
class LogWindow:
    """The steps since the last progress line. Their sums stay tensors on the device where
    the steps make tensors, so adding a step reads nothing back; the line reads them once."""

    nll: Any = 0.0  # summed loss of the steps not skipped
    units: int = 0
    kept_units: Any = 0  # units of the steps not skipped (a tensor under trainer.nonfinite)
    extras: Dict[str, Any] = field(default_factory=dict)  # summed per-step regulariser values
    steps: int = 0
    start: float = field(default_factory=time.perf_counter)

    def add(self, out: StepOutput) -> None:
        self.nll = self.nll + out.nll_sum
        self.units += out.units
        self.kept_units = self.kept_units + (out.units if out.kept is None else out.kept * out.units)
        self.steps += 1
        for name, value in out.extras.items():
            self.extras[name] = self.extras.get(name, 0.0) + value

    def mean_loss(self) -> float:
        return float(self.nll) / max(1, int(self.kept_units))

    def mean_extras(self) -> Dict[str, float]:
        return {name: float(total) / max(1, self.steps) for name, total in self.extras.items()}

    def units_per_sec(self) -> float:
        return self.units / max(1e-9, time.perf_counter() - self.start)


def bar_postfix(metrics: Dict[str, float], unit: str, skipped_steps: int) -> Dict[str, Any]:
    shown: Dict[str, Any] = {
        k: f"{v:.4g}"
        for k, v in metrics.items()
        if k not in ("grad_norm", "skipped_steps") and not k.endswith("_per_sec")
    }
    shown[f"{unit}/s"] = f"{metrics[f'{unit}_per_sec']:,.0f}"
    if skipped_steps:
        shown["skipped"] = skipped_steps
    return shown


def progress_line(
    state: TrainerState, metrics: Dict[str, float], unit: str, steps_done: int, steps_per_epoch: int
) -> str:
    """`step 1,200 | epoch 3 40% | loss 4.812 ppl 123 | lr 20 | 41,230 tokens/s`"""
    epoch = f"epoch {state.epoch + 1}" + (f" {100 * steps_done // max(1, steps_per_epoch)}%" if steps_per_epoch else "")
    quality = " ".join(f"{k} {metrics[k]:.4g}" for k in ("loss", "ppl", "bpc", "acc") if k in metrics)
    rate = f"{metrics[f'{unit}_per_sec']:,.0f} {unit}/s"
    skipped = f" | skipped {state.skipped_steps}" if state.skipped_steps else ""
    return f"step {state.step:,} | {epoch} | {quality} | lr {metrics['lr']:.3g} | {rate}{skipped}"
