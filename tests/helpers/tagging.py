"""Toy tagged corpora written by the tests: a tiny grammar with POS and chunk tags."""

from __future__ import annotations

import random
from pathlib import Path
from typing import List, Tuple

DET = ["the", "a", "this", "every"]
ADJ = ["old", "red", "small", "happy"]
NOUN = ["cat", "dog", "man", "house", "report", "river", "bird", "committee"]
VERB = ["saw", "found", "likes", "chased", "reads"]
PREP = ["on", "near", "under", "with"]
NAMES = ["Paris", "London", "Alice", "Bob", "Google"]


def noun_phrase(rng) -> List[Tuple[str, str, str]]:
    if rng.random() < 0.2:
        name = rng.choice(NAMES)
        return [(name, "NNP", "B-NP")]
    words = [(rng.choice(DET), "DT", "B-NP")]
    if rng.random() < 0.4:
        words.append((rng.choice(ADJ), "JJ", "I-NP"))
    words.append((rng.choice(NOUN), "NN", "I-NP"))
    return words


def make_sentence(rng) -> List[Tuple[str, str, str]]:
    tokens = noun_phrase(rng) + [(rng.choice(VERB), "VBD", "B-VP")] + noun_phrase(rng)
    if rng.random() < 0.5:
        tokens += [(rng.choice(PREP), "IN", "B-PP")] + noun_phrase(rng)
    return tokens + [(".", ".", "O")]


def write_conll(path: Path, n: int, seed: int, separator: str = " ", docstart: bool = False) -> Path:
    rng = random.Random(seed)
    lines = ["-DOCSTART- -X- -X- O", ""] if docstart else []
    for _ in range(n):
        lines += [separator.join(t) for t in make_sentence(rng)] + [""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def tagging_corpus(directory: Path) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    return {
        "train": write_conll(directory / "train.txt", 300, 1, docstart=True),
        "valid": write_conll(directory / "dev.txt", 40, 2, separator="\t"),
        "test": write_conll(directory / "test.txt", 40, 3),
    }


TINY_TAGGER = [
    "model.emb_size=16",
    "model.hidden_size=16",
    "model.char_emb_size=8",
    "model.char_hidden_size=8",
    "model.feature_emb_size=4",
    "task.batch_size=16",
    "trainer.progress_bar=false",
    "trainer.log_every_n_steps=5",
    "trainer.num_threads=1",
    "optim.lr=0.01",
]


def conll_overrides(corpus: dict, pos_feature: bool = False) -> List[str]:
    """Chunking from column 2; with `pos_feature`, the POS column 1 is an input feature."""
    out = [
        "task=tagging",
        "data=conll",
        f"data.train={corpus['train']}",
        f"data.valid={corpus['valid']}",
        f"data.test={corpus['test']}",
        "data.word_column=0",
        "data.tag_column=2",
    ]
    return out + (["+data.feature_columns.pos=1"] if pos_feature else [])


def untrained_package(overrides, run_dir, package):
    """A package exported straight from a built task (no training): enough for tests of
    what a package holds and how it is loaded."""
    import torch

    from nlp_lstm.train_entry import build_task, compose_config

    build_task(compose_config(overrides, run_dir), torch.device("cpu")).export(package)
    return package
