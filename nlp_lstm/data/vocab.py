"""A token <-> index mapping with the API torchtext users know.

torchtext's last release cannot be imported with current PyTorch, so the project keeps
the part of it people used: `lookup_indices`, `lookup_tokens`, `get_itos`, `get_stoi`,
`set_default_index` and `build_vocab_from_iterator`.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Dict, Iterable, List, Optional, Sequence

from nlp_lstm.fileio import atomic_write_json


class Vocab:
    def __init__(self, itos: Sequence[str], default_index: Optional[int] = None) -> None:
        self._itos: List[str] = list(itos)
        self._stoi: Dict[str, int] = {tok: i for i, tok in enumerate(self._itos)}
        if len(self._stoi) != len(self._itos):
            dupes = [t for t, c in Counter(self._itos).items() if c > 1]
            raise ValueError(f"duplicate tokens in vocabulary: {dupes[:5]}")
        self._default_index = default_index

    def __len__(self) -> int:
        return len(self._itos)

    def __contains__(self, token: str) -> bool:
        return token in self._stoi

    def __getitem__(self, token: str) -> int:
        index = self._stoi.get(token, self._default_index)
        if index is None:
            raise KeyError(f"token {token!r} is not in the vocabulary and no default index is set")
        return index

    def set_default_index(self, index: Optional[int]) -> None:
        self._default_index = index

    def get_default_index(self) -> Optional[int]:
        return self._default_index

    def lookup_indices(self, tokens: Iterable[str]) -> List[int]:
        stoi, default = self._stoi, self._default_index
        if default is None:
            return [self[t] for t in tokens]
        return [stoi.get(t, default) for t in tokens]

    def lookup_token(self, index: int) -> str:
        return self._itos[index]

    def lookup_tokens(self, indices: Iterable[int]) -> List[str]:
        return [self._itos[i] for i in indices]

    def get_itos(self) -> List[str]:
        return list(self._itos)

    def get_stoi(self) -> Dict[str, int]:
        return dict(self._stoi)

    def save(self, path: os.PathLike) -> None:
        atomic_write_json(path, {"itos": self._itos, "default_index": self._default_index})

    @classmethod
    def load(cls, path: os.PathLike) -> "Vocab":
        with open(path, encoding="utf-8") as handle:
            obj = json.load(handle)
        return cls(obj["itos"], obj["default_index"])


def build_vocab_from_counter(
    counter: Counter,
    min_freq: int = 1,
    specials: Sequence[str] = (),
    max_tokens: Optional[int] = None,
) -> Vocab:
    """Specials first, then tokens by descending frequency (ties: alphabetical, so the
    result does not depend on corpus order). `max_tokens` counts the specials."""
    ranked = sorted(((tok, n) for tok, n in counter.items() if n >= min_freq and tok not in specials),
                    key=lambda item: (-item[1], item[0]))
    itos = list(specials) + [tok for tok, _ in ranked]
    if max_tokens is not None:
        itos = itos[:max_tokens]
    return Vocab(itos)


def build_vocab_from_iterator(
    iterator: Iterable[Iterable[str]],
    min_freq: int = 1,
    specials: Sequence[str] = (),
    max_tokens: Optional[int] = None,
) -> Vocab:
    counter: Counter = Counter()
    for tokens in iterator:
        counter.update(tokens)
    return build_vocab_from_counter(counter, min_freq, specials, max_tokens)
