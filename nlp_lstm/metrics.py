"""Metrics computed the standard way.

Perplexity is exp(total NLL / total tokens) over a whole split, never a mean of batch
perplexities. Subword and character models also report word-level perplexity (total NLL
over the number of words, one <eos> per line counted as a word) and bits per character
(total NLL / ln 2 over the number of characters, one newline per line counted), which do
not depend on the tokenizer and so compare models with different units.
"""

from __future__ import annotations

import math
from typing import Dict, Optional


def safe_exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return float("inf")


def lm_metrics(total_nll: float, tokens: int, words: Optional[int] = None, chars: Optional[int] = None,
               unit: str = "word") -> Dict[str, float]:
    if tokens <= 0:
        raise ValueError("no tokens were scored")
    loss = total_nll / tokens
    out = {"loss": loss, "ppl": safe_exp(loss), "tokens": tokens}
    if unit != "word":
        if words:
            out["word_ppl"] = safe_exp(total_nll / words)
        if chars:
            out["bpc"] = total_nll / (math.log(2) * chars)
    return out
