"""Pretrained word vectors in a tagger: the vocabulary they extend, the embedding rows they
fill, and how much of each split they cover."""

from __future__ import annotations

import logging
from typing import Dict, Sequence, Tuple

import numpy as np
import torch

from nlp_lstm.data.tagging_corpus import EncodedSentence, TaggingVocabs
from nlp_lstm.data.word_vectors import WordVectors, read_word_vectors
from nlp_lstm.errors import ConfigError

log = logging.getLogger("nlp_lstm")
SPECIALS = 2  # <pad>, <unk>: never looked up in a vector file


def load_word_vectors(model_cfg, vocabs: TaggingVocabs) -> Tuple[TaggingVocabs, WordVectors]:
    """The vectors of model.word_vectors for the train vocabulary, and the vocabulary
    extended with the file's most frequent words (model.word_vectors_max)."""
    vectors = read_word_vectors(
        model_cfg.word_vectors,
        vocabs.words.get_itos()[SPECIALS:],
        model_cfg.word_vectors_format,
        model_cfg.word_vectors_max,
        vocabs.lowercase_words,
    )
    if vectors.dim != model_cfg.emb_size:
        raise ConfigError(
            f"config model.emb_size={model_cfg.emb_size}: the vectors in {model_cfg.word_vectors} have "
            f"{vectors.dim} dimensions; set model.emb_size={vectors.dim}"
        )
    return vocabs.with_words(vectors.new_words), vectors


@torch.no_grad()
def initialise_word_embedding(weight: torch.Tensor, vocabs: TaggingVocabs, vectors: WordVectors) -> torch.Tensor:
    """Copy each word's vector into its row; words without one (and <unk>) start at random,
    normal with the file's standard deviation; padding stays zero. Returns which rows
    hold a file vector."""
    itos = vocabs.words.get_itos()
    has_vector = torch.zeros(len(itos), dtype=torch.bool)
    rows = [i for i, word in enumerate(itos) if i >= SPECIALS and word in vectors.vectors]
    weight[1:].normal_(0.0, vectors.scale())
    if rows:
        matrix = torch.from_numpy(np.stack([vectors.vectors[itos[i]] for i in rows]))
        weight[torch.tensor(rows)] = matrix.to(weight.dtype).to(weight.device)
        has_vector[torch.tensor(rows)] = True
    weight[0].zero_()
    return has_vector


def coverage(encoded: Dict[str, Sequence[EncodedSentence]], has_vector: torch.Tensor) -> Dict[str, float]:
    """Per split, the share of tokens whose word has a file vector (tokens of words outside
    the vocabulary have none)."""
    out = {}
    for split, sentences in encoded.items():
        ids = torch.tensor([i for s in sentences for i in s.words], dtype=torch.long)
        out[split] = float(has_vector[ids].float().mean()) if len(ids) else 0.0
    return out
