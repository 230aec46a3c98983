"""A language-modeling corpus: split lines -> fitted tokenizer -> id streams, cached.

The tokenizer and the encoded ids are cached under `<data_dir>/cache/`, keyed by a hash of
the corpus content and the tokenizer settings, so a second run with the same data and
tokenizer skips that work (and any change to either makes a new entry).

Corpora larger than memory work the same way: the text is streamed line by line (once to
fit the tokenizer, once to encode), ids are appended to a raw int32 file in chunks, and
training reads windows from a read-only memory map of that file.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import time
from dataclasses import asdict, astuple, dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional

import numpy as np

from nlp_lstm.data.fetch import fetch_corpus
from nlp_lstm.data.readers import iter_lines, open_for_reading
from nlp_lstm.data.registry import get_corpus
from nlp_lstm.data.tokenizers import Tokenizer, fit_tokenizer, load_tokenizer, save_tokenizer
from nlp_lstm.errors import ConfigError, DataError
from nlp_lstm.fileio import atomic_directory, sha256_file

CACHE_FORMAT = 2  # bump when the cached layout or the encoding changes (2: raw int32 .bin files)
ENCODE_CHUNK_LINES = 20_000
SPLITS = ("train", "valid", "test")


@dataclass
class SplitStats:
    """Sizes of one split, in the units every metric normalises by."""

    lines: int
    tokens: int  # tokenizer units, one end-of-line token per line included
    words: int  # whitespace words plus one <eos> per line (the word-level LM convention)
    chars: int  # characters plus one newline per line

    def __add__(self, other: "SplitStats") -> "SplitStats":
        return SplitStats(*(a + b for a, b in zip(astuple(self), astuple(other))))

    @classmethod
    def of(cls, lines: List[str], tokens: int) -> "SplitStats":
        return cls(lines=len(lines), tokens=tokens,
                   words=sum(len(line.split()) for line in lines) + len(lines),
                   chars=sum(len(line) for line in lines) + len(lines))


@dataclass
class LMCorpus:
    tokenizer: Tokenizer
    ids: Dict[str, np.ndarray]  # split -> int32 ids (a read-only memory map); a split may be absent
    stats: Dict[str, SplitStats]
    cache_dir: Path


def read_lm_splits(data_cfg, data_dir: Path) -> Dict[str, List[str]]:
    """The lines of each split of a registry corpus or of `data=text` files, in memory
    (for evaluation and statistics; training streams them)."""
    return {split: list(lines()) for split, lines in split_line_sources(data_cfg, data_dir).items()}


def split_line_sources(data_cfg, data_dir: Path) -> Dict[str, Callable[[], Iterator[str]]]:
    """For each split, a function that streams its lines."""
    if data_cfg.name == "text":
        files = {s: Path(getattr(data_cfg, s)) for s in SPLITS if getattr(data_cfg, s)}
        for split, path in files.items():
            open_for_reading(path, f"data.{split} file").close()  # fail now, naming the key
        sources = {s: partial(iter_lines, p, f"data.{s} file") for s, p in files.items()}
        if "valid" not in sources:
            sources.update(_held_out_sources(files["train"], data_cfg.dev_fraction))
        return sources
    try:
        corpus = get_corpus(data_cfg.name)
    except DataError as exc:
        raise ConfigError(f"config data.name: {exc}") from None
    if corpus.format != "lines":
        raise ConfigError(f"config data.name={data_cfg.name!r}: a {corpus.format} tagging corpus, not a text corpus for task=lm")
    paths = fetch_corpus(corpus.name, data_dir)
    if corpus.split_fractions is None:
        return {s: partial(iter_lines, p) for s, p in paths.items()}
    count = sum(1 for _ in iter_lines(paths["all"]))
    n_train = int(count * corpus.split_fractions[0])
    n_valid = int(count * corpus.split_fractions[1])
    bounds = {"train": (0, n_train), "valid": (n_train, n_train + n_valid), "test": (n_train + n_valid, count)}
    return {s: (lambda lo, hi: lambda: itertools.islice(iter_lines(paths["all"]), lo, hi))(lo, hi)
            for s, (lo, hi) in bounds.items()}


def _held_out_sources(path: Path, fraction: float) -> Dict[str, Callable[[], Iterator[str]]]:
    """train and valid streams of one file: its last `fraction` of lines (at least one) held
    out as valid, as Tiny Shakespeare's split does. A contiguous block, not scattered lines:
    running text keeps its context in valid, and no valid line sits between two train lines
    of the same document (which would flatter the perplexity). One counting pass, then both
    stream."""
    count = sum(1 for _ in iter_lines(path, "data.train file"))
    if count < 2:
        raise DataError(f"{path}: data.train file has {count} line(s), too few to hold out a dev split: "
                        "give data.valid")
    first_valid = count - max(1, int(count * fraction))

    def lines(valid: bool) -> Iterator[str]:
        for index, line in enumerate(iter_lines(path, "data.train file")):
            if (index >= first_valid) == valid:
                yield line

    return {"train": partial(lines, False), "valid": partial(lines, True)}


def encode_to_file(tokenizer: Tokenizer, lines: Iterable[str], path: Path) -> SplitStats:
    """Encode a stream of lines into a raw int32 file, a chunk of lines at a time."""
    stats = SplitStats(lines=0, tokens=0, words=0, chars=0)
    with open(path, "wb") as out:
        for chunk in iter(lambda: list(itertools.islice(lines, ENCODE_CHUNK_LINES)), []):
            ids = np.asarray(tokenizer.encode_lines(chunk), dtype=np.int32)
            ids.tofile(out)
            stats = stats + SplitStats.of(chunk, len(ids))
    return stats


def _source_files(data_cfg, data_dir: Path) -> List[str]:
    if data_cfg.name == "text":
        return [str(getattr(data_cfg, s)) for s in SPLITS if getattr(data_cfg, s)]
    corpus = get_corpus(data_cfg.name)
    return [str(Path(data_dir) / corpus.name / f.filename) for f in corpus.files.values()]


def cache_key(data_cfg, tok_cfg, data_dir: Path, tokenizer_dir: Optional[Path] = None) -> str:
    files = _source_files(data_cfg, data_dir)
    content = {
        "format": CACHE_FORMAT,
        "data": {"name": data_cfg.name, "lowercase": data_cfg.lowercase,
                 "files": [sha256_file(f) for f in files]},
        "tokenizer": {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in vars(tok_cfg).items()},
    }
    if tokenizer_dir is not None:  # a given tokenizer (model.init_from): its files are the key
        content["tokenizer"] = {p.name: sha256_file(p) for p in sorted(Path(tokenizer_dir).iterdir()) if p.is_file()}
    if data_cfg.name != "text":
        content["data"]["split"] = get_corpus(data_cfg.name).split_fractions
    elif not data_cfg.valid:  # valid is held out of train: which lines depends on these
        content["data"]["split"] = [data_cfg.dev_fraction]
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:20]


def prepare_lm_corpus(data_cfg, tok_cfg, data_dir: os.PathLike, log=print,
                      tokenizer_dir: Optional[Path] = None) -> LMCorpus:
    """`tokenizer_dir`: encode with this saved tokenizer (a package's) instead of fitting one."""
    data_dir = Path(data_dir)
    sources = split_line_sources(data_cfg, data_dir)  # also fetches and validates the files
    key = cache_key(data_cfg, tok_cfg, data_dir, tokenizer_dir)
    kind = load_tokenizer(tokenizer_dir).kind if tokenizer_dir is not None else tok_cfg.kind
    cache_dir = data_dir / "cache" / f"lm-{data_cfg.name}-{kind}-{key}"
    if (cache_dir / "stats.json").exists():
        log(f"tokenized corpus: cached in {cache_dir}")
        return _log_held_out(_load_cached(cache_dir), data_cfg, log)
    with atomic_directory(cache_dir) as tmp:
        if tokenizer_dir is not None:
            tokenizer = load_tokenizer(tokenizer_dir)
        else:
            log(f"fitting {tok_cfg.kind} tokenizer on {data_cfg.name}/train")
            tokenizer = fit_tokenizer(tok_cfg, sources["train"](), tmp / "work", lowercase=data_cfg.lowercase)
        save_tokenizer(tokenizer, tmp / "tokenizer")
        stats = {}
        for split, lines in sources.items():
            start = time.perf_counter()
            split_stats = encode_to_file(tokenizer, lines(), tmp / f"{split}.bin")
            seconds = max(1e-9, time.perf_counter() - start)
            log(f"encoded {split}: {split_stats.tokens:,} tokens in {seconds:.1f} s "
                f"({split_stats.tokens / seconds:,.0f} tokens/s)")
            stats[split] = asdict(split_stats)
        if not stats["train"]["tokens"] > stats["train"]["lines"]:
            raise DataError(f"data.train of {data_cfg.name}: no text in the train split")
        (tmp / "stats.json").write_text(json.dumps(stats, indent=2), encoding="utf-8")

        shutil.rmtree(tmp / "work", ignore_errors=True)
    log(f"tokenized corpus cached in {cache_dir}")
    return _log_held_out(_load_cached(cache_dir), data_cfg, log)


def _log_held_out(corpus: LMCorpus, data_cfg, log) -> LMCorpus:
    if data_cfg.name == "text" and not data_cfg.valid:
        log(f"text has no dev split: the last {corpus.stats['valid'].lines:,} train lines (data.dev_fraction="
            f"{data_cfg.dev_fraction}) are held out as valid")
    return corpus


def _load_cached(cache_dir: Path) -> LMCorpus:
    stats = {s: SplitStats(**v) for s, v in json.loads((cache_dir / "stats.json").read_text()).items()}
    ids = {s: np.memmap(cache_dir / f"{s}.bin", dtype=np.int32, mode="r") if stats[s].tokens else
           np.zeros(0, dtype=np.int32) for s in stats}
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
