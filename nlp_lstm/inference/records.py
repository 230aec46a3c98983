"""What a loaded tagger hands back, per sentence: its Prediction, and the token and span
records (dicts with character offsets into the input line) that the API and `nlp-lstm tag`
write."""

from __future__ import annotations

from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

from nlp_lstm.data.tag_files import InputSentence, tokenize
from nlp_lstm.inference.prediction import Span


def as_input(text: Union[str, Sequence[str]], features: Optional[Dict[str, Sequence[str]]] = None) -> InputSentence:
    """A raw sentence (tokenized with `tokenize`, offsets kept) or a token list."""
    if isinstance(text, str):
        tokens = tokenize(text)
        return InputSentence(
            [t for t, _, _ in tokens], dict(features or {}), text=text, offsets=[(a, b) for _, a, b in tokens]
        )
    return InputSentence(list(text), dict(features or {}))


def token_records(sentence: InputSentence, tags: Sequence[str]) -> List[Dict[str, Any]]:
    """Tokens with their tags and, for raw text, character offsets into the input line
    (a split sentence's own offsets moved by its start in the line)."""
    if sentence.offsets is None:
        return [{"token": w, "tag": t, "start": None, "end": None} for w, t in zip(sentence.words, tags)]
    shift = sentence.text_start
    return [
        {"token": w, "tag": t, "start": a + shift, "end": b + shift}
        for w, t, (a, b) in zip(sentence.words, tags, sentence.offsets)
    ]


def jsonl_record(sentence: InputSentence, prediction: "Prediction", sentence_start: bool = False) -> Dict[str, Any]:
    """The record `nlp-lstm tag --format jsonl` writes for a sentence (and the server's
    answer for it): its input line, the sentence's start in the line (`sentence_start`,
    where lines were split into sentences), tokens with tags and offsets, its text, spans,
    and the n-best sequences and marginals where the prediction carries them (a blank line
    has neither: it has no tokens)."""
    record: Dict[str, Any] = {"line": sentence.line}
    if sentence_start:
        record["sentence_start"] = sentence.text_start
    record["tokens"] = token_records(sentence, prediction.tags)
    if sentence.text is not None:
        record["text"] = sentence.text
    if prediction.spans is not None:
        record["spans"] = prediction.spans
    if prediction.nbest is not None and sentence.words:
        record["nbest"] = [{"tags": tags, "score": score} for tags, score in prediction.nbest]
    if prediction.marginals is not None and sentence.words:
        record["marginals"] = prediction.marginals
    return record


def span_record(sentence: InputSentence, span: Span) -> Dict[str, Any]:
    label, start, end, confidence = span
    record: Dict[str, Any] = {
        "type": label,
        "start": start,
        "end": end,
        "words": " ".join(sentence.words[start:end]),
        "confidence": round(confidence, 6),
    }
    if sentence.offsets is not None:
        first, last = sentence.offsets[start][0], sentence.offsets[end - 1][1]
        shift = sentence.text_start  # character offsets are into the input line, as the tokens'
        record.update({"start_char": first + shift, "end_char": last + shift, "text": sentence.text[first:last]})
    return record


class Prediction(NamedTuple):
    """One sentence's outputs, in the corpus's scheme, all from one emissions tensor."""

    tags: List[str]
    spans: Optional[List[Dict[str, Any]]]  # with spans=True (see Tagger.predict_inputs)
    nbest: Optional[List[Tuple[List[str], float]]]  # with nbest=k: (tags, CRF score), best first
    marginals: Optional[List[Dict[str, float]]]  # with marginals=True: per token, P(tag) of each label
