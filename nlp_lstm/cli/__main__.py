"""`python -m nlp_lstm.cli ...` is the `nlp-lstm` command."""

import sys

from nlp_lstm.cli import main

sys.exit(main())
