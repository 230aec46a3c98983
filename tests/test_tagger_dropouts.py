"""Every dropout key a tagger accepts is applied: weight drop and embedding dropout included."""

import pytest
import torch

from nlp_lstm.config import TaggerModelConfig
from nlp_lstm.data.conll import Sentence
from nlp_lstm.data.tagging_batch import collate
from nlp_lstm.data.tagging_corpus import TaggingVocabs, encode
from nlp_lstm.errors import ConfigError
from nlp_lstm.inference.tagger_package import build_tagger

SENTENCES = [
    Sentence("the cat saw the dog".split(), ["B-NP", "I-NP", "B-VP", "B-NP", "I-NP"]),
    Sentence(["dogs", "bark"], ["B-NP", "B-VP"]),
]
NO_DROPOUT = dict(
    dropout_input=0.0,
    dropout_hidden=0.0,
    dropout_output=0.0,
    word_dropout=0.0,
    weight_drop=0.0,
    dropout_embedding=0.0,
    lm_loss_weight=0.0,
)


def _tagger(**overrides):
    vocabs = TaggingVocabs.fit(SENTENCES, "iobes", "iob2", lowercase_words=True)
    cfg = TaggerModelConfig(
        emb_size=8, hidden_size=6, num_layers=2, char_emb_size=4, char_hidden_size=5, **{**NO_DROPOUT, **overrides}
    )
    batch = collate([encode(s, vocabs, "iobes", "iob2") for s in SENTENCES])
    torch.manual_seed(0)
    return build_tagger(cfg, vocabs, "iobes").train(), batch


def _two_training_passes(model, batch):
    torch.manual_seed(1)
    a = model(batch)
    torch.manual_seed(2)
    return a, model(batch)


def test_without_dropout_training_passes_agree():
    a, b = _two_training_passes(*_tagger())
    assert torch.equal(a, b)


def test_weight_drop_masks_the_hidden_to_hidden_weights_in_training_only():
    model, batch = _tagger(weight_drop=0.5)
    assert all(layer.weight_drop == 0.5 for layer in model.encoder.forward_layers)
    assert all(layer.weight_drop == 0.5 for layer in model.encoder.backward_layers)
    a, b = _two_training_passes(model, batch)
    assert not torch.allclose(a, b)
    model.eval()
    assert torch.equal(model(batch), model(batch))


def test_embedding_dropout_drops_whole_word_types():
    model, batch = _tagger(dropout_embedding=0.5, char_features="none")
    seen = []
    model.input_dropout.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    torch.manual_seed(3)
    model(batch)
    embedded = seen[0][..., :8]  # the word embedding part of the encoder input
    the = batch.words[0, 0]
    assert batch.words[0, 3] == the  # "the" occurs twice in sentence 1
    zeroed = (embedded == 0).all(-1) & batch.mask
    assert zeroed.any() and not zeroed[batch.mask].all()
    assert bool(zeroed[0, 0]) == bool(zeroed[0, 3])  # a dropped type is dropped everywhere
    kept = ~zeroed & batch.mask
    assert torch.allclose(embedded[kept], 2 * model.word_embedding(batch.words)[kept])  # rescaled by 1/(1-p)
    model.eval()
    seen.clear()
    model(batch)
    assert torch.equal(seen[0][..., :8], model.word_embedding(batch.words))


@pytest.mark.parametrize("key, value", [("tie_weights", True), ("softmax", "adaptive")])
def test_lm_only_output_options_are_refused_for_taggers(key, value):
    with pytest.raises(ConfigError, match=f"config model.{key}="):
        TaggerModelConfig(**{key: value, **({"tie_weights": False} if key == "softmax" else {})})
