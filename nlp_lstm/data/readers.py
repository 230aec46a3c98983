"""Reading corpus files. Errors name the file and the line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List

from nlp_lstm.errors import DataError


def read_lines(path: os.PathLike, what: str = "corpus file") -> List[str]:
    """All lines of a UTF-8 text file, without line terminators.

    Blank lines are kept: in WikiText they are part of the data (each one is an <eos>).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a {what}") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read {what}: {exc.strerror}") from None
    if not data.strip():
        raise DataError(f"{path}: {what} is empty")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_no = data.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{path}:{line_no}: not valid UTF-8 (byte 0x{data[exc.start]:02x})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline does not start another line
    return [line.rstrip("\r") for line in lines]
