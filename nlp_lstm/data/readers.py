"""Reading corpus files. Errors name the file and the line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, List

from nlp_lstm.errors import DataError


def read_lines(path: os.PathLike, what: str = "corpus file") -> List[str]:
    """All lines of a UTF-8 text file, without line terminators.

    Blank lines are kept: in WikiText they are part of the data (each one is an <eos>).
    """
    path = Path(path)
    with open_for_reading(path, what) as handle:
        data = handle.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_no = data.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{path}:{line_no}: not valid UTF-8 (byte 0x{data[exc.start]:02x})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():  # nothing but whitespace (Unicode's, as str.strip sees it)
        raise DataError(f"{path}: {what} is empty")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline does not start another line
    return [line.rstrip("\r") for line in lines]


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
    """The lines of a UTF-8 text file one at a time, exactly as `read_lines` gives them,
    for corpora larger than memory. Errors name the file and line; an empty file is an
    error once the end is reached."""
    path = Path(path)
    handle = open_for_reading(path, what)
    has_text = False
    with handle:
        for line_no, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}:{line_no}: not valid UTF-8 (byte 0x{raw[exc.start]:02x})") from None
            if line_no == 1 and line.startswith("\ufeff"):
                line = line[1:]
            line = line[:-1] if line.endswith("\n") else line
            has_text = has_text or bool(line.strip())
            yield line.rstrip("\r")
    if not has_text:
        raise DataError(f"{path}: {what} is empty")
