"""`nlp-lstm evaluate`: a model on a split of its corpus or on a file (LMs: plain, with the
neural cache, under dynamic evaluation; taggers: conlleval's numbers and a confusion matrix)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from nlp_lstm.cli.inputs import columns_to_read, detected, read_input
from nlp_lstm.config import DataConfig, TaggingDataConfig
from nlp_lstm.data.fetch import default_data_dir
from nlp_lstm.data.lm_corpus import read_lm_splits
from nlp_lstm.data.tag_files import conll_sentences, conllu_sentences, input_lines
from nlp_lstm.data.tagging_corpus import read_tagging_splits
from nlp_lstm.errors import NlpLstmError
from nlp_lstm.fileio import atomic_write_json
from nlp_lstm.inference import Tagger, load
from nlp_lstm.inference.tag_evaluation import evaluate_file, format_report


def evaluate(args) -> None:
    if args.file is not None and args.split is not None:
        raise NlpLstmError(
            f"evaluate: --split {args.split} names a split of the model's corpus, but FILE "
            f"{args.file} is what is scored: give one of them"
        )
    args.split = args.split or "test"
    model = load(args.model, args.device)
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    if isinstance(model, Tagger) and args.file is not None:
        evaluate_tagger_on_file(model, args)
        return
    if isinstance(model, Tagger):
        data_cfg = TaggingDataConfig(**model.configs["data"])
        splits = read_tagging_splits(data_cfg, data_dir, log=lambda *_: None)
        if args.split not in splits:
            raise NlpLstmError(f"{args.model}: its corpus {data_cfg.name!r} has no {args.split} split")
        metrics = model.evaluate(splits[args.split], args.predictions)
        print(json.dumps({"data": data_cfg.name, "split": args.split, **metrics}))
        return
    data_cfg = DataConfig(**model.configs["data"])
    splits = None
    if args.file is not None:
        source, lines = args.file, read_input(args.file, "text file")
    else:
        splits = read_lm_splits(data_cfg, data_dir)
        if args.split not in splits:
            raise NlpLstmError(f"{args.model}: its corpus {data_cfg.name!r} has no {args.split} split")
        source, lines = {"data": data_cfg.name, "split": args.split}, splits[args.split]

    def per_second(tokens: int, start: float) -> float:
        return tokens / max(1e-9, time.perf_counter() - start)

    start = time.perf_counter()
    metrics = model.score_lines(lines, args.batch_size)
    metrics["tokens_per_sec"] = per_second(metrics["tokens"], start)
    if args.cache_size:
        if any(not 0 <= lam <= 1 for lam in args.cache_lambda):
            raise NlpLstmError(f"--cache-lambda {args.cache_lambda}: each must be in [0, 1]")
        settings = [(theta, lam) for theta in args.cache_theta for lam in args.cache_lambda]
        start = time.perf_counter()
        report = model.score_lines_with_cache(lines, args.cache_size, settings, args.cache_batch_size)
        metrics["cache"] = {
            "size": args.cache_size,
            "rows": report["rows"],
            "ppl_without": report["ppl"],
            "settings": report["cache"],
            "tokens_per_sec": per_second(report["tokens"], start),
        }
    if args.dynamic_eval:
        if args.dynamic_lr is not None and any(lr < 0 for lr in args.dynamic_lr):
            raise NlpLstmError(f"--dynamic-lr {args.dynamic_lr}: each must be >= 0")
        if args.dynamic_decay is not None and any(not 0 <= d <= 1 for d in args.dynamic_decay):
            raise NlpLstmError(f"--dynamic-decay {args.dynamic_decay}: each must be in [0, 1]")
        train_lines = None
        if args.dynamic_eval == "rms":  # Krause et al. take the gradient statistics from the training text
            splits = splits if splits is not None else read_lm_splits(data_cfg, data_dir)
            if "train" not in splits:
                raise NlpLstmError(
                    f"--dynamic-eval rms: its gradient statistics come from the training split, "
                    f"and {args.model}'s corpus {data_cfg.name!r} has none"
                )
            train_lines = splits["train"]
        start = time.perf_counter()
        dynamic = model.score_lines_dynamic(
            lines,
            args.dynamic_lr,
            args.dynamic_decay,
            args.dynamic_eval,
            args.dynamic_batch_size,
            train_lines=train_lines,
            statistics_batches=args.dynamic_stats_batches,
        )
        metrics["dynamic"] = {
            "method": args.dynamic_eval,
            "rows": dynamic["rows"],
            "ppl_without": dynamic["ppl"],
            "settings": dynamic["settings"],
            "tokens_per_sec": per_second(dynamic["tokens"] * len(dynamic["settings"]), start),
        }
    report = {**({"file": source} if isinstance(source, str) else source), **metrics}
    if args.json:
        atomic_write_json(args.json, report)
    print(json.dumps(report))


def evaluate_tagger_on_file(tagger, args) -> None:
    where = "stdin" if args.file == "-" else args.file
    lines = detected(args, input_lines(args.file, "labelled file"), ("conll", "conllu"))
    if args.input == "conllu":
        field = args.conllu_field or (tagger.conllu_field if tagger.conllu_field != "misc" else "upos")
        sentences = conllu_sentences(lines, where, field)
    else:
        sentences = conll_sentences(
            lines, where, columns_to_read(tagger, "conll", args.predict_features), gold_column=-1
        )
    tagger.set_precision(args.precision)
    report = evaluate_file(tagger, sentences, where, predictions_path=args.predictions)
    if args.json:
        atomic_write_json(args.json, report)
    print(format_report(report))
