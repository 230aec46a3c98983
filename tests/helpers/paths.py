"""Where the tests find the checkout and the offline corpus mirror."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
MIRROR = os.environ.get("NLP_LSTM_DATA_MIRROR")
