"""Reading corpus files. Errors name the file and the line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator, List

from nlp_lstm.errors import DataError


def read_lines(path: os.PathLike, what: str = "corpus file") -> List[str]:
    """All lines of a UTF-8 text file, without line terminators (`iter_lines`, collected).

    Blank lines are kept: in WikiText they are part of the data (each one is an <eos>).
    """
    return list(iter_lines(path, what))


def open_for_reading(path: Path, what: str):
    """A binary handle on `path`, or a one-line DataError saying why not."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a {what}") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read {what}: {exc.strerror}") from None


def iter_lines(path: os.PathLike, what: str = "corpus file") -> Iterator[str]:
    """The lines of a UTF-8 text file one at a time (corpora larger than memory stream),
    split on "\n" only, a trailing "\r" and a leading BOM removed. Errors name the file
    and line; a file with nothing but whitespace is an error once the end is reached."""
    path = Path(path)
    with open_for_reading(path, what) as handle:
        yield from decoded_lines(handle, str(path), f"{what} is empty")


def decoded_lines(raw_lines: Iterable[bytes], where: str, if_empty: str) -> Iterator[str]:
    """UTF-8 lines of a binary stream (a file, stdin) as `iter_lines` describes; errors
    name `where` and the line; `if_empty`: the error once the end shows no text."""
    has_text = False
    for line_no, raw in enumerate(raw_lines, 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{where}:{line_no}: not valid UTF-8 (byte 0x{raw[exc.start]:02x})") from None
        if line_no == 1 and line.startswith("\ufeff"):
            line = line[1:]
        line = line[:-1] if line.endswith("\n") else line
        has_text = has_text or bool(line.strip())
        yield line.rstrip("\r")
    if not has_text:
        raise DataError(f"{where}: {if_empty}")
