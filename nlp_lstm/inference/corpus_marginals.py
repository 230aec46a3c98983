"""A CRF tagger's marginals in the corpus's tag scheme.

The model may predict in another scheme than the corpus's (IOBES for an IOB2 corpus); the
probability of a corpus-scheme tag at t is then a sum of the model's marginals, over its
tags at t or, where the tag before decides (IOB1's B or I), over its tag pairs at (t-1, t).
"""

from __future__ import annotations

from typing import List, Tuple

import torch

from nlp_lstm.data.tag_schemes import convert
from nlp_lstm.errors import NlpLstmError


def scheme_tables(crf, itos: List[str], labels: List[str], scheme: str, corpus_scheme: str) -> Tuple:
    """How the corpus-scheme tag at t follows from the model's tags (`itos`, in `scheme`), as
    0/1 matrices onto `labels`: ("unary", U (N, C)) where the model's tag at t decides it (the
    same scheme; IOBES -> IOB2: S-X is B-X, E-X is I-X, so P(B-X) = P(B-X) + P(S-X)), else
    ("pairs", first (N, C), pairs (N * N, C)) from the tags at (t - 1, t) (IOB1 needs the tag
    before to choose B or I). An IOBES corpus from a model in another scheme would need the
    tag after as well: refused."""
    index = {t: c for c, t in enumerate(labels)}

    def matrix(targets: List[str]) -> torch.Tensor:
        table = torch.zeros(len(targets), len(labels), dtype=torch.float64)
        table[torch.arange(len(targets)), torch.tensor([index[t] for t in targets])] = 1.0
        return table

    if scheme in ("none", corpus_scheme):
        return ("unary", matrix(itos))
    if corpus_scheme == "iobes":
        raise NlpLstmError(
            f"marginals in the corpus's iobes scheme need a model trained in iobes "
            f"(task.train_scheme); this one was trained in {scheme}"
        )
    allowed, allowed_start = crf.allowed.tolist(), crf.allowed_start.tolist()
    first = [convert([b], scheme, corpus_scheme)[0] for b in itos]
    pairs = [[convert([a, b], scheme, corpus_scheme)[1] for b in itos] for a in itos]
    unary = []
    for j in range(len(itos)):
        outcomes = ({first[j]} if allowed_start[j] else set()) | {
            pairs[i][j] for i in range(len(itos)) if allowed[i][j]
        }
        unary.append(outcomes.pop() if len(outcomes) == 1 else None)
    if all(u is not None for u in unary):
        return ("unary", matrix(unary))
    return ("pairs", matrix(first), matrix([t for row in pairs for t in row]))


def corpus_marginals(crf, tables: Tuple, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """P(tag at t | sentence) over the corpus scheme's tags, (B, T, C), float64."""
    kind, *matrices = tables
    probs = crf.marginals(emissions, mask).double()
    matrices = [t.to(probs.device) for t in matrices]
    if kind == "unary":
        return probs @ matrices[0]
    first, pairs = matrices  # the first word from its own tag; each later one from (tag before, its tag)
    return torch.cat([probs[:, :1] @ first, crf.pair_marginals(emissions, mask).flatten(2) @ pairs], dim=1)
