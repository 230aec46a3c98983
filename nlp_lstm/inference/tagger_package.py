"""What rebuilds a tagger besides its weights and vocabularies: the model from its config,
the scheme it predicts in, and the parts a package carries with it (the feature LM's
config and tokenizer in `lm/`, the feature taggers in `feature_taggers/`). Training writes
these and loading reads them, so both sides live here."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Dict, Sequence

import torch

from nlp_lstm.config import ModelConfig
from nlp_lstm.data.tag_schemes import allowed_transition
from nlp_lstm.data.tagging_corpus import TaggingVocabs
from nlp_lstm.data.tokenizers import load_tokenizer, save_tokenizer
from nlp_lstm.inference.language_model import LanguageModel
from nlp_lstm.models.lm import RNNLanguageModel
from nlp_lstm.models.tagger import SequenceTagger

FEATURE_TAGGERS = "feature_taggers"  # a package's folder of the taggers that predict its input columns


def model_scheme(task_cfg, data_cfg) -> str:
    """The scheme the model predicts in: plain labels stay plain."""
    return "none" if data_cfg.tag_scheme == "none" else task_cfg.train_scheme


def crf_constraints(tags: Sequence[str], scheme: str) -> Dict[str, torch.Tensor]:
    """Allowed transitions of the CRF from the tag scheme (no I-X after O in IOB2...)."""
    allowed = torch.tensor([[allowed_transition(a, b, scheme) for b in tags] for a in tags], dtype=torch.bool)
    start = torch.tensor([allowed_transition("START", t, scheme) for t in tags], dtype=torch.bool)
    end = torch.tensor([allowed_transition(t, "END", scheme) for t in tags], dtype=torch.bool)
    return {"allowed": allowed, "allowed_start": start, "allowed_end": end}


def build_tagger(
    model_cfg, vocabs: TaggingVocabs, train_scheme: str, feature_lm=None, for_inference: bool = False
) -> SequenceTagger:
    """`feature_lm`: a loaded LanguageModel whose states become input features;
    `for_inference`: without the training-only parts (what a model package holds)."""
    tags = vocabs.tags.get_itos()
    return SequenceTagger(
        model_cfg,
        len(vocabs.words),
        len(vocabs.chars),
        len(tags),
        {n: len(v) for n, v in vocabs.features.items()},
        crf_constraints(tags, train_scheme) if model_cfg.head == "crf" else None,
        lm=feature_lm.model if feature_lm else None,
        lm_eos=feature_lm.tokenizer.eos_id if feature_lm else 0,
        for_inference=for_inference,
    )


def save_feature_lm(lm: LanguageModel, directory: Path) -> None:
    """Copy what rebuilds the feature LM (its config and tokenizer; the weights live in the
    tagger's state_dict) into the tagger's package, so the package stands alone."""
    save_tokenizer(lm.tokenizer, directory / "lm" / "tokenizer")
    model_cfg = lm.configs["model"]
    (directory / "lm" / "model.json").write_text(
        json.dumps(model_cfg if isinstance(model_cfg, dict) else asdict(model_cfg)) + "\n", encoding="utf-8"
    )


def read_feature_lm(directory: Path, device) -> LanguageModel:
    """The feature LM a package carries, without weights (the tagger's state_dict holds them)."""
    tokenizer = load_tokenizer(directory / "lm" / "tokenizer")
    model_cfg = json.loads((directory / "lm" / "model.json").read_text(encoding="utf-8"))
    model = RNNLanguageModel(ModelConfig(**model_cfg), tokenizer.vocab_size)
    return LanguageModel(model.to(device), tokenizer, {"model": model_cfg}, device)
