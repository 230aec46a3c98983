"""Fetch registry corpora into a local cache, verifying checksums.

Sources, in order: the cache itself (re-verified), then the mirror named by
NLP_LSTM_DATA_MIRROR (a directory or URL prefix laid out `<dataset>/<file>`), then the
canonical URL. Every file is verified against the registry's sha256 before it is renamed
into place, so an interrupted or corrupt download never looks complete.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, Optional

from nlp_lstm.data.registry import Corpus, CorpusFile, get_corpus, mirror_dir_name
from nlp_lstm.errors import DataError
from nlp_lstm.fileio import atomic_open, sha256_file

MIRROR_ENV = "NLP_LSTM_DATA_MIRROR"
DATA_DIR_ENV = "NLP_LSTM_DATA_DIR"


def default_data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV, "data"))


def fetch_corpus(name: str, data_dir: Optional[os.PathLike] = None, mirror: Optional[str] = None) -> Dict[str, Path]:
    """Return {split: local path} for a registry corpus, fetching what is missing."""
    corpus = get_corpus(name)
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    mirror = mirror if mirror is not None else os.environ.get(MIRROR_ENV)
    return {split: _fetch_file(corpus, f, data_dir / corpus.name, mirror) for split, f in corpus.files.items()}


def safe_target(target_dir: Path, filename: str) -> Path:
    """`target_dir / filename`, refusing a name that would land outside target_dir
    (absolute, `..`, a symlink out): fetched names come from a registry or a mirror."""
    target = (target_dir / filename).resolve()
    if not target.is_relative_to(target_dir.resolve()) or target == target_dir.resolve():
        raise DataError(f"{filename!r}: a corpus file name must stay inside {target_dir}")
    return target_dir / filename


def _fetch_file(corpus: Corpus, cfile: CorpusFile, target_dir: Path, mirror: Optional[str]) -> Path:
    target = safe_target(target_dir, cfile.filename)
    if target.exists():
        if sha256_file(target) == cfile.sha256:
            return target
        # A cached file that no longer matches is replaced, not trusted.
        target.unlink()
    sources = []
    if mirror:
        base = f"{mirror.rstrip('/')}/{mirror_dir_name(corpus)}/{cfile.filename}"
        sources.append((base, False))
        if cfile.gzip:
            sources.append((base + ".gz", True))
    sources.append((cfile.url, cfile.gzip))
    failures = []
    for source, compressed in sources:
        try:
            _copy_verified(source, compressed, target, cfile.sha256)
            return target
        except FileNotFoundError:
            failures.append(f"{source}: not found")
        except (OSError, urllib.error.URLError, EOFError, gzip.BadGzipFile) as exc:
            failures.append(f"{source}: {getattr(exc, 'reason', None) or exc}")
        except DataError as exc:
            failures.append(str(exc))
    raise DataError(f"could not fetch {corpus.name}/{cfile.filename}: " + "; ".join(failures))


def _open_source(source: str):
    if "://" in source:
        return urllib.request.urlopen(source, timeout=60)  # noqa: S310 (registry/mirror URLs only)
    return open(source, "rb")


def _copy_verified(source: str, compressed: bool, target: Path, sha256: str) -> None:
    with _open_source(source) as raw:
        stream = gzip.GzipFile(fileobj=raw) if compressed else raw
        digest = hashlib.sha256()
        with atomic_open(target, "wb") as out:
            while block := stream.read(1 << 20):
                digest.update(block)
                out.write(block)
            got = digest.hexdigest()
            if got != sha256:
                # Raising inside atomic_open removes the temporary file: nothing is left.
                raise DataError(f"{source}: checksum mismatch (sha256 {got[:12]}…, expected {sha256[:12]}…)")
