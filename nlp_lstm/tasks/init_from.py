"""model.init_from=PATH: start a run from an existing model package.

What carries over (README, "Start from a trained model"):

- The architecture: every `model.*` key the package stores comes from it, whatever this
  run's model group says (a line in the log names each value that differs), except the
  keys of PER_RUN: regularisation and training-only choices (dropouts, weight drop, AR/TAR,
  word dropout, lm_fine_tune...), which come from this run, as do the optimiser, the
  schedule and the data. Read from the package rather than listed, so that a new
  architecture key carries over without being named here.
- The weights, all of them. An LM keeps the package's tokenizer: new text is encoded with
  it (domain adaptation), so every weight has its shape. A tagger keeps the package's
  vocabularies and extends them with what this run's train split adds: new words,
  characters and feature values get fresh rows, new tags get fresh emission rows and CRF
  transitions (constrained by the tag scheme as usual); the package's rows come first, so
  its weights are copied into the leading block of each matrix.
- A tagger's feature LM and its word-vector provenance are the package's (the LM is read
  from the package, not from a path; the vector file is not read again), and so are its
  feature taggers (read from the package's copies; this run may add or replace some).
- Not carried: optimiser state, schedule position, the auxiliary LM-cost heads (a package
  never holds them: they start fresh when model.lm_loss_weight > 0).
"""

from __future__ import annotations

import logging
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Dict, Tuple

import torch

from nlp_lstm.errors import ConfigError, NlpLstmError
from nlp_lstm.package import read_package

log = logging.getLogger("nlp_lstm")

# The model keys each run sets for itself (README, "Start from a trained package"); every
# other key of the package's model config is its architecture. lm_loss_vocab, lm_loss_hidden
# and lm_loss_samples only shape the training-only LM-cost heads, which start fresh anyway;
# lm_loss_weight is not here: with feature-LM states, whether it is on decides the first
# layer's input sizes (see SequenceTagger.lm_directions_split).
PER_RUN = (
    "init_from",
    "dropout_embedding",
    "dropout_input",
    "dropout_hidden",
    "dropout_output",
    "weight_drop",
    "locked_dropout",
    "init_range",
    "activation_reg",
    "temporal_activation_reg",
    "word_dropout",
    "word_vectors_freeze",
    "lm_fine_tune",
    "lm_features_cache_mb",
    "lm_loss_vocab",
    "lm_loss_hidden",
    "lm_loss_samples",
)


def read_init_package(path: str, task: str) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor]]:
    try:
        meta, state_dict = read_package(Path(path))
    except NlpLstmError as exc:
        raise ConfigError(f"config model.init_from={path!r}: {exc}") from None
    if meta.get("task") != task:
        what = {"lm": "a language model", "tagging": "a tagger"}
        raise ConfigError(
            f"config model.init_from={path!r}: {what.get(meta.get('task'), 'an unknown')} package; "
            f"task={task} needs {what[task]} package"
        )
    return meta, state_dict


def merged_model_config(run_cfg, package_model: Dict[str, Any]):
    """This run's model config with every key of the package's but those of PER_RUN."""
    known = {f.name for f in fields(run_cfg)}
    taken = {k: v for k, v in package_model.items() if k in known and k not in PER_RUN}
    differing = [
        f"{k}={v!r} (this run: {getattr(run_cfg, k)!r})"
        for k, v in taken.items()
        if v != getattr(run_cfg, k) and not (k in ("word_vectors", "lm_features") and v is None)
    ]
    if differing:
        log.info(f"model.init_from: the package's architecture is used: {', '.join(differing)}")
    return replace(run_cfg, **taken)


@torch.no_grad()
def load_leading_weights(
    model: torch.nn.Module, state_dict: Dict[str, torch.Tensor], path: str, skip_prefix: str = ""
) -> None:
    """Copy each package weight into the model: whole where the shapes agree, into the
    leading block where the model's tensor is larger (rows and columns of new vocabulary
    entries and tags come after the package's)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict and not (skip_prefix and k.startswith(skip_prefix))]
    unexpected = [k for k in state_dict if k not in own]
    if missing or unexpected:
        raise ConfigError(
            f"config model.init_from={path!r}: the package's weights do not fit this model "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    for name, source in state_dict.items():
        target = own[name]
        if source.dim() != target.dim() or any(s > t for s, t in zip(source.shape, target.shape)):
            raise ConfigError(
                f"config model.init_from={path!r}: weight {name} has shape {tuple(source.shape)}, "
                f"this model's is {tuple(target.shape)}"
            )
        target[tuple(slice(0, s) for s in source.shape)] = source.to(target.dtype)
