"""`nlp-lstm bench`: the configured model's speed beside a textbook reference loop."""

from __future__ import annotations

from nlp_lstm.bench import format_report, run_bench
from nlp_lstm.fileio import atomic_write_json


def bench(args) -> None:
    report = run_bench(
        args.overrides,
        args.steps,
        args.warmup,
        reference=not args.no_reference,
        reference_precision=args.reference_precision,
    )
    print(format_report(report))
    if args.json:
        atomic_write_json(args.json, report)
