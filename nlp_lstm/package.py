"""Self-contained model packages: config + tokenizer files + weights, nothing pickled.

    model/
      package.json      format version, task, the configs needed to rebuild the model
      tokenizer/        LM: tokenizer.json + vocab.json or spm.model
      vocabs.json       tagger: word, character, tag and feature vocabularies
      weights.pt        a state_dict, read with torch.load(weights_only=True)

A package is written to a temporary directory and renamed into place when complete.
"""

from __future__ import annotations

import json
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Callable, Dict

import torch

from nlp_lstm.errors import ModelPackageError
from nlp_lstm.fileio import atomic_directory, recover_directory

PACKAGE_FORMAT = 1
REQUIRED_FILES = ("package.json", "weights.pt")


def _plain(obj: Any) -> Any:
    return asdict(obj) if is_dataclass(obj) else obj


def save_package(
    directory: Path,
    task: str,
    configs: Dict[str, Any],
    write_assets: Callable[[Path], None],
    state_dict: Dict[str, torch.Tensor],
    info: Dict[str, Any] | None = None,
) -> None:
    """`write_assets(dir)` writes the task's tokenizer/vocabulary files into the package."""
    with atomic_directory(directory) as tmp:
        write_assets(tmp)
        torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, tmp / "weights.pt")
        meta = {
            "format_version": PACKAGE_FORMAT,
            "task": task,
            "configs": {k: _plain(v) for k, v in configs.items()},
            "info": info or {},
        }
        (tmp / "package.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def read_package(directory: Path, map_location: str | torch.device = "cpu"):
    """(metadata, state_dict) of a package, with one-line errors for bad ones; the task's
    loader reads its own assets from the directory."""
    directory = Path(directory)
    recover_directory(directory)  # a crash between atomic_directory's two renames
    if not directory.is_dir():
        raise ModelPackageError(f"{directory}: no such model directory")
    missing = [f for f in REQUIRED_FILES if not (directory / f).exists()]
    if missing:
        raise ModelPackageError(f"{directory}: not a model package (missing {', '.join(missing)})")
    try:
        meta = json.loads((directory / "package.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelPackageError(f"{directory / 'package.json'}: unreadable ({exc})") from None
    version = meta.get("format_version")
    if version != PACKAGE_FORMAT:
        raise ModelPackageError(
            f"{directory}: package format version {version!r}; this nlp_lstm reads version "
            f"{PACKAGE_FORMAT} (re-export the model with a matching version)"
        )
    try:
        state_dict = torch.load(directory / "weights.pt", map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated, corrupt, or containing pickled code
        raise ModelPackageError(f"{directory / 'weights.pt'}: unreadable weights ({type(exc).__name__})") from None
    return meta, state_dict


def rebuild(directory: Path, device: torch.device, loaders: Dict[str, Any]):
    """A package rebuilt by the loader of its task (`loaders`: task -> a class with
    `from_package(path, meta, state_dict, device)`); an edited or mixed-up package gets a
    one-line error instead of a traceback."""
    meta, state_dict = read_package(directory, map_location=device)
    task = meta.get("task")
    if task not in loaders:
        known = "" if task in ("lm", "tagging") else "unknown task "
        raise ModelPackageError(
            f"{directory}: {known}{task!r} package, where {' or '.join(map(repr, loaders))} is wanted (package.json)"
        )
    try:
        return loaders[task].from_package(directory, meta, state_dict, device)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        # an edited or mixed-up package: configs missing or not matching the weights
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise ModelPackageError(
            f"{directory}: package.json and weights.pt do not describe one model ({type(exc).__name__}: {detail})"
        ) from None
