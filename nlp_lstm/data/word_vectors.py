"""Pretrained word vectors from the standard files, streamed.

Formats (each optionally gzipped, recognised by its magic bytes):

- `glove`: text, one `word v1 ... vd` line per word, no header (GloVe).
- `word2vec_text`: text with a `count dim` first line (word2vec text, fastText `.vec`).
- `word2vec_binary`: a `count dim` line, then per word its UTF-8 bytes, a space and `dim`
  little-endian float32 (word2vec `.bin`).

`auto` picks `word2vec_binary` for a name ending in `.bin` (or `.bin.gz`), else looks at the
first line: two integers mean a header (`word2vec_text`), anything else is `glove`. A UTF-8
byte order mark before the first line is not part of it (as in the corpus readers).

Only the rows asked for are kept, so memory is the kept rows, whatever the file's size.
Files list words most frequent first (GloVe, word2vec and fastText all do), which is what
`max_new` relies on. A line is malformed when it has an empty field (two spaces in a row),
fewer than `dim` + 1 fields, more than that in word2vec text (its words hold no spaces;
GloVe 840B's words may, so a GloVe word is everything before the last `dim` fields), or
when a kept row's values are not finite numbers; the error names the file and line.
(Values of rows not kept are not parsed: parsing every number of a multi-GB file would
cost minutes.)

Why not gensim: it would add a large dependency for a loop of a few dozen lines, and it
loads the whole file (or `limit` rows) into memory instead of the rows a vocabulary needs.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np

from nlp_lstm.errors import DataError
from nlp_lstm.fileio import atomic_open, sha256_file

FORMATS = ("auto", "glove", "word2vec_text", "word2vec_binary")
_HEADER = re.compile(rb"^\s*(\d+)\s+(\d+)\s*$")
_BOM = b"\xef\xbb\xbf"


def _open(path: Path) -> BinaryIO:
    with open(path, "rb") as handle:
        gzipped = handle.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def _first_line(stream: BinaryIO) -> bytes:
    """The first line without a BOM: with one, a header would not match (the file read as
    GloVe of dimension 1) and the first GloVe word would be "\\ufeffthe"."""
    first = stream.readline()
    return first[len(_BOM):] if first.startswith(_BOM) else first


def detect_format(path: Path) -> str:
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    if name.endswith(".bin"):
        return "word2vec_binary"
    with _open(path) as stream:
        first = _first_line(stream)
    return "word2vec_text" if _HEADER.match(first) else "glove"


@dataclass
class _Row:
    line: int  # 1-based line (text) or vector number (binary)
    word: str
    values: object  # list of str (text) or bytes (binary), parsed only for kept rows


def _parse_header(path: Path, first: bytes) -> Tuple[int, int]:
    match = _HEADER.match(first)
    if not match:
        raise DataError(f"{path}:1: expected a 'count dim' header line, found {first[:60]!r}")
    count, dim = int(match.group(1)), int(match.group(2))
    if dim < 1:
        raise DataError(f"{path}:1: the header gives dimension {dim}")
    return count, dim


def _text_rows(path: Path, has_header: bool) -> Tuple[int, Optional[int], Iterator[_Row]]:
    """(dim, count from the header or None, rows)."""
    stream = _open(path)
    count, dim, start = None, None, 1
    first = _first_line(stream)
    if has_header:
        count, dim = _parse_header(path, first)
        first, start = stream.readline(), 2
    if dim is None:  # GloVe: the first line's field count gives the dimension
        fields = first.rstrip(b"\r\n").rstrip(b" ").split(b" ")
        if len(fields) < 2:
            raise DataError(f"{path}:1: expected a word and its vector, found {first[:60]!r}")
        dim = len(fields) - 1

    def rows() -> Iterator[_Row]:
        with stream:
            for number, raw in enumerate(_chain(first, stream), start=start):
                # fastText's .vec lines end with a space; GloVe 840B has a few words with
                # spaces inside, so the word is everything before the last `dim` fields.
                fields = raw.rstrip(b"\r\n").rstrip(b" ").split(b" ")
                if fields == [b""]:
                    continue  # a blank line (e.g. at the end) holds no vector
                if b"" in fields:
                    # Else "cat  1 2 3" is the word "cat " and "cat 1  2 3" the word "cat 1".
                    raise DataError(f"{path}:{number}: an empty field (two spaces in a row, or a space at "
                                    f"the start) in {raw[:60]!r}")
                if len(fields) < dim + 1:
                    raise DataError(f"{path}:{number}: expected a word and {dim} numbers, "
                                    f"found {len(fields)} field(s)")
                if has_header and len(fields) > dim + 1:
                    # word2vec text words hold no spaces: an extra number, or a header whose
                    # dimension is too small, would make words like "cat 4".
                    raise DataError(f"{path}:{number}: expected a word and {dim} numbers (the header's "
                                    f"dimension), found {len(fields)} fields")
                try:
                    word = b" ".join(fields[:-dim]).decode("utf-8")
                except UnicodeDecodeError:
                    raise DataError(f"{path}:{number}: the word is not valid UTF-8") from None
                yield _Row(number, word, fields[-dim:])

    return dim, count, rows()


def _chain(first: bytes, stream: Iterable[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from stream


def _binary_rows(path: Path) -> Tuple[int, Optional[int], Iterator[_Row]]:
    stream = _open(path)
    count, dim = _parse_header(path, _first_line(stream))
    width = 4 * dim

    def rows() -> Iterator[_Row]:
        with stream:
            number = 0
            while True:
                word = bytearray()
                while True:
                    byte = stream.read(1)
                    if not byte:
                        if word.strip():
                            raise DataError(f"{path}: vector {number + 1}: the file ends inside a word")
                        return
                    if byte == b" ":
                        break
                    if byte != b"\n" or word:  # a newline may end the previous vector
                        word += byte
                number += 1
                values = stream.read(width)
                if len(values) < width:
                    raise DataError(f"{path}: vector {number} ({word[:40]!r}): the file ends inside its "
                                    f"{dim} float32 values (truncated?)")
                try:
                    text = word.decode("utf-8")
                except UnicodeDecodeError:
                    raise DataError(f"{path}: vector {number}: the word is not valid UTF-8") from None
                yield _Row(number, text, bytes(values))

    return dim, count, rows()


@dataclass
class WordVectors:
    """The rows of a vector file that a vocabulary uses."""

    path: Path
    format: str
    dim: int
    sha256: str
    vectors: Dict[str, np.ndarray]  # vocabulary word -> its vector (float32)
    new_words: List[str] = field(default_factory=list)  # the file's top words not in the train vocabulary
    rows_read: int = 0

    def scale(self) -> float:
        """Standard deviation of the kept values: random rows for words without a vector
        start at this scale, so they look like the others to the network."""
        if not self.vectors:
            return 0.1
        stacked = np.stack(list(self.vectors.values()))
        return float(stacked.std()) or 0.1

    def describe(self) -> Dict[str, object]:
        return {"file": self.path.name, "sha256": self.sha256, "format": self.format, "dim": self.dim,
                "rows_read": self.rows_read, "new_words": len(self.new_words)}


def read_word_vectors(path, vocabulary: Iterable[str], fmt: str = "auto", max_new: int = 0,
                      lowercase: bool = False) -> WordVectors:
    """The vectors for `vocabulary`, plus the first `max_new` words of the file that it
    lacks (lowercased when `lowercase`, the tagger's lowercase_words) with theirs.

    Lookup for a vocabulary word: the same string in the file; failing that, the first
    (most frequent) word of the file that equals it ignoring case."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such word-vector file (model.word_vectors)")
    if fmt not in FORMATS:
        raise DataError(f"{path}: unknown word-vector format {fmt!r} (one of {', '.join(FORMATS)})")
    fmt = detect_format(path) if fmt == "auto" else fmt
    try:
        if fmt == "word2vec_binary":
            dim, count, rows = _binary_rows(path)
        else:
            dim, count, rows = _text_rows(path, has_header=fmt == "word2vec_text")
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: unreadable word-vector file ({exc})") from None
    words = dict.fromkeys(vocabulary)  # ordered set
    by_lower: Dict[str, str] = {}
    for word in words:
        by_lower.setdefault(word.lower(), word)
    exact: Dict[str, np.ndarray] = {}
    ignoring_case: Dict[str, np.ndarray] = {}  # lowercased word -> first vector found
    new_words: List[str] = []
    number = 0
    try:
        for number, row in enumerate(rows, start=1):
            if number <= max_new:
                key = row.word.lower() if lowercase else row.word
                if key not in words:
                    words[key] = None
                    new_words.append(key)
                    by_lower.setdefault(key.lower(), key)
            in_vocabulary = row.word in words
            lower = row.word.lower()
            wanted_ignoring_case = lower in by_lower and lower not in ignoring_case
            if in_vocabulary or wanted_ignoring_case:
                vector = _parse(path, row, dim, fmt)
                if in_vocabulary:
                    exact.setdefault(row.word, vector)
                if wanted_ignoring_case:
                    ignoring_case[lower] = vector
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: unreadable word-vector file after row {number} ({exc})") from None
    if count is not None and number != count:
        raise DataError(f"{path}: the header announces {count} vectors, the file holds {number} (truncated?)")
    if number == 0:
        raise DataError(f"{path}: no vectors in the file")
    vectors = {}
    for word in words:
        vector = exact.get(word)
        if vector is None:
            vector = ignoring_case.get(word.lower())
        if vector is not None:
            vectors[word] = vector
    return WordVectors(path, fmt, dim, sha256_file(path), vectors, new_words, number)


def _parse(path: Path, row: _Row, dim: int, fmt: str) -> np.ndarray:
    if fmt == "word2vec_binary":
        vector = np.frombuffer(row.values, dtype="<f4").astype(np.float32)
        where = f"{path}: vector {row.line}"
    else:
        where = f"{path}:{row.line}"
        try:
            vector = np.array([float(v) for v in row.values], dtype=np.float32)
        except ValueError:
            bad = next(v for v in row.values if not _is_float(v))
            raise DataError(f"{where}: {bad[:30]!r} is not a number (the vector of {row.word[:40]!r})") from None
    if not np.isfinite(vector).all():
        raise DataError(f"{where}: the vector of {row.word[:40]!r} holds NaN or infinity")
    return vector


def _is_float(text: bytes) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def write_word2vec_text(path: Path, words: List[str], matrix: np.ndarray) -> None:
    """word2vec text format (`count dim` header), written atomically. Values keep 7
    significant digits: float32 round-trips to within one unit in its last place."""
    with atomic_open(path, "w") as handle:
        handle.write(f"{len(words)} {matrix.shape[1]}\n")
        for word, row in zip(words, matrix):
            handle.write(word + " " + " ".join(f"{v:.7g}" for v in row.tolist()) + "\n")
