"""Where a run reports: TensorBoard (`tb/`) and `metrics.json` in the run dir."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from nlp_lstm.fileio import atomic_write_json

log = logging.getLogger("nlp_lstm")


def _flatten(prefix: str, metrics: Dict[str, Any]) -> Dict[str, float]:
    return {f"{prefix}/{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and k != "tokens"}


class Monitor:
    def __init__(self, run_dir: Path, tensorboard: bool, purge_step: Optional[int] = None,
                 writes: bool = True) -> None:
        """`writes=False` (data-parallel ranks other than 0): report nothing."""
        self.run_dir, self.writes = run_dir, writes
        tensorboard = tensorboard and writes
        self.metrics_path = run_dir / "metrics.json"
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: after a resume, events past the checkpoint's step written by the
            # interrupted run are dropped, so curves have no duplicated or backward steps.
            self.writer = SummaryWriter(log_dir=str(run_dir / "tb"), purge_step=purge_step)

    # --- scalars and friends -------------------------------------------------------
    def scalars(self, prefix: str, metrics: Dict[str, Any], step: int) -> None:
        if self.writer:
            for tag, value in _flatten(prefix, metrics).items():
                self.writer.add_scalar(tag, value, step)

    def text(self, tag: str, text: str, step: int) -> None:
        if self.writer:
            # TensorBoard renders markdown: indent by four spaces to keep line breaks.
            self.writer.add_text(tag, "\n".join("    " + line for line in text.split("\n")), step)

    def histograms(self, model: torch.nn.Module, step: int) -> None:
        if not self.writer:
            return
        for name, param in model.named_parameters():
            self.writer.add_histogram(f"weights/{name}", param.detach().float().cpu(), step)
            if param.grad is not None:
                self.writer.add_histogram(f"grads/{name}", param.grad.detach().float().cpu(), step)

    def embedding(self, matrix: torch.Tensor, labels, step: int, tag: str = "embedding") -> None:
        if self.writer:
            self.writer.add_embedding(matrix.detach().float().cpu(), metadata=list(labels), global_step=step, tag=tag)

    def hparams(self, hparams: Dict[str, Any], final_metrics: Dict[str, float]) -> None:
        """The hparams table, written into this run (not a sub-run), with its final metrics."""
        if not self.writer:
            return
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        clean = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in hparams.items()}
        experiment, start, end = hparams_summary(clean, final_metrics)
        for summary in (experiment, start, end):
            self.writer.file_writer.add_summary(summary)
        for tag, value in final_metrics.items():
            self.writer.add_scalar(tag, value)

    def flush(self) -> None:
        if self.writer:
            self.writer.flush()

    def close(self) -> None:
        if self.writer:
            self.writer.close()

    # --- metrics.json ----------------------------------------------------------------
    def write_metrics(self, metrics: Dict[str, Any]) -> None:
        if self.writes:
            atomic_write_json(self.metrics_path, metrics)
