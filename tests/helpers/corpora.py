"""Toy text corpora the tests write, and the tiny LM settings they train with."""

from __future__ import annotations

import random
from pathlib import Path
from typing import List

SUBJECTS = ["the cat", "a dog", "the old man", "my sister", "the committee", "a small bird", "the river"]
VERBS = ["sat on", "looked at", "walked past", "talked about", "jumped over", "found"]
OBJECTS = ["the mat", "a tree", "the house", "the report", "a red ball", "the bridge", "her friend"]
ENDINGS = [".", "today .", "again .", "yesterday ."]


def make_lines(n: int, seed: int) -> List[str]:
    """Sentences from a tiny grammar: a corpus an LM can learn in a few steps."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        if i % 17 == 0:
            lines.append("")  # blank lines are data (one <eos> each), as in WikiText
            continue
        lines.append(" ".join([rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS), rng.choice(ENDINGS)]))
    return lines


def write_lines(path: Path, lines: List[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


TINY_MODEL = [
    "model.emb_size=16",
    "model.hidden_size=24",
    "model.num_layers=2",
    "task.batch_size=4",
    "task.bptt=8",
    "task.eval_batch_size=3",
    "task.sample_tokens=10",
    "logger.histogram_every_n_steps=5",
    "logger.projector_tokens=20",
    "trainer.progress_bar=false",
    "trainer.log_every_n_steps=2",
    "trainer.num_threads=1",  # tiny models: more threads only add synchronisation
    # The LM default is auto (bf16 on a CPU with bf16 units); the tests recompute numbers in
    # fp32 and must not depend on the machine. test_config checks the default itself.
    "trainer.precision=fp32",
]


def text_data_overrides(corpus) -> List[str]:
    return [
        "data=text",
        f"data.train={corpus['train']}",
        f"data.valid={corpus['valid']}",
        f"data.test={corpus['test']}",
    ]
