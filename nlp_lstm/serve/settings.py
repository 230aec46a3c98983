"""What `nlp-lstm serve` was asked for: one value object, which also reaches each worker
process (`--workers K`) as JSON in an environment variable."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import List

ENVIRONMENT_KEY = "NLP_LSTM_SERVE_SETTINGS"  # how worker processes learn the settings


@dataclass(frozen=True)
class ServeSettings:
    model: str
    host: str = "127.0.0.1"  # this machine only, unless --host says otherwise
    port: int = 8000
    device: str = "auto"
    precision: str = "auto"  # taggers; LMs compute in fp32
    max_batch_size: int = 256  # sentences the model runs at once (nlp-lstm tag's --batch-size default)
    max_batch_tokens: int = 16384  # ...and tokens: a long sentence fills a batch alone, never cut
    max_wait_ms: float = 5.0  # how long the first sentence of a batch waits for others
    max_queue: int = 8192  # sentences waiting; past it a request gets 503 with Retry-After
    max_body_mb: float = 4.0  # request bodies past it get 413
    workers: int = 1  # processes, each with its own model
    cors: List[str] = field(default_factory=list)  # origins allowed to call from a browser

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_environment(cls) -> "ServeSettings":
        return cls(**json.loads(os.environ[ENVIRONMENT_KEY]))
