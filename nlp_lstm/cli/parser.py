"""The `nlp-lstm` command line: every command's arguments, checked as they are parsed."""

from __future__ import annotations

import argparse

DESCRIPTION = "`nlp-lstm`: use trained models and manage corpora."


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


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage errors as one line (like every other error here)."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nlp-lstm", description=DESCRIPTION)
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
    score.add_argument(
        "--progress",
        choices=("auto", "on", "off"),
        default="auto",
        help="a progress bar with tokens/s on stderr (auto: when stderr is a terminal)",
    )
    score.add_argument("--device", default="auto")

    ev = sub.add_parser(
        "evaluate",
        help="score a model on a labelled file (tagger) or a text file (LM), or on a "
        "split of the corpus it was trained on",
        description="With FILE: a tagger is scored on a labelled CoNLL (gold tags in the last "
        "column) or CoNLL-U file and the report is printed as tables; an LM scores "
        "a UTF-8 text file. Without FILE: --split of the model's own corpus, as JSON.",
    )
    ev.add_argument("model")
    ev.add_argument("file", nargs="?", default=None, help="labelled file (tagger) or text file (LM); '-' for stdin")
    ev.add_argument(
        "--input",
        choices=("auto", "conll", "conllu"),
        default="auto",
        help="taggers: the file's format; auto: by its extension (.conll, .bio, .iob, .conllu), "
        "else conllu where the first lines are CoNLL-U, else conll (the log says which)",
    )
    ev.add_argument(
        "--conllu-field",
        choices=("upos", "xpos"),
        default=None,
        help="taggers, CoNLL-U: the gold field (default: the one the model was trained on)",
    )
    ev.add_argument("--json", default=None, help="also write the full report (per label, confusion) here")
    ev.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="taggers: as for tag (the same default, so both give the same tags); fp32 "
        "reproduces the numbers training reported in fp32",
    )
    ev.add_argument(
        "--predict-features",
        action="store_true",
        help="taggers, conll: predict the model's input columns with the taggers its package "
        "carries instead of reading the file's (e.g. a chunker on predicted POS)",
    )
    ev.add_argument(
        "--split",
        choices=("train", "valid", "test"),
        default=None,
        help="the split of the model's own corpus to score (default test); not with FILE",
    )
    ev.add_argument("--data-dir", default=None, help="corpus cache (default: $NLP_LSTM_DATA_DIR or ./data)")
    ev.add_argument("--batch-size", type=_positive_int, default=10, help="LM evaluation rows")
    ev.add_argument("--predictions", default=None, help="taggers: also write a conlleval-format file here")
    ev.add_argument(
        "--cache-size",
        type=_positive_int,
        default=None,
        help="LMs: also score with a neural cache pointer over this many recent positions (Grave et al. 2017)",
    )
    ev.add_argument(
        "--cache-theta",
        type=_float_list,
        default=[0.3],
        help="cache: flatness of its softmax; a comma-separated list tries each",
    )
    ev.add_argument(
        "--cache-lambda",
        type=_float_list,
        default=[0.1],
        help="cache: weight of the cache in the mixture, in [0, 1]; a comma-separated list tries each",
    )
    ev.add_argument(
        "--cache-batch-size",
        type=_positive_int,
        default=1,
        help="cache: rows read in parallel, each with its own cache and none shorter than the "
        "cache (1: the text in order, every token with its full history)",
    )
    ev.add_argument(
        "--dynamic-eval",
        choices=("sgd", "rms"),
        default=None,
        help="LMs: also score with dynamic evaluation (Krause et al. 2018): a gradient step on "
        "each window after scoring it",
    )
    ev.add_argument(
        "--dynamic-lr",
        type=_float_list,
        default=None,
        help="dynamic evaluation: step size; a comma-separated list tries each (default: sgd 0.5,1; "
        "rms 5e-5,1e-4 times the window length / 5)",
    )
    ev.add_argument(
        "--dynamic-decay",
        type=_float_list,
        default=None,
        help="dynamic evaluation: pull towards the trained weights per step, in [0, 1]; a "
        "comma-separated list tries each (default: sgd 0; rms 0.002 times the window length / 5)",
    )
    ev.add_argument(
        "--dynamic-batch-size",
        type=_positive_int,
        default=1,
        help="dynamic evaluation: rows read in parallel (1: the text in order, as the paper)",
    )
    ev.add_argument(
        "--dynamic-stats-batches",
        type=_positive_int,
        default=None,
        help="dynamic evaluation, rms: batches of the training split its gradient statistics are "
        "taken from (default: all of it, as the paper)",
    )
    ev.add_argument("--device", default="auto")

    tag = sub.add_parser("tag", help="tag text with a sequence tagger (streams: any input size)")
    tag.add_argument("model")
    tag.add_argument(
        "file",
        nargs="?",
        default="-",
        help="one sentence (or paragraph, with --split-sentences) per line, CoNLL or CoNLL-U; '-' for stdin",
    )
    tag.add_argument(
        "--input",
        choices=("auto", "text", "conll", "conllu"),
        default="auto",
        help="text: raw sentences, tokenized on words and punctuation; conll: first column the "
        "word (and the model's input columns), blank line between sentences, '# line = N' "
        "comments skipped; conllu: the FORM of each word line; auto (default): by the "
        "extension (.conll, .conll2000, .bio, .iob, .conllu), else by the first lines (stdin "
        "too); the log says which and why",
    )
    tag.add_argument(
        "--format",
        choices=("conll", "jsonl", "text", "conllu"),
        default="conll",
        help="jsonl: a record per sentence (one per blank line too) with its input line "
        '("line", 1-based), tokens with offsets into that line, and for chunk/entity '
        "taggers spans with confidences; text: one output line per input line; conll: "
        "'# line = N' before each sentence; conllu: CoNLL-U input comes back with one "
        "field filled and every other byte kept",
    )
    tag.add_argument("--output", default=None, help="write here (atomically: complete or not at all) instead of stdout")
    tag.add_argument("--batch-size", type=_positive_int, default=256, help="sentences per batch")
    tag.add_argument(
        "--split-sentences",
        action="store_true",
        help="text input: split each line into sentences (segtok); offsets stay into the line "
        'and jsonl gives each sentence\'s start in it ("sentence_start")',
    )
    tag.add_argument(
        "--conllu-field",
        choices=("upos", "xpos", "misc"),
        default=None,
        help="conllu output: the field the tags go in (default: the field the model was "
        "trained on; misc for chunk/entity tags)",
    )
    tag.add_argument("--misc-key", default="Tag", help="conllu output in misc: the key (e.g. NER)")
    tag.add_argument("--nbest", type=_positive_int, default=None, help="jsonl: the k best sequences (CRF)")
    tag.add_argument("--marginals", action="store_true", help="jsonl: per-token tag probabilities (CRF)")
    tag.add_argument(
        "--predict-features",
        action="store_true",
        help="conll input: predict the model's input columns (e.g. POS) with the taggers its "
        "package carries instead of reading them (raw text always does)",
    )
    tag.add_argument(
        "--progress",
        choices=("auto", "on", "off"),
        default="auto",
        help="a progress bar with sentences/s on stderr (auto: when stderr is a terminal)",
    )
    tag.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="auto: whichever of fp32 and bf16 tags faster with this model here, timed once per "
        "machine and model shape and kept in the speed-choice cache (README: Speed choices)",
    )
    tag.add_argument("--device", default="auto")

    srv = sub.add_parser(
        "serve",
        help="serve a tagger or LM over HTTP (needs the serve extra)",
        description="Taggers: POST /tag; LMs: POST /score and /generate; every model: GET /health, "
        "/metrics (Prometheus) and a page at /. Requests are batched: they wait in one "
        "bounded queue for one model thread. SIGTERM or Ctrl-C finishes the requests "
        "in flight and exits 0.",
    )
    srv.add_argument("model")
    srv.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: this machine only; 0.0.0.0 for every interface)",
    )
    srv.add_argument("--port", type=_non_negative_int, default=8000)
    srv.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="taggers, as for tag (LMs compute in fp32)",
    )
    srv.add_argument(
        "--max-batch-size",
        type=_positive_int,
        default=256,
        help="sentences the model runs at once (texts, prompts for an LM)",
    )
    srv.add_argument(
        "--max-batch-tokens",
        type=_positive_int,
        default=16384,
        help="tokens the model runs at once; a longer sentence runs alone, never cut",
    )
    srv.add_argument(
        "--max-wait-ms",
        type=_non_negative,
        default=5.0,
        help="how long the first waiting sentence waits for others to share its batch",
    )
    srv.add_argument(
        "--max-queue",
        type=_positive_int,
        default=8192,
        help="sentences that may wait; past it a request gets 503 with Retry-After",
    )
    srv.add_argument("--max-body-mb", type=_positive, default=4.0, help="larger request bodies get 413")
    srv.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="processes, each with its own model and a share of the CPU threads",
    )
    srv.add_argument(
        "--cors",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let pages from ORIGIN call the server from a browser (repeatable; none by default)",
    )
    srv.add_argument("--device", default="auto")

    exp = sub.add_parser(
        "export",
        help="write a tagger's network as ONNX plus what decoding needs (tagger.json)",
        description="OUT/model.onnx (dynamic batch and length; inputs words, chars, lengths and "
        "the model's input columns; output emissions) and OUT/tagger.json "
        "(vocabularies, tags, schemes, CRF scores). See nlp_lstm/inference/export.py.",
    )
    exp.add_argument("model")
    exp.add_argument("output")

    vec = sub.add_parser(
        "vectors",
        help="write a model's input word embeddings as word2vec text (.vec)",
        description="LM: one row per token of its vocabulary; tagger: per word of its vocabulary "
        "(padding left out). Tokens holding whitespace (a character LM's space) "
        "cannot be written in the format and are left out, with a count on stderr.",
    )
    vec.add_argument("model")
    vec.add_argument("output")

    bench = sub.add_parser(
        "bench",
        help="training and inference throughput beside a textbook reference loop",
        description="Times the model that `python train.py OVERRIDES` would train, then a "
        "plain fp32 nn.LSTM/nn.GRU loop of the same shapes on the same batches.",
    )
    bench.add_argument("overrides", nargs="*", help="Hydra overrides, as for train.py (experiment=wt2_medium ...)")
    bench.add_argument("--steps", type=_positive_int, default=20, help="timed steps (batches) per measurement")
    bench.add_argument("--warmup", type=_non_negative_int, default=3, help="untimed steps first")
    bench.add_argument("--no-reference", action="store_true", help="time only the configured model")
    bench.add_argument(
        "--reference-precision",
        choices=("fp32", "same"),
        default="fp32",
        help="the reference loop in fp32 as a tutorial writes it (default), or under the same "
        "autocast precision as the configured model",
    )
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
