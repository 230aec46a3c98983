"""Reading what a command is given: whole files or stdin, the input format (detected or
chosen), and the input columns a tagger reads."""

from __future__ import annotations

import sys
from typing import Dict, List

from nlp_lstm.data.tag_files import detect_input, input_lines
from nlp_lstm.errors import NlpLstmError


def read_input(path: str, what: str) -> List[str]:
    """All lines of a file, or of stdin for '-' (data.tag_files.input_lines, collected)."""
    return [line for _, line in input_lines(path, what)]


def detected(args, lines, choices):
    """The input's lines; with --input auto, args.input set to the format detected from the
    name or the first lines, and one line on stderr saying which and why."""
    if args.input != "auto":
        return lines
    args.input, why, lines = detect_input(args.file, lines, choices)
    where = "stdin" if args.file == "-" else args.file
    print(f"input: {where} read as {args.input} ({why}); pass --input to choose", file=sys.stderr)
    return lines


def columns_to_read(tagger, input_format: str, predict_features: bool) -> Dict[str, int]:
    """The input columns to read from a file; the others are predicted by the taggers the
    package carries (model.feature_taggers), or else the input is refused."""
    if predict_features or input_format != "conll":
        unpredictable = [n for n in tagger.feature_columns if n not in tagger.feature_taggers]
        if unpredictable:
            raise NlpLstmError(
                f"this model also reads input column(s) {', '.join(unpredictable)} "
                f"(data.feature_columns={tagger.feature_columns}): give CoNLL input that has them"
            )
        return {}
    return tagger.feature_columns
