"""Metrics computed the standard way.

Perplexity is exp(total NLL / total tokens) over a whole split, never a mean of batch
perplexities. Subword and character models also report word-level perplexity (total NLL
over the number of words, one <eos> per line counted as a word) and bits per character
(total NLL / ln 2 over the number of characters, one newline per line counted), which do
not depend on the tokenizer and so compare models with different units.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from nlp_lstm.data.conll import Sentence
from nlp_lstm.data.tag_schemes import strict_spans
from nlp_lstm.fileio import atomic_write_text


def safe_exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return float("inf")


def lm_metrics(
    total_nll: float, tokens: int, words: Optional[int] = None, chars: Optional[int] = None, unit: str = "word"
) -> Dict[str, float]:
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


# --------------------------------------------------------------------------- tagging
def _conlleval_split(tag: str):
    """conlleval's reading of a tag: 'B-NP' -> ('B', 'NP'), 'O' -> ('O', ''), 'NN' -> ('NN', '')."""
    prefix, sep, typ = tag.partition("-")
    return (prefix, typ) if sep else (tag, "")


def _chunk_end(prev_tag: str, tag: str, prev_type: str, typ: str) -> bool:
    # conlleval.pl endOfChunk, rule for rule (its E is IOE's, used between chunks of a type)
    return (
        (prev_tag, tag) in {("B", "B"), ("B", "O"), ("I", "B"), ("I", "O"), ("E", "E"), ("E", "I"), ("E", "O")}
        or (prev_tag not in ("O", ".") and prev_type != typ)
        or prev_tag in ("]", "[")
    )


def _chunk_start(prev_tag: str, tag: str, prev_type: str, typ: str) -> bool:
    # conlleval.pl startOfChunk, rule for rule
    return (
        (prev_tag, tag) in {("B", "B"), ("I", "B"), ("O", "B"), ("O", "I"), ("E", "E"), ("E", "I"), ("O", "E")}
        or (tag not in ("O", ".") and prev_type != typ)
        or tag in ("[", "]")
    )


def _iobes_chunk_end(prev_tag: str, tag: str, prev_type: str, typ: str) -> bool:
    # IOBES: a chunk ends after E and S, and before B, S and O; conlleval's leniency kept
    # (a change of type ends a chunk; an I or E that starts nothing still continues one).
    return (
        prev_tag in ("E", "S")
        or (prev_tag in ("B", "I") and tag in ("B", "S", "O"))
        or (prev_tag not in ("O", ".") and prev_type != typ)
    )


def _iobes_chunk_start(prev_tag: str, tag: str, prev_type: str, typ: str) -> bool:
    # IOBES: B and S always start a chunk; an I or E starts one where none is open (after
    # O, E or S), as conlleval reads an I after O.
    return (
        tag in ("B", "S")
        or (prev_tag in ("E", "S", "O") and tag in ("I", "E"))
        or (tag not in ("O", ".") and prev_type != typ)
    )


def _prf(correct: int, guessed: int, gold: int) -> Dict[str, float]:
    precision = 100.0 * correct / guessed if guessed else 0.0
    recall = 100.0 * correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def conlleval(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]], scheme: str = "iob2") -> Dict:
    """Chunk precision/recall/F1 and token accuracy with exactly conlleval.pl's semantics,
    in percent. `gold` and `predicted` are lists of sentences (lists of tags).

    conlleval.pl reads IOB1 and IOB2 (and plain labels, for accuracy). Its `E` is IOE's, so
    for `scheme="iobes"` chunk boundaries follow IOBES instead (a chunk closes at E and S),
    with conlleval's leniency otherwise, as seqeval's default mode reads IOBES.
    """
    if scheme == "iobes":
        chunk_end, chunk_start = _iobes_chunk_end, _iobes_chunk_start
    else:
        chunk_end, chunk_start = _chunk_end, _chunk_start
    correct_chunks = found_gold = found_guessed = correct_tags = tokens = 0
    per_type: Dict[str, List[int]] = {}  # type -> [correct, guessed, gold]

    def bump(typ: str, index: int) -> None:
        per_type.setdefault(typ, [0, 0, 0])[index] += 1

    for gold_tags, pred_tags in zip(gold, predicted, strict=True):
        if len(gold_tags) != len(pred_tags):
            raise ValueError("a predicted sentence differs in length from its gold sentence")
        in_correct = False
        last_gold, last_gold_type, last_guess, last_guess_type = "O", "", "O", ""
        # each sentence ends with a boundary, which conlleval reads as O / O
        for g, p in list(zip(gold_tags, pred_tags)) + [(None, None)]:
            gold_tag, gold_type = ("O", "") if g is None else _conlleval_split(g)
            guess_tag, guess_type = ("O", "") if p is None else _conlleval_split(p)
            gold_end = chunk_end(last_gold, gold_tag, last_gold_type, gold_type)
            guess_end = chunk_end(last_guess, guess_tag, last_guess_type, guess_type)
            gold_start = chunk_start(last_gold, gold_tag, last_gold_type, gold_type)
            guess_start = chunk_start(last_guess, guess_tag, last_guess_type, guess_type)
            if in_correct:
                if gold_end and guess_end and last_guess_type == last_gold_type:
                    in_correct = False
                    correct_chunks += 1
                    bump(last_gold_type, 0)
                elif gold_end != guess_end or guess_type != gold_type:
                    in_correct = False
            if gold_start and guess_start and guess_type == gold_type:
                in_correct = True
            if gold_start:
                found_gold += 1
                bump(gold_type, 2)
            if guess_start:
                found_guessed += 1
                bump(guess_type, 1)
            if g is not None:
                if gold_tag == guess_tag and gold_type == guess_type:
                    correct_tags += 1
                tokens += 1
            last_gold, last_gold_type, last_guess, last_guess_type = gold_tag, gold_type, guess_tag, guess_type
    out: Dict = {
        "acc": 100.0 * correct_tags / tokens if tokens else 0.0,
        "tokens": tokens,
        "chunks_gold": found_gold,
        "chunks_predicted": found_guessed,
        "chunks_correct": correct_chunks,
    }
    out.update(_prf(correct_chunks, found_guessed, found_gold))
    out["per_label"] = {typ: {**_prf(*counts), "support": counts[2]} for typ, counts in sorted(per_type.items())}
    labels = [v for v in out["per_label"].values() if v["support"]]
    out["macro_f1"] = sum(v["f1"] for v in labels) / len(labels) if labels else 0.0
    return out


def strict_span_f1(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]], scheme: str) -> Dict[str, float]:
    """Exact-span F1 where only well-formed spans count (an I-X after O opens none): the
    stricter reading of seqeval's strict mode."""
    gold_spans = {(i, *s) for i, tags in enumerate(gold) for s in strict_spans(tags, scheme)}
    pred_spans = {(i, *s) for i, tags in enumerate(predicted) for s in strict_spans(tags, scheme)}
    return _prf(len(gold_spans & pred_spans), len(pred_spans), len(gold_spans))


def confusion_matrix(
    gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]], labels: Sequence[str]
) -> List[List[int]]:
    """Token counts: rows gold label, columns predicted label, in `labels` order (labels
    missing from the list are counted in a final 'other' row/column)."""
    index = {label: i for i, label in enumerate(labels)}
    other = len(labels)
    matrix = [[0] * (other + 1) for _ in range(other + 1)]
    for gold_tags, pred_tags in zip(gold, predicted):
        for g, p in zip(gold_tags, pred_tags):
            matrix[index.get(g, other)][index.get(p, other)] += 1
    return matrix


def write_conll_predictions(path: Path, sentences: Sequence[Sentence], predicted: Sequence[Sequence[str]]) -> None:
    """conlleval's input format: WORD GOLD PREDICTED, a blank line between sentences."""
    lines = []
    for sentence, tags in zip(sentences, predicted):
        lines.extend(f"{w} {g} {p}" for w, g, p in zip(sentence.words, sentence.tags, tags))
        lines.append("")
    atomic_write_text(path, "\n".join(lines) + "\n")


def tagging_metrics(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]], scheme: str) -> Dict[str, Any]:
    """A tagger's numbers: accuracy and, for tags with spans, conlleval's precision/recall/F1
    (micro and macro), strict F1 and each type's F1 (`f1_<type>` and `per_label`)."""
    result = conlleval(gold, predicted, scheme)
    metrics: Dict[str, Any] = {"acc": result["acc"]}
    if scheme != "none":
        metrics.update({k: result[k] for k in ("precision", "recall", "f1", "macro_f1")})
        metrics["strict_f1"] = strict_span_f1(gold, predicted, scheme)["f1"]
        metrics.update({f"f1_{label}": v["f1"] for label, v in result["per_label"].items()})
        metrics["per_label"] = result["per_label"]
    return metrics
