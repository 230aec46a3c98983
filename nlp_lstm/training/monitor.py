"""Where a run reports: TensorBoard and `metrics.json`, both in the run dir.

The event files sit in the run dir itself, so `tensorboard --logdir outputs/` names each run
after its dir (`2026-12-03/14-05-11`); runs written before that kept them in `tb/`, which
a resumed one goes on using."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from nlp_lstm.fileio import atomic_write_json, atomic_write_text

log = logging.getLogger("nlp_lstm")


def tensorboard_dir(run_dir: Path) -> Path:
    """The run dir, or `tb/` for a run that began writing there (before event files moved up)."""
    legacy = Path(run_dir) / "tb"
    return legacy if legacy.is_dir() and any(legacy.glob("events.out.tfevents.*")) else Path(run_dir)


def _flatten(prefix: str, metrics: Dict[str, Any]) -> Dict[str, float]:
    return {f"{prefix}/{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and k != "tokens"}


class Monitor:
    def __init__(self, run_dir: Path, tensorboard: bool, purge_step: Optional[int] = None, writes: bool = True) -> None:
        """`writes=False` (data-parallel ranks other than 0): report nothing."""
        self.run_dir, self.writes = run_dir, writes
        tensorboard = tensorboard and writes
        self.metrics_path = run_dir / "metrics.json"
        self.writer = None
        self.log_dir = tensorboard_dir(run_dir)
        if tensorboard:  # tensorboard's modules are imported by the runs that write to it
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: after a resume, events past the checkpoint's step written by the
            # interrupted run are dropped, so curves have no duplicated or backward steps.
            self.writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=purge_step)

    # --- scalars and friends -------------------------------------------------------
    def scalars(self, prefix: str, metrics: Dict[str, Any], step: int) -> None:
        if self.writer:
            for tag, value in _flatten(prefix, metrics).items():
                self.writer.add_scalar(tag, value, step)

    def text(self, tag: str, text: str, step: int) -> None:
        if self.writer:
            # TensorBoard renders markdown: indent by four spaces to keep line breaks.
            self.writer.add_text(tag, "\n".join("    " + line for line in text.split("\n")), step)

    def table(self, tag: str, header: List[str], rows: List[List[Any]], step: int) -> None:
        """A fixed-width table in the TEXT tab: a preformatted block, so wide tables scroll
        instead of wrapping their numbers (a markdown table squeezes its columns)."""
        if not self.writer:
            return
        cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
        lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in cells]
        lines.insert(1, "  ".join("-" * w for w in widths))
        self.text(tag, "\n".join(lines), step)

    def histograms(self, model: torch.nn.Module, step: int) -> None:
        if not self.writer:
            return
        for name, param in model.named_parameters():
            self.writer.add_histogram(f"weights/{name}", param.detach().float().cpu(), step)
            if param.grad is not None:
                self.writer.add_histogram(f"weights_grad/{name}", param.grad.detach().float().cpu(), step)

    def layout(self, charts: Dict[str, List[str]]) -> None:
        """The Custom Scalars tab: one chart per title, each overlaying its tags (train and
        valid loss on one chart). Tags are matched as regular expressions, so each is anchored."""
        if self.writer:
            self.writer.add_custom_scalars(
                {
                    "training": {
                        title: ["Multiline", [f"^{re.escape(tag)}$" for tag in tags]] for title, tags in charts.items()
                    }
                }
            )

    def figure(self, tag: str, figure, step: int) -> None:
        """A matplotlib figure in the Images tab (closed once written)."""
        if self.writer:
            self.writer.add_figure(tag, figure, step, close=True)
        else:
            import matplotlib.pyplot as plt

            plt.close(figure)

    def embedding(self, matrix: torch.Tensor, labels, step: int, tag: str = "embedding") -> None:
        """The Projector tab's data: `embedding/` in the log dir, written whole each time
        (SummaryWriter.add_embedding would add a numbered folder per call to the run dir)."""
        if not self.writer:
            return
        from tensorboard.plugins import projector

        folder = self.log_dir / tag
        folder.mkdir(parents=True, exist_ok=True)
        rows = matrix.detach().float().cpu().tolist()
        atomic_write_text(folder / "tensors.tsv", "".join("\t".join(f"{x:.6g}" for x in row) + "\n" for row in rows))
        # the metadata column: one line per row, tabs and newlines in a token would break it
        atomic_write_text(
            folder / "metadata.tsv",
            "".join(str(label).replace("\t", " ").replace("\n", " ") + "\n" for label in labels),
        )
        config = projector.ProjectorConfig()
        entry = config.embeddings.add()
        entry.tensor_name, entry.tensor_path, entry.metadata_path = (
            f"{tag} (step {step})",
            f"{tag}/tensors.tsv",
            f"{tag}/metadata.tsv",
        )
        projector.visualize_embeddings(str(self.log_dir), config)

    def hparams(self, hparams: Dict[str, Any], final_metrics: Dict[str, float]) -> None:
        """The hparams table, written into this run (not a sub-run), with its final metrics.
        The HParams tab reads a metric's value from a scalar of the same tag, so each is also
        written once: keep `final_metrics` to the few headline numbers."""
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
