"""Contextual features from character, subword and word LMs: each word's features equal a
brute-force computation that runs the LM on the sentence alone, token by token (forward:
the state after the word's last token; backward: after reading back to its first), on a
padded batch of sentences of different lengths. And a frozen LM's cached states give the
same training as computing them in every step."""

from __future__ import annotations

import json

import pytest
import torch

from helpers.corpora import make_lines, text_data_overrides, write_lines
from helpers.runs import run_train
from helpers.tagging import TINY_TAGGER, conll_overrides, tagging_corpus
from nlp_lstm.config import ModelConfig, TaggerModelConfig
from nlp_lstm.data.conll import Sentence
from nlp_lstm.data.tagging_batch import collate
from nlp_lstm.data.tagging_corpus import TaggingVocabs, encode, lm_stream
from nlp_lstm.data.tokenizers import CharTokenizer, SentencePieceTokenizer, WordTokenizer
from nlp_lstm.errors import ConfigError
from nlp_lstm.models.lm import RNNLanguageModel
from nlp_lstm.models.tagger import SequenceTagger

SENTENCES = [["the", "old", "cat", "saw", "Paris", "."], ["a", "dog", "."], ["Bob", "likes", "the", "small", "river"]]


def tokenizer_of(kind: str, tmp_path):
    lines = make_lines(200, 1)
    if kind == "word":
        return WordTokenizer.fit(lines)
    if kind == "char":
        return CharTokenizer.fit(lines)
    return SentencePieceTokenizer.fit(lines, tmp_path, vocab_size=60, model_type="bpe")


def tagger_with_lm(tokenizer, bidirectional: bool, cell: str = "lstm", layers: str = "top"):
    torch.manual_seed(0)
    lm = RNNLanguageModel(
        ModelConfig(cell=cell, emb_size=8, hidden_size=12, num_layers=2, bidirectional=bidirectional),
        tokenizer.vocab_size,
    )
    sentences = [Sentence(words, ["O"] * len(words), {}) for words in SENTENCES]
    vocabs = TaggingVocabs.fit(sentences, "iobes", "iob2", lowercase_words=True)
    cfg = TaggerModelConfig(
        emb_size=8, hidden_size=8, char_features="none", lm_features="lm", lm_loss_weight=0.0, lm_features_layers=layers
    )
    model = SequenceTagger(
        cfg, len(vocabs.words), len(vocabs.chars), len(vocabs.tags), {}, lm=lm, lm_eos=tokenizer.eos_id
    ).eval()
    encoded = [encode(s, vocabs, "iobes", "iob2", tokenizer) for s in sentences]
    return model, lm, encoded


def brute_force(lm, eos: int, stream, first: int, last: int):
    """Run the LM on one sentence, unbatched: forward up to the word's last token, backward
    from the sentence's end back to its first token; the last output of each."""
    start = torch.tensor([[eos]])
    forward_in = torch.cat([start, torch.tensor([stream[: last + 1]])], 1)
    out, _ = lm(forward_in, lm.initial_state(1)[0], 0)
    parts = [out[0, -1]]
    if lm.num_directions == 2:
        backward_in = torch.cat([start, torch.tensor([stream[first:][::-1]])], 1)
        out, _ = lm(backward_in, lm.initial_state(1)[1], 1)
        parts.append(out[0, -1])
    return torch.cat(parts)


@pytest.mark.parametrize("kind", ["char", "sentencepiece", "word"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_features_match_a_per_word_brute_force_computation(tmp_path, kind, bidirectional):
    tokenizer = tokenizer_of(kind, tmp_path)
    model, lm, encoded = tagger_with_lm(tokenizer, bidirectional, cell="gru" if kind == "sentencepiece" else "lstm")
    with torch.no_grad():
        features = model.lm_features(collate(encoded))  # one padded batch
        for b, sentence in enumerate(encoded):
            for j in range(len(sentence.words)):
                expected = brute_force(lm, tokenizer.eos_id, sentence.lm_ids, sentence.lm_first[j], sentence.lm_last[j])
                torch.testing.assert_close(features[b, j], expected, rtol=1e-5, atol=1e-6)


def layers_brute_force(lm, eos: int, stream, first: int, last: int):
    """Each RNN layer's state at the word (as brute_force), running the layers one by one
    by hand: [forward layer 1, forward layer 2 | backward layer 1, backward layer 2]."""

    def layer_states(tokens, direction):
        x = lm.embedding(torch.tensor([tokens]))
        states = []
        for layer in lm.rnns[direction].layers:
            x, _ = layer(x, layer.initial_state(1, "cpu"))
            states.append(x[0, -1])
        return states

    parts = layer_states([eos] + stream[: last + 1], 0)
    if lm.num_directions == 2:
        parts += layer_states([eos] + stream[first:][::-1], 1)
    return torch.cat(parts)


@pytest.mark.parametrize("kind", ["char", "word"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_layer_mix_reads_every_layer_and_mixes_them_as_elmo(tmp_path, kind, bidirectional):
    """model.lm_features_layers=mix: the features (and so the cache) hold every layer's
    state at each word; the tagger's input is gamma * sum_j softmax(w)_j * layer_j per
    direction (ELMo's scalar mix), with w and gamma learned."""
    tokenizer = tokenizer_of(kind, tmp_path)
    model, lm, encoded = tagger_with_lm(tokenizer, bidirectional, layers="mix")
    batch = collate(encoded)
    with torch.no_grad():
        features = model.lm_features(batch)
        assert features.size(-1) == 12 * 2 * lm.num_directions
        for b, sentence in enumerate(encoded):
            for j in range(len(sentence.words)):
                expected = layers_brute_force(
                    lm, tokenizer.eos_id, sentence.lm_ids, sentence.lm_first[j], sentence.lm_last[j]
                )
                torch.testing.assert_close(features[b, j], expected, rtol=1e-5, atol=1e-6)
        model.lm_mix.weights.copy_(torch.tensor([0.3, -1.2]))
        model.lm_mix.scale.fill_(1.7)
        mixed = model.lm_mix(features)
        share = torch.softmax(torch.tensor([0.3, -1.2]), 0)
        for d in range(lm.num_directions):
            layer1, layer2 = features[..., 24 * d : 24 * d + 12], features[..., 24 * d + 12 : 24 * (d + 1)]
            torch.testing.assert_close(mixed[..., 12 * d : 12 * (d + 1)], 1.7 * (share[0] * layer1 + share[1] * layer2))
    # The mix's parameters train with the tagger.
    model.train()
    model(batch).pow(2).sum().backward()  # (one tag "O": the CRF loss itself is constant)
    assert model.lm_mix.weights.grad.abs().sum() > 0 and model.lm_mix.scale.grad.abs() > 0


def test_layer_mix_refuses_layers_of_different_sizes():
    lm = RNNLanguageModel(
        ModelConfig(emb_size=8, hidden_size=12, num_layers=2, last_layer_size=8, tie_weights=False), 50
    )
    cfg = TaggerModelConfig(emb_size=8, hidden_size=8, char_features="none", lm_features="lm", lm_features_layers="mix")
    with pytest.raises(ConfigError, match=r"config model.lm_features_layers=mix: .*differ in size \(\[8, 12\]\)"):
        SequenceTagger(cfg, 10, 10, 5, {}, lm=lm)
    with pytest.raises(ConfigError, match="model.lm_features_layers"):
        TaggerModelConfig(lm_features_layers="all")


def test_streams_follow_each_granularity(tmp_path):
    char = tokenizer_of("char", tmp_path)
    words = make_lines(2, 5)[1].split()[:4]
    assert len(words) == 4
    stream, first, last = lm_stream(words, char)
    assert "".join(char.token_strings(stream)) == " ".join(words)  # one space between words
    starts = [sum(len(w) + 1 for w in words[:i]) for i in range(len(words))]
    assert first == starts and last == [s + len(w) - 1 for s, w in zip(starts, words)]
    pieces = tokenizer_of("sentencepiece", tmp_path)
    stream, first, last = lm_stream(words, pieces)
    assert stream == pieces.encode_line(" ".join(words))  # word by word == the whole line
    assert all(pieces.token_strings([stream[f]])[0].startswith("\u2581") for f in first)
    word = tokenizer_of("word", tmp_path)
    stream, first, last = lm_stream(words + ["neverseen"], word)
    assert first == last == [0, 1, 2, 3, 4] and stream[-1] == word.unk_id


def test_char_lm_features_end_to_end_with_a_cached_frozen_lm(tmp_path):
    """A character bi-LM trained here feeds a tagger; its states are cached, and training
    with the cache gives the same model as computing them in every step."""
    from nlp_lstm.data.conll import read_conll

    corpus = tagging_corpus(tmp_path / "corpus")
    text = {}
    for split in ("train", "valid", "test"):
        text[split] = write_lines(
            tmp_path / f"{split}.lm.txt", [" ".join(s.words) for s in read_conll(corpus[split], 0, 2)]
        )
    lm_run = tmp_path / "lm"
    run_train(
        lm_run,
        text_data_overrides(text)
        + [
            "tokenizer=char",
            "model.emb_size=8",
            "model.hidden_size=16",
            "model.num_layers=1",
            "model.bidirectional=true",
            "trainer.max_steps=10",
            "task.bptt=20",
            "task.batch_size=8",
            "trainer.progress_bar=false",
            "trainer.num_threads=1",
            "logger.tensorboard=false",
        ],
        tmp_path / "data",
    )
    common = (
        conll_overrides(corpus)
        + TINY_TAGGER
        + [
            f"model.lm_features={lm_run / 'model'}",
            "trainer.max_epochs=2",
            "trainer.max_time=null",
            "logger.tensorboard=false",
        ]
    )
    cached, uncached = tmp_path / "cached", tmp_path / "uncached"
    proc = run_train(cached, common, tmp_path / "data")
    log = proc.stderr + proc.stdout
    assert "feature LM states cached for 300 of 300 train sentences" in log
    assert "feature LM states cached for 40 of 40 valid sentences" in log
    run_train(uncached, common + ["model.lm_features_cache_mb=0"], tmp_path / "data")
    a = torch.load(cached / "model" / "weights.pt", weights_only=True)
    b = torch.load(uncached / "model" / "weights.pt", weights_only=True)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5, msg=name)
    metrics = json.loads((cached / "metrics.json").read_text())
    assert metrics["test"]["f1"] > 0
    # Fine-tuned instead of frozen: no cache, and the LM's weights in the package move.
    tuned = tmp_path / "tuned"
    proc = run_train(tuned, common + ["model.lm_fine_tune=true", "trainer.max_epochs=1"], tmp_path / "data")
    assert "feature LM states cached" not in proc.stderr + proc.stdout
    lm_weights = torch.load(lm_run / "model" / "weights.pt", weights_only=True)
    tuned_weights = torch.load(tuned / "model" / "weights.pt", weights_only=True)
    assert any(not torch.equal(tuned_weights[f"lm.{name}"], w) for name, w in lm_weights.items())


def test_the_cache_holds_each_sentences_states_within_its_budget(tmp_path):
    from nlp_lstm.tasks.feature_cache import FrozenFeatureCache

    model, _, encoded = tagger_with_lm(tokenizer_of("char", tmp_path), bidirectional=True)
    cache = FrozenFeatureCache(budget_mb=1)
    cache.fill(model, "train", encoded, batch_size=2, device="cpu")
    order = [2, 0, 1]
    with torch.no_grad():
        expected = model.lm_features(collate([encoded[i] for i in order]))
    got = cache.lookup("train", order)
    assert got is not None and got.shape == expected.shape
    for row, i in enumerate(order):
        n = len(encoded[i].words)
        torch.testing.assert_close(got[row, :n], expected[row, :n], rtol=1e-5, atol=1e-6)
    # A budget for about one sentence's states: the rest are left to the step.
    one = encoded[1]
    small = FrozenFeatureCache(budget_mb=(len(one.words) * expected.size(-1) * 4 + 1) / 2**20)
    small.fill(model, "train", encoded, batch_size=1, device="cpu")
    assert list(small.states) == [("train", 1)]  # the shortest sentence comes first
    assert small.lookup("train", [1]) is not None and small.lookup("train", [0, 1]) is None
    assert small.lookup("valid", [1]) is None


@pytest.mark.parametrize("kind", ["char", "sentencepiece"])
def test_a_sentence_tags_the_same_alone_and_in_a_padded_batch(tmp_path, kind):
    model, _, encoded = tagger_with_lm(tokenizer_of(kind, tmp_path), bidirectional=True)
    with torch.no_grad():
        together = model(collate(encoded))
        for b, sentence in enumerate(encoded):
            alone = model(collate([sentence]))[0]
            n = len(sentence.words)
            torch.testing.assert_close(together[b, :n], alone[:n], rtol=1e-5, atol=1e-6)
