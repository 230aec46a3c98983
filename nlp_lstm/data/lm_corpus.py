"""A language-modeling corpus: split lines -> fitted tokenizer -> id streams, cached.

The tokenizer and the encoded ids are cached under `<data_dir>/cache/`, keyed by a hash of
the corpus content and the tokenizer settings, so a second run with the same data and
tokenizer skips that work (and any change to either makes a new entry).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from nlp_lstm.data.fetch import fetch_corpus
from nlp_lstm.data.readers import read_lines
from nlp_lstm.data.registry import get_corpus
from nlp_lstm.data.tokenizers import Tokenizer, fit_tokenizer, load_tokenizer, save_tokenizer
from nlp_lstm.errors import ConfigError, DataError
from nlp_lstm.fileio import atomic_directory, sha256_file

CACHE_FORMAT = 1  # bump when the cached layout or the encoding changes
SPLITS = ("train", "valid", "test")


@dataclass
class SplitStats:
    """Sizes of one split, in the units every metric normalises by."""

    lines: int
    tokens: int  # tokenizer units, one end-of-line token per line included
    words: int  # whitespace words plus one <eos> per line (the word-level LM convention)
    chars: int  # characters plus one newline per line

    @classmethod
    def of(cls, lines: List[str], tokens: int) -> "SplitStats":
        return cls(lines=len(lines), tokens=tokens,
                   words=sum(len(line.split()) for line in lines) + len(lines),
                   chars=sum(len(line) for line in lines) + len(lines))


@dataclass
class LMCorpus:
    tokenizer: Tokenizer
    ids: Dict[str, np.ndarray]  # split -> int64 ids; a split may be absent (no test file)
    stats: Dict[str, SplitStats]
    cache_dir: Path


def read_lm_splits(data_cfg, data_dir: Path) -> Dict[str, List[str]]:
    """The lines of each split of a registry corpus or of `data=text` files."""
    if data_cfg.name == "text":
        files = {s: getattr(data_cfg, s) for s in SPLITS if getattr(data_cfg, s)}
        return {s: read_lines(p, f"data.{s} file") for s, p in files.items()}
    try:
        corpus = get_corpus(data_cfg.name)
    except DataError as exc:
        raise ConfigError(f"config data.name: {exc}") from None
    if corpus.format != "lines":
        raise ConfigError(f"config data.name={data_cfg.name!r}: a {corpus.format} tagging corpus, not a text corpus for task=lm")
    paths = fetch_corpus(corpus.name, data_dir)
    if corpus.split_fractions is None:
        return {s: read_lines(p) for s, p in paths.items()}
    lines = read_lines(paths["all"])
    n_train = int(len(lines) * corpus.split_fractions[0])
    n_valid = int(len(lines) * corpus.split_fractions[1])
    return {"train": lines[:n_train], "valid": lines[n_train:n_train + n_valid], "test": lines[n_train + n_valid:]}


def _source_files(data_cfg, data_dir: Path) -> List[str]:
    if data_cfg.name == "text":
        return [str(getattr(data_cfg, s)) for s in SPLITS if getattr(data_cfg, s)]
    corpus = get_corpus(data_cfg.name)
    return [str(Path(data_dir) / corpus.name / f.filename) for f in corpus.files.values()]


def cache_key(data_cfg, tok_cfg, data_dir: Path) -> str:
    files = _source_files(data_cfg, data_dir)
    content = {
        "format": CACHE_FORMAT,
        "data": {"name": data_cfg.name, "lowercase": data_cfg.lowercase,
                 "files": [sha256_file(f) for f in files]},
        "tokenizer": {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in vars(tok_cfg).items()},
    }
    if data_cfg.name != "text":
        content["data"]["split"] = get_corpus(data_cfg.name).split_fractions
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:20]


def prepare_lm_corpus(data_cfg, tok_cfg, data_dir: os.PathLike, log=print) -> LMCorpus:
    data_dir = Path(data_dir)
    splits = read_lm_splits(data_cfg, data_dir)  # also fetches and validates the files
    if not any(line.strip() for line in splits["train"]):
        raise DataError(f"data.train of {data_cfg.name}: no text in the train split")
    cache_dir = data_dir / "cache" / f"lm-{data_cfg.name}-{tok_cfg.kind}-{cache_key(data_cfg, tok_cfg, data_dir)}"
    if (cache_dir / "stats.json").exists():
        log(f"tokenized corpus: cached in {cache_dir}")
        return _load_cached(cache_dir)
    log(f"fitting {tok_cfg.kind} tokenizer on {data_cfg.name}/train ({len(splits['train']):,} lines)")
    with atomic_directory(cache_dir) as tmp:
        tokenizer = fit_tokenizer(tok_cfg, splits["train"], tmp / "work", lowercase=data_cfg.lowercase)
        save_tokenizer(tokenizer, tmp / "tokenizer")
        stats = {}
        for split, lines in splits.items():
            ids = np.asarray(tokenizer.encode_lines(lines), dtype=np.int32)
            np.save(tmp / f"{split}.npy", ids)
            stats[split] = asdict(SplitStats.of(lines, len(ids)))
        (tmp / "stats.json").write_text(json.dumps(stats, indent=2), encoding="utf-8")
        import shutil

        shutil.rmtree(tmp / "work", ignore_errors=True)
    log(f"tokenized corpus cached in {cache_dir}")
    return _load_cached(cache_dir)


def _load_cached(cache_dir: Path) -> LMCorpus:
    stats = {s: SplitStats(**v) for s, v in json.loads((cache_dir / "stats.json").read_text()).items()}
    ids = {s: np.load(cache_dir / f"{s}.npy").astype(np.int64) for s in stats}
    return LMCorpus(load_tokenizer(cache_dir / "tokenizer"), ids, stats, cache_dir)


def corpus_stats(data_cfg, data_dir: os.PathLike) -> Dict[str, Dict]:
    """Lines, word tokens, vocabulary and OOV rate against the train vocabulary, per split."""
    splits = read_lm_splits(data_cfg, Path(data_dir))
    train_vocab = set()
    for line in splits["train"]:
        train_vocab.update(line.split())
    out: Dict[str, Dict] = {}
    for split, lines in splits.items():
        words = [w for line in lines for w in line.split()]
        oov = sum(1 for w in words if w not in train_vocab)
        out[split] = {
            "lines": len(lines),
            "tokens": len(words) + len(lines),  # one <eos> per line, the usual published count
            "vocab": len(set(words)) + 1,  # + <eos>
            "oov_rate": oov / max(1, len(words) + len(lines)),
            "chars": sum(len(line) for line in lines) + len(lines),
        }
    return out
