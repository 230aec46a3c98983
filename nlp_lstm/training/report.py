"""What a run reports, made from its state (monitor.py writes it): the train summary of
metrics.json, TensorBoard's chart layout and HParams numbers, and the result `fit` returns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from nlp_lstm.training.state import TrainerState
from nlp_lstm.training.task import TrainingTask


def train_summary(state: TrainerState, unit: str, world_size: int) -> Dict[str, Any]:
    """metrics.json's "train": throughput, steps, time, why the run stopped."""
    seconds = max(1e-9, state.train_time)
    # Data-parallel: every rank trains on an equal share, so rank 0's count x world.
    rates = {
        f"{unit}_per_sec": world_size * state.train_units / seconds,
        "tokens_per_sec": world_size * state.train_tokens / seconds,
    }
    return {
        **rates,
        "steps": state.step,
        "epochs": state.epoch,
        "wall_time_s": round(state.wall_time, 2),
        "skipped_steps": state.skipped_steps,
        unit: state.train_units,
        "stop_reason": state.stop_reason,
    }


def chart_layout(headline_keys: Sequence[str], unit: str) -> Dict[str, List[str]]:
    """Custom Scalars: train against valid for each headline metric, then lr and throughput."""
    charts = {key: [f"train/{key}", f"valid/{key}"] for key in headline_keys}
    charts["learning rate"] = ["train/lr"]
    charts[f"{unit} per second"] = [f"train/{unit}_per_sec"]
    return charts


def best_model_numbers(
    best_valid: Dict[str, Any], test: Optional[Dict[str, Any]], headline_keys: Sequence[str]
) -> Dict[str, float]:
    """The best model's numbers, for the HParams tab: valid_best/<metric> on valid and
    valid_best/test_<metric> on test. The group sorts after train/ and valid/, so Time
    Series (which opens its first two groups) shows the curves first."""
    return {
        f"valid_best/{prefix}{k}": float(metrics[k])
        for prefix, metrics in (("", best_valid), ("test_", test))
        if metrics
        for k in headline_keys
        if isinstance(metrics.get(k), (int, float))
    }


def run_result(
    task: TrainingTask, best_valid: Dict[str, Any], test: Optional[Dict[str, Any]], train: Dict[str, Any]
) -> Dict[str, Any]:
    """What `fit` returns; "objective" is what a sweep optimises."""
    objective = task.objective_key or task.monitor_key
    return {
        "best_valid": best_valid,
        "test": test,
        "train": train,
        "objective": {"metric": objective, "value": best_valid[objective]},
    }


def completed_metrics(run_dir: Path) -> Optional[Dict[str, Any]]:
    """metrics.json of a run that completed with a best model, or None."""
    try:
        metrics = json.loads((Path(run_dir) / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return metrics if metrics.get("status") == "completed" and metrics.get("best_valid") else None
