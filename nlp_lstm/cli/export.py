"""`nlp-lstm export` (a tagger as ONNX) and `nlp-lstm vectors` (a model's word embeddings
as a word2vec text file)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from nlp_lstm.data.word_vectors import write_word2vec_text
from nlp_lstm.inference import LanguageModel, load
from nlp_lstm.inference.export import export_tagger


def export(args) -> None:
    # export covers taggers: an LM package is already a state_dict and a tokenizer
    tagger = load(args.model, "cpu", kind="tagger")
    meta = export_tagger(tagger, Path(args.output))
    print(
        f"{args.output}: model.onnx (inputs {', '.join(meta['inputs'])}; output emissions) and tagger.json",
        file=sys.stderr,
    )


def vectors(args) -> None:
    model = load(args.model, "cpu")
    if isinstance(model, LanguageModel):
        weight = model.model.embedding.weight
        words = model.tokenizer.token_strings(range(weight.shape[0]))
        rows = list(range(len(words)))
    else:
        weight = model.model.word_embedding.weight
        words = model.vocabs.words.get_itos()
        rows = list(range(1, len(words)))  # row 0 is padding, not a word
    writable = [i for i in rows if words[i] and not any(c.isspace() for c in words[i])]
    matrix = weight.detach().float().cpu().numpy()[np.array(writable, dtype=np.int64)]
    write_word2vec_text(Path(args.output), [words[i] for i in writable], matrix)
    if len(writable) < len(rows):
        print(f"left out {len(rows) - len(writable)} token(s) holding whitespace", file=sys.stderr)
    print(f"{args.output}: {len(writable):,} vectors of {matrix.shape[1]} dimensions", file=sys.stderr)
