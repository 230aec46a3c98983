"""Training checkpoints: everything needed to continue a run exactly.

Written atomically (temporary file, fsync, rename), so a crash mid-write leaves the
previous checkpoint intact; read with `weights_only=True`, so loading runs no pickled code.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Dict

import torch

from nlp_lstm.errors import NlpLstmError
from nlp_lstm.fileio import atomic_save_with

CHECKPOINT_FORMAT = 1


def rng_state() -> Dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, payload: Dict[str, Any]) -> None:
    payload = {"format": CHECKPOINT_FORMAT, "rng": rng_state(), **payload}
    atomic_save_with(path, lambda handle: torch.save(payload, handle))


def load_checkpoint(path: Path) -> Dict[str, Any]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise NlpLstmError(f"{path}: no checkpoint to resume from (trainer.resume=true needs the "
                           f"run dir of an earlier run: hydra.run.dir=<that dir>)") from None
    except Exception as exc:  # a truncated or corrupt file: name it, never half-load it
        raise NlpLstmError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise NlpLstmError(f"{path}: checkpoint format {payload.get('format')!r}, this version reads {CHECKPOINT_FORMAT}")
    return payload
