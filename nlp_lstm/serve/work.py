"""What the model thread runs, and how requests become its units and its results become
answers: the calls `nlp-lstm tag`, `score` and `generate` make, so the server's answers
are theirs.

A tagging request's unit is one sentence (an InputSentence, as `nlp-lstm tag` reads a
line); units of requests asking the same extras (n-best, marginals) share one
`Tagger.predict_inputs` call, which sorts them by length and runs the model. An LM's units
are texts to score (each scored alone, as `nlp-lstm score` scores a file holding only that
line) and prompts to continue."""

from __future__ import annotations

from typing import Any, Dict, Hashable, List, Sequence

from nlp_lstm.data.tag_files import InputSentence, split_sentences, text_sentences
from nlp_lstm.inference import LanguageModel, Tagger
from nlp_lstm.inference.records import Prediction, jsonl_record
from nlp_lstm.metrics import safe_exp
from nlp_lstm.serve.validation import GenerateRequest, TagRequest

# `nlp-lstm score`'s default --batch-size: each text gets the numbers that command gives
# for a file holding that one line.
SCORE_ROWS = 10


def tag_kind(request: TagRequest) -> Hashable:
    return ("tag", request.nbest, request.marginals)


def tag_units(request: TagRequest) -> List[InputSentence]:
    """The request's sentences, numbered as the lines of a file holding its inputs one per
    line (1-based), tokenized (and split) by the functions `nlp-lstm tag` reads text with."""
    if request.texts is not None:
        return list(
            text_sentences(enumerate(request.texts, start=1), split_sentences if request.split_sentences else None)
        )
    return [InputSentence(list(words), line=n) for n, words in enumerate(request.tokens, start=1)]


def tag_results(
    request: TagRequest, sentences: Sequence[InputSentence], predictions: Sequence[Prediction]
) -> List[Any]:
    """One result per input: the record `nlp-lstm tag --format jsonl` writes for its line,
    or with split_sentences the list of its sentences' records (a line may hold several)."""
    records = [jsonl_record(s, p, sentence_start=request.split_sentences) for s, p in zip(sentences, predictions)]
    if not request.split_sentences:
        return records
    per_input: List[List[Dict[str, Any]]] = [[] for _ in request.texts]
    for record in records:
        per_input[record["line"] - 1].append(record)
    return per_input


def token_costs(sentences: Sequence[InputSentence]) -> List[int]:
    return [len(s.words) + 1 for s in sentences]


def score_total(results: Sequence[Dict[str, float]]) -> Dict[str, float]:
    """All texts together, each scored alone: summed NLL over summed tokens."""
    nll, tokens = sum(r["nll"] for r in results), sum(r["tokens"] for r in results)
    return (
        {"nll": nll, "tokens": tokens, "loss": nll / tokens, "ppl": safe_exp(nll / tokens)}
        if tokens
        else {"nll": 0.0, "tokens": 0}
    )


class ModelWork:
    """The batcher's `run` for a loaded model: (kind, payloads) -> one result per payload."""

    def __init__(self, model, max_batch_size: int) -> None:
        self.model, self.max_batch_size = model, max_batch_size

    def __call__(self, kind: Hashable, payloads: List[Any]) -> Sequence[Any]:
        if kind[0] == "tag" and isinstance(self.model, Tagger):
            _, nbest, marginals = kind
            # spans=True as for `nlp-lstm tag --format jsonl`; one call sorts by length and runs the model
            return self.model.predict_inputs(
                payloads, self.max_batch_size, spans=True, nbest=nbest, marginals=marginals
            )
        if kind[0] == "score" and isinstance(self.model, LanguageModel):
            return [self._score(text) for text in payloads]
        if kind[0] == "generate" and isinstance(self.model, LanguageModel):
            return [self._generate(request) for request in payloads]
        raise ValueError(f"no work {kind[0]!r} for a {type(self.model).__name__}")

    def _score(self, text: str) -> Dict[str, float]:
        numbers = self.model.score_lines([text], SCORE_ROWS)
        return {"nll": numbers["loss"] * numbers["tokens"], **numbers}

    def _generate(self, r: GenerateRequest) -> str:
        return self.model.generate(r.prompt, r.max_tokens, r.temperature, r.top_k, r.top_p, r.seed)
