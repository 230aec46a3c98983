"""Padded batches are exact: every sentence gets the same outputs as when run alone."""

import pytest
import torch

from nlp_lstm.config import TaggerModelConfig
from nlp_lstm.data.conll import Sentence
from nlp_lstm.data.tagging_batch import collate
from nlp_lstm.data.tagging_corpus import TaggingVocabs, encode
from nlp_lstm.inference.tagger_package import build_tagger
from nlp_lstm.models.encoders import BiRNN, CharBiLSTM, CharCNN, reverse_padded


def test_reverse_padded_keeps_padding_at_the_end():
    x = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]]).unsqueeze(-1)
    assert reverse_padded(x, torch.tensor([3, 2])).squeeze(-1).tolist() == [[3, 2, 1, 0], [5, 4, 0, 0]]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_birnn_padded_batch_equals_each_sentence_alone(cell):
    torch.manual_seed(0)
    rnn = BiRNN(cell, 5, 6, num_layers=2).eval()
    lengths = torch.tensor([7, 3, 1])
    x = torch.randn(3, 7, 5)
    x[1, 3:] = 99.0  # garbage in the padding must not leak
    x[2, 1:] = -99.0
    batched = rnn(x, lengths)
    for b, n in enumerate(lengths.tolist()):
        alone = rnn(x[b : b + 1, :n], torch.tensor([n]))
        assert torch.allclose(batched[b, :n], alone[0], atol=1e-5)


@pytest.mark.parametrize("encoder", [CharCNN(20, 4, 6), CharBiLSTM(20, 4, 3)])
def test_char_encoders_ignore_padding(encoder):
    torch.manual_seed(0)
    encoder.eval()
    chars = torch.tensor([[3, 4, 5, 0, 0], [7, 0, 0, 0, 0], [2, 3, 4, 5, 6]])
    lengths = torch.tensor([3, 1, 5])
    batched = encoder(chars, lengths)
    for i, n in enumerate(lengths.tolist()):
        assert torch.allclose(batched[i], encoder(chars[i : i + 1, :n], torch.tensor([n]))[0], atol=1e-5)


def test_whole_tagger_padded_batch_equals_sentences_alone():
    torch.manual_seed(0)
    sentences = [
        Sentence("the cat sat on the mat".split(), ["B-NP", "I-NP", "B-VP", "B-PP", "B-NP", "I-NP"]),
        Sentence(["dogs", "bark"], ["B-NP", "B-VP"]),
        Sentence(["Hi"], ["O"]),
    ]
    vocabs = TaggingVocabs.fit(sentences, "iobes", "iob2", lowercase_words=False)
    for char_features in ("cnn", "lstm"):
        cfg = TaggerModelConfig(
            emb_size=8, hidden_size=6, num_layers=2, char_features=char_features, char_emb_size=4, char_hidden_size=5
        )
        model = build_tagger(cfg, vocabs, "iobes").eval()
        encoded = [encode(s, vocabs, "iobes", "iob2") for s in sentences]
        batch = collate(encoded)
        emissions = model(batch)
        for i, e in enumerate(encoded):
            alone = model(collate([e]))
            n = len(e.words)
            assert torch.allclose(emissions[i, :n], alone[0, :n], atol=1e-5)
        assert model.decode(emissions, batch) == [model.decode(model(collate([e])), collate([e]))[0] for e in encoded]


def test_a_batch_encodes_each_distinct_words_characters_once_with_the_same_result():
    import dataclasses
    import random

    from helpers.tagging import make_sentence
    from nlp_lstm.config import TaggerModelConfig
    from nlp_lstm.data.conll import Sentence
    from nlp_lstm.data.tagging_batch import collate
    from nlp_lstm.data.tagging_corpus import TaggingVocabs, encode
    from nlp_lstm.inference.tagger_package import build_tagger

    rng = random.Random(4)
    sentences = [Sentence([w for w, _, _ in s], [c for _, _, c in s]) for s in (make_sentence(rng) for _ in range(40))]
    vocabs = TaggingVocabs.fit(sentences, "iobes", "iob2", lowercase_words=True)
    for char_features in ("cnn", "lstm"):
        torch.manual_seed(0)
        model = build_tagger(
            TaggerModelConfig(
                emb_size=8,
                hidden_size=8,
                char_features=char_features,
                char_emb_size=4,
                char_hidden_size=6,
                lm_loss_weight=0.0,
            ),
            vocabs,
            "iobes",
        ).eval()
        batch = collate([encode(s, vocabs, "iobes", "iob2") for s in sentences])
        words = int(batch.mask.sum())
        assert batch.chars.size(0) < words / 3  # "the", "." ... once each
        every_word = dataclasses.replace(
            batch,
            chars=batch.chars[batch.char_index],
            char_lengths=batch.char_lengths[batch.char_index],
            char_index=None,
        )
        with torch.no_grad():
            torch.testing.assert_close(model(batch), model(every_word), rtol=1e-5, atol=1e-6)
