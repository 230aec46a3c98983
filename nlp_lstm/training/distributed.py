"""Data-parallel training with torch.distributed, launched by `torchrun`.

Every process (rank) builds the same model (DDP broadcasts rank 0's weights at wrap
time), reads its own shard of each global batch, and DDP averages the gradients, so N
ranks with `task.batch_size=B` train exactly like one process with batch N*B. Only rank 0
writes checkpoints, TensorBoard, metrics and the model package. Evaluation is sharded too:
each rank scores its share of the split and the totals are summed over ranks, so every
rank ends with the same metrics (those of one process), and schedules and early stopping
keep the ranks in step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Tuple

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from nlp_lstm.errors import ConfigError, NlpLstmError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = DistInfo()


def init_from_env(device_setting: str) -> DistInfo:
    """Join the process group torchrun describes (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_*).

    NCCL where the run uses CUDA, gloo on CPU. Without torchrun this is a single process.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = _uses_cuda(device_setting)
    if device_setting.startswith("cuda:"):
        raise ConfigError(
            f"config trainer.device={device_setting!r}: under torchrun each rank takes "
            "cuda:LOCAL_RANK; use trainer.device=cuda"
        )
    if use_cuda:  # first: NCCL binds its communicator to the current device
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank, world, local_rank)


def _uses_cuda(device_setting: str) -> bool:
    return device_setting.startswith("cuda") or (device_setting == "auto" and torch.cuda.is_available())


def rank_device(device_setting: str, info: DistInfo) -> str:
    """The trainer.device to resolve on this rank: cuda:LOCAL_RANK for a data-parallel
    CUDA run, the setting itself otherwise."""
    return f"cuda:{info.local_rank}" if info.enabled and _uses_cuda(device_setting) else device_setting


def _all_reduce(values: List, dtype: torch.dtype, op) -> List:
    """One all-reduce of a short list of numbers, on the device the backend needs."""
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor(values, dtype=dtype, device=device)
    dist.all_reduce(tensor, op=op)
    return tensor.tolist()


def any_rank(flags: List[bool], info: DistInfo) -> List[bool]:
    """Each flag true on every rank if it is true on any (budgets, signals, checkpoint
    times: all ranks stop, or checkpoint, together). One small all-reduce."""
    if not info.enabled:
        return list(flags)
    return [bool(v) for v in _all_reduce([1 if f else 0 for f in flags], torch.int64, dist.ReduceOp.MAX)]


def sum_over_ranks(values: List[float], info: DistInfo) -> List[float]:
    """Each value summed over all ranks (float64), on every rank."""
    if not info.enabled:
        return list(values)
    return _all_reduce(values, torch.float64, dist.ReduceOp.SUM)


def gather_objects(obj: Any, info: DistInfo) -> List[Any]:
    """Every rank's `obj`, in rank order (on every rank)."""
    if not info.enabled:
        return [obj]
    out: List[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's `obj` on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class _WholeStep(torch.nn.Module):
    """The task's whole training step as one module, so DistributedDataParallel sees one
    forward per backward whatever the task does inside (two directions, a CRF loss)."""

    def __init__(self, task) -> None:
        super().__init__()
        self.task, self.model = task, task.model  # registers the model's parameters
        self.output = None

    def forward(self, batch):
        self.output = self.task.training_step(batch)
        return self.output.loss


def data_parallel_step(task, device: torch.device) -> torch.nn.Module:
    """The task's training step under DistributedDataParallel: `step(batch)` runs it and
    returns the loss, `step.module.output` holds its StepOutput."""
    return DistributedDataParallel(_WholeStep(task), device_ids=[device.index] if device.type == "cuda" else None)


def rank_share(task_state: Any, rng: Any, info: DistInfo, checkpoint_path: Path) -> Tuple[Any, Any]:
    """This rank's task state (data position, carried state) and RNG states in a checkpoint:
    a data-parallel run writes a list of each, one entry per rank, and resumes with as
    many ranks; a single process writes them alone."""
    if isinstance(task_state, list):
        if len(task_state) != info.world_size:
            raise NlpLstmError(
                f"{checkpoint_path}: written by {len(task_state)} processes; resume it with "
                f"the same number (torchrun --nproc_per_node={len(task_state)})"
            )
        return task_state[info.rank], rng[info.rank]
    if info.enabled:
        raise NlpLstmError(f"{checkpoint_path}: written by a single process; resume it without torchrun")
    return task_state, rng


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
