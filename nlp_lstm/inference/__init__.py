"""Trained models in use: loading a package, tagging, scoring, generating, exporting.

Nothing here imports nlp_lstm.training or nlp_lstm.tasks: a loaded model needs neither the
trainer nor its corpus."""

from nlp_lstm.inference.language_model import LanguageModel
from nlp_lstm.inference.loading import load
from nlp_lstm.inference.records import Prediction
from nlp_lstm.inference.tagger import Tagger

__all__ = ["LanguageModel", "Prediction", "Tagger", "load"]
