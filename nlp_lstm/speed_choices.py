"""Speed switches chosen by timing, not by CPU flags.

Which precision is faster, or how to cut the softmax's logits into matrix products, depends
on the machine (AMX, AVX512-BF16 only, AVX2 only, a GPU) and on the model's shapes: bf16 pays twice
over on a CPU with AMX, loses on one with AVX512-BF16 for a tagger's small products, and is
emulated (several times slower) on one with neither. So the first time a choice is needed,
`choose` times each candidate on the real shapes (a fraction of a second to a few seconds,
once), logs what it found, and keeps the answer in a JSON file under the user's cache dir,
keyed by this machine (CPU model or GPU name, threads, torch version) and the shapes:

    ~/.cache/nlp_lstm/speed_choices.json    ($NLP_LSTM_CACHE_DIR, else $XDG_CACHE_HOME/nlp_lstm)

Overrides: an explicit setting (trainer.precision=fp32, --precision bf16) is never measured;
NLP_LSTM_SPEED_CHOICES=off takes each switch's default without timing anything (for
precision: bf16 where the CPU has bf16 instructions, else fp32; for the softmax: 128-row
products, the old fixed chunk);
deleting the file measures again.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import platform
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Set

import torch
from torch import nn

from nlp_lstm.device import autocast_context, precision_candidates, resolve_precision, synchronize
from nlp_lstm.fileio import atomic_write_json

log = logging.getLogger("nlp_lstm")

CACHE_DIR_ENV = "NLP_LSTM_CACHE_DIR"
MODE_ENV = "NLP_LSTM_SPEED_CHOICES"  # "measure" (the default) or "off"
CACHE_FILE = "speed_choices.json"

_memo: Dict[str, str] = {}  # this process's answers: the file is read once per choice
_said_untimed: Set[str] = set()  # choices whose untimed default (measuring off) was logged


class _Timing(threading.local):
    depth = 0  # > 0 while candidates are being timed


_timing = _Timing()


def cache_path() -> Path:
    base = os.environ.get(CACHE_DIR_ENV)
    if base:
        return Path(base) / CACHE_FILE
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "nlp_lstm" / CACHE_FILE


def measuring() -> bool:
    return os.environ.get(MODE_ENV, "measure").strip().lower() not in ("off", "0", "false", "no")


@functools.lru_cache(maxsize=None)
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_key(device: torch.device) -> str:
    """What a timing depends on besides the shapes: the processor, the threads, torch."""
    if device.type == "cuda":
        where = f"cuda {torch.cuda.get_device_name(device)}"
    else:
        where = f"{device.type} {_cpu_model()} x{torch.get_num_threads()}"
    return f"{where} | torch {torch.__version__}"


def time_candidates(
    candidates: Mapping[str, Callable[[], object]], device: torch.device, rounds: int = 3
) -> Dict[str, float]:
    """Seconds per call of each candidate: the fastest of `rounds` timed calls after one
    untimed one, the candidates taking turns (so a burst of load elsewhere falls on all of
    them); one more than twice as slow as the best after its first timed call is not called
    again. A candidate that raises (an op its dtype lacks here) is left out."""
    best: Dict[str, float] = {}
    failed = set()
    for round_ in range(rounds + 1):
        for name, run in candidates.items():
            if name in failed or (round_ > 1 and best[name] > 2 * min(best.values())):
                continue  # failed here, or already twice as slow as the best: not timed again
            synchronize(device)
            start = time.perf_counter()
            try:
                run()
            except (RuntimeError, NotImplementedError) as exc:
                failed.add(name)
                log.debug(f"speed choice: candidate {name} failed here: {exc}")
                continue
            synchronize(device)
            if round_ > 0:
                elapsed = time.perf_counter() - start
                best[name] = min(best.get(name, elapsed), elapsed)
    return best


def _read_cache(path: Path) -> Dict[str, Dict[str, dict]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: measure again (the file is only a memo)
    return data if isinstance(data, dict) else {}


def _write_cache(machine: str, key: str, record: dict) -> Optional[Path]:
    path = cache_path()
    try:
        data = _read_cache(path)  # read again just before writing: another process may have added choices
        data.setdefault(machine, {})[key] = record
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, data)
        return path
    except OSError as exc:  # a read-only home: the choice still holds for this process
        log.debug(f"speed choice: could not write {path}: {exc}")
        return None


def choose(
    what: str,
    shapes: str,
    device: torch.device,
    candidates: Mapping[str, Callable[[], object]],
    default: str,
    rounds: int = 3,
    screen: Optional[Callable[[], Dict[str, str]]] = None,
) -> str:
    """The fastest candidate's name for `what` (e.g. "training precision") at `shapes` (a
    string naming the shapes the timing depends on) on this machine: from this process's
    memo, the cache file, or a timing now. `default` when measuring is off or every
    candidate failed. `screen`, called before a timing: {candidate: why} for candidates a
    cheaper timing has already ruled out (so that a step several times slower is never run)."""
    if _timing.depth:
        # A choice met while another's candidates are timed (a softmax inside a timed training
        # step) takes its default: both candidates of the outer choice then run alike, and the
        # inner one is timed on its own when the real work first needs it.
        return default
    machine = machine_key(device)
    key = f"{what} | {shapes}"
    memo_key = f"{machine} || {key}"
    # A choice is said once per process: the softmax's is asked for at every training step.
    if not measuring():
        if memo_key not in _said_untimed:
            _said_untimed.add(memo_key)
            log.info(f"{what}: {default} ({MODE_ENV}=off: not timed)")
        return default
    if memo_key in _memo:
        return _memo[memo_key]
    record = _read_cache(cache_path()).get(machine, {}).get(key)
    # A choice made among other candidates (an older version's) is made again.
    if (
        isinstance(record, dict)
        and record.get("choice") in candidates
        and record.get("candidates") == sorted(candidates)
    ):
        _memo[memo_key] = record["choice"]
        log.info(f"{what}: {record['choice']} (measured on this machine earlier; {cache_path()})")
        return record["choice"]
    started = time.perf_counter()
    _timing.depth += 1
    try:
        ruled_out = screen() if screen is not None else {}
        left = {name: run for name, run in candidates.items() if name not in ruled_out}
        seconds = time_candidates(left, device, rounds) if len(left) > 1 else {}
    finally:
        _timing.depth -= 1
    choice = min(seconds, key=seconds.get) if seconds else next(iter(left), default)
    timings = ", ".join(
        [f"{name} {1000 * s:.1f} ms" for name, s in sorted(seconds.items(), key=lambda kv: kv[1])]
        + [f"{name} left out: {why}" for name, why in ruled_out.items()]
    )
    where = _write_cache(
        machine,
        key,
        {
            "choice": choice,
            "candidates": sorted(candidates),
            "ms": {name: round(1000 * s, 3) for name, s in seconds.items()},
            "left_out": ruled_out,
            "measured": time.time(),
        },
    )
    _memo[memo_key] = choice
    log.info(
        f"{what}: {choice} (timed on {shapes}: {timings or 'every candidate failed'}; "
        f"{time.perf_counter() - started:.1f} s, kept in {where or 'this process only'})"
    )
    return choice


def model_signature(model: nn.Module) -> str:
    """The model's shapes, short: a timing holds for any weights of the same shapes."""
    shapes = repr([(name, tuple(p.shape), str(p.dtype)) for name, p in model.named_parameters()])
    count = sum(p.numel() for p in model.parameters())
    return f"{type(model).__name__} {count:,} params #{hashlib.sha1(shapes.encode()).hexdigest()[:10]}"


def measured_precision(
    what: str, model: nn.Module, shapes: str, device: torch.device, run: Callable[[str], object]
) -> str:
    """`precision=auto` for `model` on `device`: the faster of the candidates (fp32, bf16) when
    `run(precision)` does the model's work on a batch of `shapes`. The random state is put
    back afterwards, so a run that measured trains exactly as one that read the cache."""
    candidates = precision_candidates(device)
    if len(candidates) == 1:
        return candidates[0]
    devices = (
        [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    )
    with torch.random.fork_rng(devices=devices):
        return choose(
            what,
            f"{model_signature(model)}, {shapes}",
            device,
            {p: functools.partial(run, p) for p in candidates},
            default=resolve_precision("auto", device),
            screen=functools.partial(emulated_precisions, device, candidates),
        )


SCREEN_SLOWER = 3.0  # a precision whose matrix products are this much slower is not tried on the model


def emulated_precisions(device: torch.device, candidates: List[str]) -> Dict[str, str]:
    """Low precisions whose matrix products run over SCREEN_SLOWER times slower than fp32 here
    (bf16 on a CPU without bf16 instructions, where one bf16 training step of wt2_medium took
    65 s against fp32's 1.7 s on an AVX2 EPYC), timed on one product in milliseconds, each
    with the reason."""
    a = torch.randn(256, 1024, device=device)
    b = torch.randn(1024, 1024, device=device)

    def product(precision: str) -> None:
        with autocast_context(device, precision):
            torch.mm(a, b)

    seconds = time_candidates({p: functools.partial(product, p) for p in candidates}, device, rounds=3)
    fp32 = seconds.get("fp32")
    return {
        p: f"its matrix products ran {s / fp32:.0f}x slower than fp32's here"
        for p, s in seconds.items()
        if p != "fp32" and fp32 and s > SCREEN_SLOWER * fp32
    }


def forget_in_process() -> None:
    """Drop this process's memo (the cache file stays): for tests."""
    _memo.clear()
    _said_untimed.clear()
