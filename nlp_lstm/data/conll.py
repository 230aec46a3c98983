"""Readers for tagged corpora: CoNLL column files and CoNLL-U.

Both return whole sentences and never drop one (a 1,000-token sentence is kept as is).
Errors name the file and the line.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from nlp_lstm.data.readers import read_lines
from nlp_lstm.errors import DataError


# `nlp-lstm tag --format conll` writes `# line = N` before each sentence (the input line it
# came from). The readers skip exactly this form, so tagged output reads back; any other
# line starting with "#" stays a token line ("#" is a word in CoNLL-2000).
LINE_COMMENT = re.compile(r"# line = \d+")


def line_comment(line_no: int) -> str:
    return f"# line = {line_no}"


def is_line_comment(line: str) -> bool:
    return LINE_COMMENT.fullmatch(line.strip()) is not None


@dataclass
class Sentence:
    words: List[str]
    tags: List[str]
    # Extra input columns (e.g. CoNLL-2000's POS for chunking), by column name.
    features: Dict[str, List[str]] = field(default_factory=dict)
    line: int = 0  # line number of the first token, for error messages
    token_lines: List[int] = field(default_factory=list)  # each token's line, for errors about one token


def read_conll(path: os.PathLike, word_column: int = 0, tag_column: int = -1,
               feature_columns: Optional[Dict[str, int]] = None, what: str = "CoNLL file") -> List[Sentence]:
    """Column files: any whitespace separates columns; any whitespace-only line ends a
    sentence; `-DOCSTART-` lines and `# line = N` comments (`nlp-lstm tag` output) are
    skipped. Every token line must have as many columns
    as the first one."""
    path = Path(path)
    feature_columns = feature_columns or {}
    sentences: List[Sentence] = []
    current: Optional[Sentence] = None
    n_columns = None
    needed = [word_column, tag_column, *feature_columns.values()]
    for line_no, line in enumerate(read_lines(path, what), start=1):
        columns = line.split()
        if not columns:
            if current is not None:
                sentences.append(current)
                current = None
            continue
        if columns[0] == "-DOCSTART-" or is_line_comment(line):
            continue
        if n_columns is None:
            n_columns = len(columns)
            for index in needed:
                if not -n_columns <= index < n_columns:
                    raise DataError(f"{path}:{line_no}: {n_columns} column(s), but column {index} is configured "
                                    f"(data.word_column / data.tag_column / data.feature_columns)")
            for name, index in feature_columns.items():
                # An input column that is the tag column hands the model its answer.
                if index % n_columns == tag_column % n_columns:
                    raise DataError(f"{path}:{line_no}: data.feature_columns.{name}={index} is the tag column "
                                    f"(data.tag_column={tag_column}); the model would read the answer")
        elif len(columns) != n_columns:
            raise DataError(f"{path}:{line_no}: {len(columns)} column(s), expected {n_columns} as on the first token line")
        if current is None:
            current = Sentence([], [], {name: [] for name in feature_columns}, line_no)
        current.words.append(columns[word_column])
        current.token_lines.append(line_no)
        current.tags.append(columns[tag_column])
        for name, index in feature_columns.items():
            current.features[name].append(columns[index])
    if current is not None:
        sentences.append(current)
    if not sentences:
        raise DataError(f"{path}: no sentences (a {what} needs token lines)")
    return sentences


CONLLU_FIELDS = {"upos": 3, "xpos": 4}


def read_conllu(path: os.PathLike, tag_field: str = "upos", what: str = "CoNLL-U file") -> List[Sentence]:
    """CoNLL-U: ten tab-separated fields; comments (#) kept out; multiword-token ranges
    (`3-4`) and empty nodes (`8.1`) skipped, so the integer-ID words are tagged."""
    if tag_field not in CONLLU_FIELDS:
        raise DataError(f"CoNLL-U tag field must be one of {', '.join(CONLLU_FIELDS)}, got {tag_field!r}")
    path = Path(path)
    column = CONLLU_FIELDS[tag_field]
    sentences: List[Sentence] = []
    current: Optional[Sentence] = None
    for line_no, line in enumerate(read_lines(path, what), start=1):
        if not line.strip():
            if current is not None:
                sentences.append(current)
                current = None
            continue
        if line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 10:
            raise DataError(f"{path}:{line_no}: {len(fields)} tab-separated field(s), CoNLL-U needs 10")
        token_id = fields[0]
        if "-" in token_id or "." in token_id:
            continue  # multiword-token range or empty node
        if not token_id.isdigit():
            raise DataError(f"{path}:{line_no}: token ID {token_id!r} is not an integer")
        if current is None:
            current = Sentence([], [], {}, line_no)
        current.words.append(fields[1])
        current.token_lines.append(line_no)
        current.tags.append(fields[column])
    if current is not None:
        sentences.append(current)
    if not sentences:
        raise DataError(f"{path}: no sentences")
    return sentences
