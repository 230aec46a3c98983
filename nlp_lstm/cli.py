"""`nlp-lstm`: use trained models and manage corpora.

    nlp-lstm generate MODEL --prompt "The history of" --max-tokens 50
    nlp-lstm score MODEL FILE
    nlp-lstm evaluate MODEL --split test
    echo "The cat sat on the mat ." | nlp-lstm tag MODEL --format conll
    nlp-lstm data fetch wikitext2 | data stats wikitext2 | data list
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from nlp_lstm.errors import NlpLstmError


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _float_list(text: str) -> list:
    """'0.1,0.2' -> [0.1, 0.2]"""
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be numbers separated by commas, got {text!r}") from None


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage errors as one line (like every other error here)."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nlp-lstm", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    gen = sub.add_parser("generate", help="sample text from a language model")
    gen.add_argument("model", help="model package directory (<run dir>/model)")
    gen.add_argument("--prompt", default="", help="text to continue (unknown words are fine)")
    gen.add_argument("--max-tokens", type=_positive_int, default=50)
    gen.add_argument("--temperature", type=_non_negative, default=1.0, help="0 = greedy")
    gen.add_argument("--top-k", type=_positive_int, default=None)
    gen.add_argument("--top-p", type=_probability, default=None)
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--device", default="auto")

    score = sub.add_parser("score", help="perplexity of a text file under a language model")
    score.add_argument("model")
    score.add_argument("file", help="UTF-8 text, one line per line ('-' for stdin)")
    score.add_argument("--batch-size", type=_positive_int, default=10)
    score.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                       help="a progress bar with tokens/s on stderr (auto: when stderr is a terminal)")
    score.add_argument("--device", default="auto")

    ev = sub.add_parser("evaluate", help="score a model on a labelled file (tagger) or a text file (LM), or on a "
                                         "split of the corpus it was trained on",
                        description="With FILE: a tagger is scored on a labelled CoNLL (gold tags in the last "
                                    "column) or CoNLL-U file and the report is printed as tables; an LM scores "
                                    "a UTF-8 text file. Without FILE: --split of the model's own corpus, as JSON.")
    ev.add_argument("model")
    ev.add_argument("file", nargs="?", default=None, help="labelled file (tagger) or text file (LM); '-' for stdin")
    ev.add_argument("--input", choices=("auto", "conll", "conllu"), default="auto",
                    help="taggers: the file's format; auto: by its extension (.conll, .bio, .iob, .conllu), "
                         "else conllu where the first lines are CoNLL-U, else conll (the log says which)")
    ev.add_argument("--conllu-field", choices=("upos", "xpos"), default=None,
                    help="taggers, CoNLL-U: the gold field (default: the one the model was trained on)")
    ev.add_argument("--json", default=None, help="also write the full report (per label, confusion) here")
    ev.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                    help="taggers: as for tag (the same default, so both give the same tags); fp32 "
                         "reproduces the numbers training reported in fp32")
    ev.add_argument("--predict-features", action="store_true",
                    help="taggers, conll: predict the model's input columns with the taggers its package "
                         "carries instead of reading the file's (e.g. a chunker on predicted POS)")
    ev.add_argument("--split", choices=("train", "valid", "test"), default=None,
                    help="the split of the model's own corpus to score (default test); not with FILE")
    ev.add_argument("--data-dir", default=None, help="corpus cache (default: $NLP_LSTM_DATA_DIR or ./data)")
    ev.add_argument("--batch-size", type=_positive_int, default=10, help="LM evaluation rows")
    ev.add_argument("--predictions", default=None, help="taggers: also write a conlleval-format file here")
    ev.add_argument("--cache-size", type=_positive_int, default=None,
                    help="LMs: also score with a neural cache pointer over this many recent positions "
                         "(Grave et al. 2017)")
    ev.add_argument("--cache-theta", type=_float_list, default=[0.3],
                    help="cache: flatness of its softmax; a comma-separated list tries each")
    ev.add_argument("--cache-lambda", type=_float_list, default=[0.1],
                    help="cache: weight of the cache in the mixture, in [0, 1]; a comma-separated list tries each")
    ev.add_argument("--cache-batch-size", type=_positive_int, default=1,
                    help="cache: rows read in parallel, each with its own cache and none shorter than the "
                         "cache (1: the text in order, every token with its full history)")
    ev.add_argument("--dynamic-eval", choices=("sgd", "rms"), default=None,
                    help="LMs: also score with dynamic evaluation (Krause et al. 2018): a gradient step on "
                         "each window after scoring it")
    ev.add_argument("--dynamic-lr", type=_float_list, default=None,
                    help="dynamic evaluation: step size; a comma-separated list tries each (default: sgd 0.5,1; "
                         "rms 5e-5,1e-4 times the window length / 5)")
    ev.add_argument("--dynamic-decay", type=_float_list, default=None,
                    help="dynamic evaluation: pull towards the trained weights per step, in [0, 1]; a "
                         "comma-separated list tries each (default: sgd 0; rms 0.002 times the window length / 5)")
    ev.add_argument("--dynamic-batch-size", type=_positive_int, default=1,
                    help="dynamic evaluation: rows read in parallel (1: the text in order, as the paper)")
    ev.add_argument("--dynamic-stats-batches", type=_positive_int, default=None,
                    help="dynamic evaluation, rms: batches of the training split its gradient statistics are "
                         "taken from (default: all of it, as the paper)")
    ev.add_argument("--device", default="auto")

    tag = sub.add_parser("tag", help="tag text with a sequence tagger (streams: any input size)")
    tag.add_argument("model")
    tag.add_argument("file", nargs="?", default="-",
                     help="one sentence (or paragraph, with --split-sentences) per line, CoNLL or CoNLL-U; "
                          "'-' for stdin")
    tag.add_argument("--input", choices=("auto", "text", "conll", "conllu"), default="auto",
                     help="text: raw sentences, tokenized on words and punctuation; conll: first column the "
                          "word (and the model's input columns), blank line between sentences, '# line = N' "
                          "comments skipped; conllu: the FORM of each word line; auto (default): by the "
                          "extension (.conll, .conll2000, .bio, .iob, .conllu), else by the first lines (stdin "
                          "too); the log says which and why")
    tag.add_argument("--format", choices=("conll", "jsonl", "text", "conllu"), default="conll",
                     help="jsonl: a record per sentence (one per blank line too) with its input line "
                          "(\"line\", 1-based), tokens with offsets into that line, and for chunk/entity "
                          "taggers spans with confidences; text: one output line per input line; conll: "
                          "'# line = N' before each sentence; conllu: CoNLL-U input comes back with one "
                          "field filled and every other byte kept")
    tag.add_argument("--output", default=None, help="write here (atomically: complete or not at all) "
                                                    "instead of stdout")
    tag.add_argument("--batch-size", type=_positive_int, default=256, help="sentences per batch")
    tag.add_argument("--split-sentences", action="store_true",
                     help="text input: split each line into sentences (segtok); offsets stay into the line "
                          "and jsonl gives each sentence's start in it (\"sentence_start\")")
    tag.add_argument("--conllu-field", choices=("upos", "xpos", "misc"), default=None,
                     help="conllu output: the field the tags go in (default: the field the model was "
                          "trained on; misc for chunk/entity tags)")
    tag.add_argument("--misc-key", default="Tag", help="conllu output in misc: the key (e.g. NER)")
    tag.add_argument("--nbest", type=_positive_int, default=None, help="jsonl: the k best sequences (CRF)")
    tag.add_argument("--marginals", action="store_true", help="jsonl: per-token tag probabilities (CRF)")
    tag.add_argument("--predict-features", action="store_true",
                     help="conll input: predict the model's input columns (e.g. POS) with the taggers its "
                          "package carries instead of reading them (raw text always does)")
    tag.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                     help="a progress bar with sentences/s on stderr (auto: when stderr is a terminal)")
    tag.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                     help="auto: bf16 where the hardware computes it natively (a CPU with AVX512-BF16 or AMX, "
                          "a CUDA card with bf16), else fp32")
    tag.add_argument("--device", default="auto")

    exp = sub.add_parser("export", help="write a tagger's network as ONNX plus what decoding needs (tagger.json)",
                         description="OUT/model.onnx (dynamic batch and length; inputs words, chars, lengths and "
                                     "the model's input columns; output emissions) and OUT/tagger.json "
                                     "(vocabularies, tags, schemes, CRF scores). See nlp_lstm/inference/export.py.")
    exp.add_argument("model")
    exp.add_argument("output")

    vec = sub.add_parser("vectors", help="write a model's input word embeddings as word2vec text (.vec)",
                         description="LM: one row per token of its vocabulary; tagger: per word of its vocabulary "
                                     "(padding left out). Tokens holding whitespace (a character LM's space) "
                                     "cannot be written in the format and are left out, with a count on stderr.")
    vec.add_argument("model")
    vec.add_argument("output")

    bench = sub.add_parser("bench", help="training and inference throughput beside a textbook reference loop",
                           description="Times the model that `python train.py OVERRIDES` would train, then a "
                                       "plain fp32 nn.LSTM/nn.GRU loop of the same shapes on the same batches.")
    bench.add_argument("overrides", nargs="*", help="Hydra overrides, as for train.py (experiment=wt2_medium ...)")
    bench.add_argument("--steps", type=_positive_int, default=20, help="timed steps (batches) per measurement")
    bench.add_argument("--warmup", type=_non_negative_int, default=3, help="untimed steps first")
    bench.add_argument("--no-reference", action="store_true", help="time only the configured model")
    bench.add_argument("--reference-precision", choices=("fp32", "same"), default="fp32",
                       help="the reference loop in fp32 as a tutorial writes it (default), or under the same "
                            "autocast precision as the configured model")
    bench.add_argument("--json", default=None, help="also write the numbers to this file")

    data = sub.add_parser("data", help="fetch and inspect the corpora of the registry")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    fetch = data_sub.add_parser("fetch", help="download (or copy from $NLP_LSTM_DATA_MIRROR) and verify")
    fetch.add_argument("name")
    fetch.add_argument("--data-dir", default=None)
    stats = data_sub.add_parser("stats", help="lines, tokens, vocabulary and OOV rate per split")
    stats.add_argument("name")
    stats.add_argument("--data-dir", default=None)
    data_sub.add_parser("list", help="the corpora the registry knows")
    return parser


def _cmd_bench(args) -> None:
    from nlp_lstm.bench import format_report, run_bench
    from nlp_lstm.fileio import atomic_write_json

    report = run_bench(args.overrides, args.steps, args.warmup, reference=not args.no_reference,
                       reference_precision=args.reference_precision)
    print(format_report(report))
    if args.json:
        atomic_write_json(args.json, report)


def _cmd_generate(args) -> None:
    model = _load_lm(args.model, args.device)
    print(model.generate(args.prompt, args.max_tokens, args.temperature, args.top_k, args.top_p, args.seed))


def _load_lm(path: str, device: str):
    from nlp_lstm.inference import load

    return load(path, device, kind="lm")


def _cmd_score(args) -> None:
    model = _load_lm(args.model, args.device)
    progress = {"auto": None, "on": True, "off": False}[args.progress]
    print(json.dumps({"file": args.file, **model.score_file(args.file, args.batch_size, progress)}))


def _cmd_evaluate(args) -> None:
    from nlp_lstm.config import DataConfig, TaggingDataConfig
    from nlp_lstm.data.fetch import default_data_dir
    from nlp_lstm.data.lm_corpus import read_lm_splits
    from nlp_lstm.inference import Tagger, load

    if args.file is not None and args.split is not None:
        raise NlpLstmError(f"evaluate: --split {args.split} names a split of the model's corpus, but FILE "
                           f"{args.file} is what is scored: give one of them")
    args.split = args.split or "test"
    model = load(args.model, args.device)
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    if isinstance(model, Tagger) and args.file is not None:
        _evaluate_tagger_on_file(model, args)
        return
    if isinstance(model, Tagger):
        from nlp_lstm.data.tagging_corpus import read_tagging_splits

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
        source, lines = args.file, _read_input(args.file, "text file")
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
        metrics["cache"] = {"size": args.cache_size, "rows": report["rows"], "ppl_without": report["ppl"],
                            "settings": report["cache"], "tokens_per_sec": per_second(report["tokens"], start)}
    if args.dynamic_eval:
        if args.dynamic_lr is not None and any(lr < 0 for lr in args.dynamic_lr):
            raise NlpLstmError(f"--dynamic-lr {args.dynamic_lr}: each must be >= 0")
        if args.dynamic_decay is not None and any(not 0 <= d <= 1 for d in args.dynamic_decay):
            raise NlpLstmError(f"--dynamic-decay {args.dynamic_decay}: each must be in [0, 1]")
        train_lines = None
        if args.dynamic_eval == "rms":  # Krause et al. take the gradient statistics from the training text
            splits = splits if splits is not None else read_lm_splits(data_cfg, data_dir)
            if "train" not in splits:
                raise NlpLstmError(f"--dynamic-eval rms: its gradient statistics come from the training split, "
                                   f"and {args.model}'s corpus {data_cfg.name!r} has none")
            train_lines = splits["train"]
        start = time.perf_counter()
        dynamic = model.score_lines_dynamic(lines, args.dynamic_lr, args.dynamic_decay,
                                            args.dynamic_eval, args.dynamic_batch_size, train_lines=train_lines,
                                            statistics_batches=args.dynamic_stats_batches)
        metrics["dynamic"] = {"method": args.dynamic_eval, "rows": dynamic["rows"], "ppl_without": dynamic["ppl"],
                              "settings": dynamic["settings"],
                              "tokens_per_sec": per_second(dynamic["tokens"] * len(dynamic["settings"]), start)}
    report = {**({"file": source} if isinstance(source, str) else source), **metrics}
    if args.json:
        from nlp_lstm.fileio import atomic_write_json

        atomic_write_json(args.json, report)
    print(json.dumps(report))


def _evaluate_tagger_on_file(tagger, args) -> None:
    from nlp_lstm.data.tag_files import conll_sentences, conllu_sentences, input_lines
    from nlp_lstm.fileio import atomic_write_json
    from nlp_lstm.inference.tag_evaluation import evaluate_file, format_report

    where = "stdin" if args.file == "-" else args.file
    lines = _detected(args, input_lines(args.file, "labelled file"), ("conll", "conllu"))
    if args.input == "conllu":
        field = args.conllu_field or (tagger.conllu_field if tagger.conllu_field != "misc" else "upos")
        sentences = conllu_sentences(lines, where, field)
    else:
        sentences = conll_sentences(lines, where, _columns_to_read(tagger, "conll", args.predict_features),
                                    gold_column=-1)
    tagger.set_precision(args.precision)
    report = evaluate_file(tagger, sentences, where, predictions_path=args.predictions)
    if args.json:
        atomic_write_json(args.json, report)
    print(format_report(report))


def _read_input(path: str, what: str) -> List[str]:
    """All lines of a file, or of stdin for '-' (data.tag_files.input_lines, collected)."""
    from nlp_lstm.data.tag_files import input_lines

    return [line for _, line in input_lines(path, what)]


def _cmd_tag(args) -> None:
    from nlp_lstm.data.conll import line_comment
    from nlp_lstm.data.tag_files import (conll_sentences, conllu_sentences, format_conllu, input_lines,
                                         output_path_ok, split_sentences, text_sentences)
    from nlp_lstm.fileio import atomic_open
    from nlp_lstm.inference import load
    from nlp_lstm.inference.records import token_records
    from nlp_lstm.inference.tag_stream import tag_stream

    tagger = load(args.model, args.device, kind="tagger")
    tagger.set_precision(args.precision)
    if (args.nbest or args.marginals) and args.format != "jsonl":
        raise NlpLstmError("--nbest and --marginals need --format jsonl")
    output_path_ok(args.output)
    lines = _detected(args, input_lines(args.file), ("text", "conll", "conllu"))
    if args.split_sentences and args.input != "text":
        raise NlpLstmError(f"--split-sentences splits raw text: it needs --input text (the input is {args.input})")
    columns = _columns_to_read(tagger, args.input, args.predict_features)
    where = "stdin" if args.file == "-" else args.file
    if args.input == "conll":
        sentences = conll_sentences(lines, where, columns)
    elif args.input == "conllu":
        sentences = conllu_sentences(lines, where)
    else:
        sentences = text_sentences(lines, split_sentences if args.split_sentences else None)
    field = args.conllu_field or tagger.conllu_field
    progress = {"auto": None, "on": True, "off": False}[args.progress]
    # n-best and marginals come from the same pass (the same emissions) as the tags
    results = tag_stream(tagger, sentences, args.batch_size, spans=args.format == "jsonl", progress=progress,
                         nbest=args.nbest, marginals=args.marginals)
    with (atomic_open(args.output, "w") if args.output else contextlib.nullcontext(sys.stdout)) as out:
        written = 0  # sentences written: CoNLL-U sent_id
        text_line = None  # text format: the input line now being written
        for sentence, prediction in results:
            tags, spans = prediction.tags, prediction.spans
            if args.format == "text":
                # One output line per input line: a paragraph's sentences are joined back on
                # its line, a blank line stays blank.
                if text_line is not None:
                    out.write(" " if sentence.line == text_line else "\n")
                out.write(" ".join(f"{w}/{t}" for w, t in zip(sentence.words, tags)))
                text_line = sentence.line
            elif args.format == "jsonl":
                # Every input line gets a record (a blank one, no tokens), numbered, so
                # records line up with the input.
                record: Dict[str, Any] = {"line": sentence.line}
                if args.split_sentences:
                    record["sentence_start"] = sentence.text_start
                record["tokens"] = token_records(sentence, tags)
                if sentence.text is not None:
                    record["text"] = sentence.text
                if spans is not None:
                    record["spans"] = spans
                if args.nbest and sentence.words:
                    record["nbest"] = [{"tags": t, "score": score} for t, score in prediction.nbest]
                if args.marginals and sentence.words:
                    record["marginals"] = prediction.marginals
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            elif not sentence.words:
                continue  # a blank line is no sentence; `# line = N` maps the others back
            elif args.format == "conll":
                out.write(line_comment(sentence.line) + "\n"
                          + "\n".join(f"{w}\t{t}" for w, t in zip(sentence.words, tags)) + "\n\n")
            else:
                written += 1
                out.write(format_conllu(sentence, tags, written, field, args.misc_key) + "\n\n")
        if text_line is not None:
            out.write("\n")


def _detected(args, lines, choices):
    """The input's lines; with --input auto, args.input set to the format detected from the
    name or the first lines, and one line on stderr saying which and why."""
    if args.input != "auto":
        return lines
    from nlp_lstm.data.tag_files import detect_input

    args.input, why, lines = detect_input(args.file, lines, choices)
    where = "stdin" if args.file == "-" else args.file
    print(f"input: {where} read as {args.input} ({why}); pass --input to choose", file=sys.stderr)
    return lines


def _columns_to_read(tagger, input_format: str, predict_features: bool) -> Dict[str, int]:
    """The input columns to read from a file; the others are predicted by the taggers the
    package carries (model.feature_taggers), or else the input is refused."""
    if predict_features or input_format != "conll":
        unpredictable = [n for n in tagger.feature_columns if n not in tagger.feature_taggers]
        if unpredictable:
            raise NlpLstmError(f"this model also reads input column(s) {', '.join(unpredictable)} "
                               f"(data.feature_columns={tagger.feature_columns}): give CoNLL input that has them")
        return {}
    return tagger.feature_columns


def _cmd_export(args) -> None:
    from nlp_lstm.inference import load
    from nlp_lstm.inference.export import export_tagger

    # export covers taggers: an LM package is already a state_dict and a tokenizer
    tagger = load(args.model, "cpu", kind="tagger")
    meta = export_tagger(tagger, Path(args.output))
    print(f"{args.output}: model.onnx (inputs {', '.join(meta['inputs'])}; output emissions) and tagger.json",
          file=sys.stderr)


def _cmd_vectors(args) -> None:
    import numpy as np

    from nlp_lstm.data.word_vectors import write_word2vec_text
    from nlp_lstm.inference import LanguageModel, load

    model = load(args.model, "cpu")
    if isinstance(model, LanguageModel):
        weight = model.model.embedding.weight
        words = model.tokenizer.token_strings(range(weight.shape[0]))
        rows = list(range(len(words)))
    else:
        weight = model.model.word_embedding.weight
        words = model.vocabs.words.get_itos()
        rows = list(range(1, len(words)))  # row 0 is padding, not a word
    writable = [i for i in rows if words[i] and not any(c.isspace() for c in words[i])]
    matrix = weight.detach().float().cpu().numpy()[np.array(writable, dtype=np.int64)]
    write_word2vec_text(Path(args.output), [words[i] for i in writable], matrix)
    if len(writable) < len(rows):
        print(f"left out {len(rows) - len(writable)} token(s) holding whitespace", file=sys.stderr)
    print(f"{args.output}: {len(writable):,} vectors of {matrix.shape[1]} dimensions", file=sys.stderr)


def _cmd_data(args) -> None:
    from nlp_lstm.data.fetch import default_data_dir, fetch_corpus
    from nlp_lstm.data.registry import CORPORA, get_corpus

    if args.data_command == "list":
        for corpus in CORPORA.values():
            print(f"{corpus.name:16s} {corpus.format:7s} {corpus.description} [{corpus.license}]")
        return
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    if args.data_command == "fetch":
        for split, path in fetch_corpus(args.name, data_dir).items():
            print(f"{split}\t{path}")
        return
    corpus = get_corpus(args.name)
    if corpus.format != "lines":
        raise NlpLstmError(f"data stats: {args.name} is a {corpus.format} tagging corpus; stats cover text corpora")
    from nlp_lstm.config import DataConfig
    from nlp_lstm.data.lm_corpus import corpus_stats

    for split, row in corpus_stats(DataConfig(name=args.name), data_dir).items():
        print(f"{split:6s} lines={row['lines']:,} tokens={row['tokens']:,} vocab={row['vocab']:,} "
              f"chars={row['chars']:,} oov_rate={row['oov_rate']:.4%}")


COMMANDS = {"generate": _cmd_generate, "score": _cmd_score, "evaluate": _cmd_evaluate, "tag": _cmd_tag,
            "bench": _cmd_bench, "vectors": _cmd_vectors, "export": _cmd_export, "data": _cmd_data}


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except NlpLstmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `nlp-lstm ... | head`
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
