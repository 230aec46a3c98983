"""A tagger's forward pass over encoded sentences: tags, loss on the gold-tagged ones, and
what else a caller asks for (span confidences, n-best, marginals), all from one emissions
tensor per batch. Training's evaluation and the loaded Tagger both run it."""

from __future__ import annotations

import math
from typing import Any, Callable, List, NamedTuple, Optional, Sequence, Tuple

import torch

from nlp_lstm.data.tag_schemes import spans_from_tags
from nlp_lstm.data.tagging_batch import collate, prediction_batches
from nlp_lstm.data.tagging_corpus import EncodedSentence, TaggingVocabs
from nlp_lstm.models.tagger import SequenceTagger


def length_batches(encoded: Sequence[EncodedSentence], batch_size: int) -> List[Tuple[List[int], Any]]:
    """(sentence indices, collated batch) in length order: what `predict` runs."""
    return [
        (indices, collate([encoded[i] for i in indices]))
        for indices in prediction_batches([len(s.words) for s in encoded], batch_size)
    ]


class Predicted(NamedTuple):
    tags: List[List[str]]  # model scheme, per sentence
    loss: float  # summed over the sentences with gold tags
    scored: int  # sentences with gold tags
    spans: Optional[List[List["Span"]]]  # given `scheme`
    nbest: Optional[List[List[Tuple[List[str], float]]]]  # given `nbest`: model scheme, best first
    marginals: Optional[List[torch.Tensor]]  # given `marginals`: per sentence, what it returned


@torch.no_grad()
def predict(
    model: SequenceTagger,
    encoded: Sequence[EncodedSentence],
    vocabs: TaggingVocabs,
    batch_size: int,
    device,
    scheme: Optional[str] = None,
    batches: Optional[List[Tuple[List[int], Any]]] = None,
    nbest: Optional[int] = None,
    marginals: Optional[Callable] = None,
) -> Predicted:
    """Predicted tags (model scheme) per sentence, summed loss, number of sentences scored,
    and, given the model's `scheme`, each sentence's predicted spans with their confidence
    (see span_confidences); given `nbest` k, each sentence's k best sequences (CRF); given
    `marginals`, a function (emissions, mask) -> (B, T, C) tensor, its rows per sentence.
    Every output of a sentence comes from the one emissions tensor its tags come from (so
    under one precision: n-best's first is the Viterbi path). `batches`:
    length_batches(encoded, batch_size), made beforehand (evaluation attaches the cached
    feature-LM states to them)."""
    was_training = model.training
    model.eval()
    itos = vocabs.tags.get_itos()
    predictions: List[Optional[List[str]]] = [None] * len(encoded)
    spans: Optional[List[Optional[List[Span]]]] = [None] * len(encoded) if scheme else None
    best: Optional[List[Any]] = [None] * len(encoded) if nbest else None
    probs: Optional[List[Any]] = [None] * len(encoded) if marginals is not None else None
    loss, scored = torch.zeros((), dtype=torch.float64, device=device), 0
    for indices, host in batches if batches is not None else length_batches(encoded, batch_size):
        batch = host.to(device)
        emissions = model(batch)
        decoded = model.decode(emissions, batch)
        for i, tags in zip(indices, decoded):
            predictions[i] = [itos[t] for t in tags]
        if spans is not None:
            for i, found in zip(indices, span_confidences(model, emissions, batch, decoded, itos, scheme)):
                spans[i] = found
        if best is not None:
            for b, (i, tags) in enumerate(zip(indices, decoded)):
                best[i] = [
                    ([itos[t] for t in seq], score) for seq, score in model.crf.nbest(emissions[b, : len(tags)], nbest)
                ]
        if probs is not None:
            table = marginals(emissions, batch.mask).cpu()
            for b, (i, tags) in enumerate(zip(indices, decoded)):
                probs[i] = table[b, : len(tags)]
        gold_rows = host.has_gold.nonzero().squeeze(1)  # chosen on the host: no device sync
        if len(gold_rows) == len(indices):
            loss += model.loss(emissions, batch).double()
        elif len(gold_rows):  # the loss of the sentences whose gold tags the model knows
            rows = gold_rows.to(device)
            loss += model.loss(emissions.index_select(0, rows), batch.select_rows(rows)).double()
        scored += len(gold_rows)
    model.train(was_training)
    return Predicted(predictions, float(loss), scored, spans, best, probs)  # the loss is read once, at the end


Span = Tuple[str, int, int, float]  # type, first word, one past the last word, confidence


def span_confidences(
    model: SequenceTagger, emissions: torch.Tensor, batch, decoded: List[List[int]], itos: List[str], scheme: str
) -> List[List[Span]]:
    """Each sentence's predicted spans and their confidence: with a CRF, the posterior
    probability that exactly these words carry exactly these tags (so, in IOBES, that they
    form one span of this type), computed with the forward and backward algorithms; with a
    softmax head, the product of the words' probabilities of their predicted tags."""
    found = [spans_from_tags([itos[t] for t in tags], scheme) for tags in decoded]
    requests = [[(start, tags[start:end]) for _, start, end in row] for row, tags in zip(found, decoded)]
    if not any(requests):
        return [[] for _ in found]
    if model.crf is not None:
        log_probs = model.crf.segment_log_probs(emissions, batch.mask, requests)
    else:
        token = torch.log_softmax(emissions.float(), dim=-1).cpu().numpy()
        log_probs = [
            [float(token[b, range(start, start + len(ids)), ids].sum()) for start, ids in row]
            for b, row in enumerate(requests)
        ]
    return [
        [(label, start, end, math.exp(lp)) for (label, start, end), lp in zip(row, probs)]
        for row, probs in zip(found, log_probs)
    ]
