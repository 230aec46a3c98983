"""`nlp_lstm.load(path)`: a trained model package, ready to use without its corpus."""

from __future__ import annotations

import os
from typing import Optional

from nlp_lstm.device import resolve_device
from nlp_lstm.errors import ModelPackageError
from nlp_lstm.inference.language_model import LanguageModel
from nlp_lstm.inference.tagger import Tagger
from nlp_lstm.package import rebuild

# kind -> (the task package.json names, the class that rebuilds it, what a person calls it)
KINDS = {"lm": ("lm", LanguageModel, "language model"), "tagger": ("tagging", Tagger, "tagger")}


def load(path: os.PathLike, device: str = "auto", kind: Optional[str] = None):
    """Load a model package written by training (`<run dir>/model`): a LanguageModel or a
    Tagger. `kind` ("lm" or "tagger") refuses a package of the other kind in one line;
    `device`: auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind={kind!r}: one of {', '.join(KINDS)} (or None for either)")
    dev = resolve_device(str(device))
    model = rebuild(path, dev, {task: cls for task, cls, _ in KINDS.values()})
    if kind is not None and not isinstance(model, KINDS[kind][1]):
        found = next(name for _, cls, name in KINDS.values() if isinstance(model, cls))
        raise ModelPackageError(f"{path}: not a {KINDS[kind][2]} (a {found} package)")
    return model
