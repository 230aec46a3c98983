"""`nlp-lstm data`: the corpus registry, fetching and statistics."""

from __future__ import annotations

from pathlib import Path

from nlp_lstm.config import DataConfig
from nlp_lstm.data.fetch import default_data_dir, fetch_corpus
from nlp_lstm.data.lm_corpus import corpus_stats
from nlp_lstm.data.registry import CORPORA, get_corpus
from nlp_lstm.errors import NlpLstmError


def data(args) -> None:
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
    for split, row in corpus_stats(DataConfig(name=args.name), data_dir).items():
        print(
            f"{split:6s} lines={row['lines']:,} tokens={row['tokens']:,} vocab={row['vocab']:,} "
            f"chars={row['chars']:,} oov_rate={row['oov_rate']:.4%}"
        )
