"""Figures for TensorBoard's Images tab, drawn with matplotlib (Agg, no display): labelled on
both axes, so a person reads them without knowing the tag order."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display needed; idempotent
    import matplotlib.pyplot as plt

    return plt


def _side(n: int) -> float:
    """Inches for n labelled rows: readable for 5 labels and for 45."""
    return min(16.0, max(4.5, 0.32 * n + 2.0))


def confusion_figure(labels: Sequence[str], matrix: Sequence[Sequence[int]]):
    """Gold (rows) against predicted (columns), coloured by the share of each gold row, the
    counts written in the cells."""
    plt = _pyplot()
    counts = np.asarray(matrix, dtype=float)
    shares = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    n = len(labels)
    fig, ax = plt.subplots(figsize=(_side(n) + 1.2, _side(n)), dpi=100)
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=90, fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title("confusion matrix (colour: share of the gold row)")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    ax.text(
                        j,
                        i,
                        f"{int(counts[i, j])}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if shares[i, j] > 0.5 else "black",
                    )
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of gold row")
    fig.tight_layout()
    return fig


def transitions_figure(tags: Sequence[str], transitions):
    """The CRF's transition scores, from (rows) -> to (columns), on a diverging scale around
    0; forbidden transitions (the scheme's constraints) show as the minimum."""
    plt = _pyplot()
    scores = np.asarray(transitions, dtype=float)
    finite = scores[np.isfinite(scores)]
    bound = float(np.abs(finite).max()) if finite.size else 1.0
    n = len(tags)
    fig, ax = plt.subplots(figsize=(_side(n) + 1.2, _side(n)), dpi=100)
    image = ax.imshow(
        np.clip(np.nan_to_num(scores, neginf=-bound, posinf=bound), -bound, bound),
        cmap="RdBu_r",
        vmin=-bound,
        vmax=bound,
    )
    ax.set_xticks(range(n), tags, rotation=90, fontsize=8)
    ax.set_yticks(range(n), tags, fontsize=8)
    ax.set_xlabel("to tag")
    ax.set_ylabel("from tag")
    ax.set_title("CRF transition scores")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="score")
    fig.tight_layout()
    return fig


def bar_figure(labels: Sequence[str], values: Sequence[float], title: str, xlabel: str):
    """Horizontal bars, one per label, with the value written at the end of each."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.32 * len(labels) + 1.2)), dpi=100)
    positions = range(len(labels))
    ax.barh(positions, values, color="#4c72b0")
    ax.set_yticks(positions, labels, fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    for y, value in zip(positions, values):
        ax.text(min(value + 1, 92), y, f"{value:.1f}", va="center", fontsize=8)
    fig.tight_layout()
    return fig
