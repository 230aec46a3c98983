"""Where a model runs: the device (`auto`: cuda, then mps, then cpu) and the precisions a
model may run in there, for training and use alike.

`precision=auto` is decided by timing the candidates on the model itself (speed_choices;
training: training/precision_choice.py, tagging: inference/tagger.py). Where timing is
switched off, `resolve_precision` gives the rule it replaces: bf16 where the hardware has
bf16 instructions, else fp32."""

from __future__ import annotations

import contextlib
from typing import List

import torch

from nlp_lstm.errors import NlpLstmError


class DeviceError(NlpLstmError):
    """A device that this machine does not have."""


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def resolve_device(name: str = "auto", what: str = "device") -> torch.device:
    """The torch device for `name`; `what` says where the name came from, for the error
    (`config trainer.device`, `--device`)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"{what}={name!r}: CUDA is not available on this machine (use cpu or auto)")
    if name == "mps" and not _mps_available():
        raise DeviceError(f"{what}='mps': MPS is not available on this machine (use cpu or auto)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise DeviceError(f"{what}={name!r}: not a device (auto, cpu, cuda, cuda:N or mps)") from None


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX tiles (torch.cpu's private probes; False where they are missing)."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def precision_candidates(device: torch.device) -> List[str]:
    """What `precision=auto` chooses between on `device`: fp32, and bf16 where autocast
    offers it (on a CPU without bf16 instructions it is emulated; timing says so)."""
    if device.type == "cuda":
        return ["fp32", "bf16"] if torch.cuda.is_bf16_supported() else ["fp32"]
    if device.type == "cpu":
        return ["fp32", "bf16"]
    return ["fp32"]


def resolve_precision(precision: str, device: torch.device) -> str:
    """Without timing: `auto` becomes bf16 where the hardware has bf16 instructions, else
    fp32; anything else is kept."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return "fp32"


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously; elsewhere a no-op): before
    and after anything timed."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast_context(device: torch.device, precision: str):
    """Autocast for a resolved precision (fp32: none)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision not in ("bf16", "fp16"):  # `auto` is resolved for the device first (resolve_precision)
        raise ValueError(f"precision {precision!r} is not fp32, bf16 or fp16: resolve it for the device first")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
