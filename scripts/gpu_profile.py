"""A short torch.profiler trace of training steps of one LM and one tagger, for the GPU
report: `python scripts/gpu_profile.py OUT_DIR [--device cuda] [--steps 3] [--warmup 5]`.
Writes a Chrome trace (open in chrome://tracing or Perfetto) and the top operators of each
model to OUT_DIR."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from nlp_lstm.train_entry import build_task, compose_config, configure_torch
from nlp_lstm.training.trainer import Trainer

MODELS = {"lm": ["experiment=wt2_medium", "trainer.precision=bf16"], "tagger": ["experiment=conll2000_chunk"]}


def profile_steps(name: str, overrides, device: str, out: Path, warmup: int = 5, steps: int = 3) -> None:
    with tempfile.TemporaryDirectory() as run_dir:
        config = compose_config(overrides + [f"trainer.device={device}"], run_dir)
        configure_torch(config)
        task = build_task(config, torch.device(device))
        trainer = Trainer(config, task, Path(run_dir), torch.device(device))
        task.start_epoch(0)
        for _ in range(warmup):
            trainer.train_step(task.next_batch())
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
        with profile(activities=activities) as trace:
            for _ in range(steps):
                trainer.train_step(task.next_batch())
            if device.startswith("cuda"):
                torch.cuda.synchronize()
    trace.export_chrome_trace(str(out / f"trace_{name}.json"))
    sort = "self_cuda_time_total" if device.startswith("cuda") else "self_cpu_time_total"
    table = trace.key_averages().table(sort_by=sort, row_limit=20)
    (out / f"profile_{name}.txt").write_text(table + "\n")
    print(f"== {name}: {' '.join(overrides)} ({steps} steps)\n{table}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--only", choices=sorted(MODELS), default=None)
    parser.add_argument("--steps", type=int, default=3, help="profiled training steps per model")
    parser.add_argument("--warmup", type=int, default=5, help="unprofiled steps first")
    parser.add_argument(
        "--precision",
        default=None,
        help="trainer.precision for every model (default: each one's own; "
        "fp32 where the CPU emulates bf16, as in a CPU rehearsal)",
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, overrides in MODELS.items():
        if args.only in (None, name):
            if args.precision:
                overrides = [o for o in overrides if not o.startswith("trainer.precision=")] + [
                    f"trainer.precision={args.precision}"
                ]
            profile_steps(name, overrides, args.device, args.out, args.warmup, args.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
