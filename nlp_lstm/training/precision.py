"""trainer.precision=auto: bf16 where the hardware computes it natively, else fp32.

On a CPU without native bf16 instructions, autocast to bf16 still runs, but through
conversions that make it slower than fp32; `auto` keeps such a CPU on fp32."""

from __future__ import annotations

import torch


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX tiles (torch.cpu's private probes; False where they are missing)."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision a run uses: `auto` becomes bf16 or fp32; anything else is kept."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return "fp32"
