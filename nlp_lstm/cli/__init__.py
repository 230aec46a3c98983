"""`nlp-lstm`: use trained models and manage corpora.

nlp-lstm generate MODEL --prompt "The history of" --max-tokens 50
nlp-lstm score MODEL FILE
nlp-lstm evaluate MODEL --split test
echo "The cat sat on the mat ." | nlp-lstm tag MODEL --format conll
nlp-lstm serve MODEL --port 8000
nlp-lstm data fetch wikitext2 | data stats wikitext2 | data list
"""

from __future__ import annotations

import importlib
import sys
from typing import List, Optional

from nlp_lstm.cli.parser import build_parser
from nlp_lstm.errors import NlpLstmError

# command -> the module of nlp_lstm.cli that runs it (a function of the command's name).
# A command's module is imported once the arguments parse, so `--help` and usage errors
# answer without importing torch.
COMMANDS = {
    "generate": "lm",
    "score": "lm",
    "evaluate": "evaluate",
    "tag": "tag",
    "bench": "bench",
    "vectors": "export",
    "export": "export",
    "data": "data",
    "serve": "serve",
}


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    command = getattr(importlib.import_module(f"nlp_lstm.cli.{COMMANDS[args.command]}"), args.command)
    try:
        command(args)
    except NlpLstmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `nlp-lstm ... | head`
        return 0
    return 0
