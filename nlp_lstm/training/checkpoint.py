"""Training checkpoints: everything needed to continue a run exactly.

Written atomically (temporary file, fsync, rename), so a crash mid-write leaves the
previous checkpoint intact; a sha256 of the body in the header catches a truncated or
corrupted file before anything is loaded; read with `weights_only=True`, so loading runs
no pickled code.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from nlp_lstm.errors import NlpLstmError
from nlp_lstm.fileio import atomic_open, atomic_write_json

CHECKPOINT_FORMAT = 2  # 2: checksummed header


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


MAGIC = b"NLP_LSTM_CHECKPOINT\n"


def save_checkpoint(path: Path, payload: Dict[str, Any]) -> None:
    """MAGIC, a line with the sha256 of the body, then the body (torch.save's zip)."""
    payload = {"format": CHECKPOINT_FORMAT, "rng": rng_state(), **payload}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    body = buffer.getbuffer()
    with atomic_open(path, "wb") as handle:
        handle.write(MAGIC + f"sha256 {hashlib.sha256(body).hexdigest()} {len(body)}\n".encode())
        handle.write(body)


def load_checkpoint(path: Path) -> Dict[str, Any]:
    """The checkpoint's payload; a truncated, corrupt or foreign file is named, never loaded."""
    try:
        with open(path, "rb") as handle:
            magic, header, body = handle.readline(), handle.readline(), handle.read()
    except FileNotFoundError:
        raise NlpLstmError(
            f"{path}: no checkpoint to resume from (trainer.resume=true needs the "
            f"run dir of an earlier run: hydra.run.dir=<that dir>)"
        ) from None
    except OSError as exc:
        raise NlpLstmError(f"{path}: cannot read checkpoint ({exc.strerror or exc})") from None
    fields = header.split()
    if magic != MAGIC or len(fields) != 3 or fields[0] != b"sha256":
        raise NlpLstmError(f"{path}: not an nlp_lstm checkpoint (or one from before checksums): cannot resume from it")
    if len(body) != int(fields[2]):
        raise NlpLstmError(f"{path}: truncated checkpoint ({len(body):,} of {int(fields[2]):,} bytes): not loaded")
    if hashlib.sha256(body).hexdigest().encode() != fields[1]:
        raise NlpLstmError(f"{path}: corrupt checkpoint (sha256 mismatch): not loaded")
    try:
        payload = torch.load(io.BytesIO(body), map_location="cpu", weights_only=True)
    except Exception as exc:  # e.g. pickled code, which weights_only refuses to run
        raise NlpLstmError(
            f"{path}: unreadable checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
        ) from None
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise NlpLstmError(
            f"{path}: checkpoint format {payload.get('format')!r}, this version reads {CHECKPOINT_FORMAT}"
        )
    return payload


# A run marks its run dir as soon as it starts, before any data is read: `trainer.resume=true`
# then tells a run killed before its first checkpoint (start it again from the beginning)
# from a dir that never held a run (refused: most likely a wrong hydra.run.dir). The marker
# also keeps the command line's overrides, so `trainer.resume=true hydra.run.dir=RUN` alone
# resumes the run as it was started.
RUN_MARKER = Path("checkpoints") / "run.json"

# What a resumed run may not change (trainer.* budgets and logger.* it may).
SAME_RUN_GROUPS = ("task", "data", "tokenizer", "model", "optim")


def mark_run_started(run_dir: Path, run_config: Dict[str, Any], overrides: Optional[List[str]] = None) -> None:
    atomic_write_json(Path(run_dir) / RUN_MARKER, {"config": run_config, "overrides": list(overrides or [])})


def run_started(run_dir: Path) -> bool:
    return (Path(run_dir) / RUN_MARKER).is_file()


def _read_marker(run_dir: Path) -> Dict[str, Any]:
    path = Path(run_dir) / RUN_MARKER
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
        marker["config"]  # noqa: B018 (every marker has it)
        return marker
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise NlpLstmError(
            f"{path}: unreadable run marker ({type(exc).__name__}): delete the run dir to start afresh"
        ) from None


def read_run_marker(run_dir: Path) -> Dict[str, Any]:
    """The config the run was started with."""
    return _read_marker(run_dir)["config"]


def read_run_overrides(run_dir: Path) -> Optional[List[str]]:
    """The command line's overrides the run was started with (None: a run from before they
    were kept)."""
    overrides = _read_marker(run_dir).get("overrides")
    return None if overrides is None else [str(o) for o in overrides]


def check_same_run(saved: Dict[str, Any], new: Dict[str, Any]) -> None:
    """A resumed run must train what it started with; only budgets and logging may change."""
    for group in SAME_RUN_GROUPS:
        old, now = saved.get(group, {}), new.get(group, {})
        for key in sorted(set(old) | set(now)):
            if old.get(key) != now.get(key):
                raise NlpLstmError(
                    f"config {group}.{key}={now.get(key)!r} differs from the run's {old.get(key)!r}: a resumed run "
                    f"trains what it started with (only trainer.* and logger.* may change); train something else "
                    f"in a new hydra.run.dir"
                )
