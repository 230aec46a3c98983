"""`nlp_lstm.load(path)`: a trained model package, ready to use without its corpus."""

from __future__ import annotations

import os

import torch

from nlp_lstm.device import resolve_device
from nlp_lstm.errors import ModelPackageError
from nlp_lstm.package import read_package


def load(path: os.PathLike, device: str = "auto"):
    """Load a model package written by training (`<run dir>/model`)."""
    dev = resolve_device(device)
    meta, state_dict = read_package(path, map_location=dev)
    if meta.get("task") == "lm":
        from nlp_lstm.tasks.language_modeling import LanguageModel as loader
    elif meta.get("task") == "tagging":
        from nlp_lstm.tasks.tagging import Tagger as loader
    else:
        raise ModelPackageError(f"{path}: unknown task {meta.get('task')!r} in package.json")
    try:
        return loader.from_package(path, meta, state_dict, dev)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        # an edited or mixed-up package: configs missing or not matching the weights
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise ModelPackageError(f"{path}: package.json and weights.pt do not describe one model "
                                f"({type(exc).__name__}: {detail})") from None
