"""The auxiliary language-modelling cost (model.lm_loss_weight, Rei 2017)."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from nlp_lstm.config import TaggerModelConfig
from nlp_lstm.data.conll import Sentence
from nlp_lstm.data.tagging_batch import collate
from nlp_lstm.data.tagging_corpus import TaggingVocabs, encode
from nlp_lstm.errors import ConfigError
from nlp_lstm.inference.tagger_package import build_tagger
from nlp_lstm.models.tagger import UNK_INDEX, NeighbourWordObjective

SENTENCES = [
    Sentence("the cat sat on the mat".split(), ["B-NP", "I-NP", "B-VP", "B-PP", "B-NP", "I-NP"]),
    Sentence(["dogs", "bark"], ["B-NP", "B-VP"]),
    Sentence(["Hi"], ["O"]),
]


def _tagger(weight=0.5, vocab=7500):
    vocabs = TaggingVocabs.fit(SENTENCES, "iobes", "iob2", lowercase_words=True)
    cfg = TaggerModelConfig(
        emb_size=8,
        hidden_size=6,
        num_layers=2,
        char_emb_size=4,
        char_hidden_size=5,
        lm_loss_weight=weight,
        lm_loss_vocab=vocab,
        word_dropout=0.0,
    )
    batch = collate([encode(s, vocabs, "iobes", "iob2") for s in SENTENCES])
    return build_tagger(cfg, vocabs, "iobes"), batch


def test_objective_equals_per_word_cross_entropy_written_out():
    torch.manual_seed(0)
    objective = NeighbourWordObjective(state_size=3, hidden_size=4, num_classes=5)
    words = torch.tensor([[2, 7, 4, 3], [6, 2, 0, 0]])  # 7 and 6 are past the 5 classes: <unk>
    mask = words > 0
    states = torch.randn(2, 4, 6, requires_grad=True)
    expected = 0.0
    for b in range(2):
        n = int(mask[b].sum())
        row = [w if w < 5 else UNK_INDEX for w in words[b, :n].tolist()]
        for t in range(n):
            following = row[t + 1] if t + 1 < n else 0  # 0: the sentence boundary
            preceding = row[t - 1] if t > 0 else 0
            expected += F.cross_entropy(objective.next_word(states[b, t, :3]).unsqueeze(0), torch.tensor([following]))
            expected += F.cross_entropy(
                objective.previous_word(states[b, t, 3:]).unsqueeze(0), torch.tensor([preceding])
            )
    got = objective(states, words, mask.reshape(-1).nonzero().squeeze(1))
    assert torch.allclose(got, expected, atol=1e-5)
    # The fused softmax's gradients are the written-out loss's, and padding gets none.
    parameters = [states, *objective.parameters()]
    for g_got, g_expected in zip(torch.autograd.grad(got, parameters), torch.autograd.grad(expected, parameters)):
        torch.testing.assert_close(g_got, g_expected, rtol=1e-4, atol=1e-6)
    assert (
        float(
            torch.autograd.grad(objective(states, words, mask.reshape(-1).nonzero().squeeze(1)), states)[0][1, 2:]
            .abs()
            .sum()
        )
        == 0.0
    )


def test_next_word_prediction_never_sees_the_next_word():
    """The forward half of the first layer at word t must not depend on word t+1 (or any
    later input); otherwise the objective is trivially solved by copying."""
    torch.manual_seed(0)
    model, batch = _tagger()
    model.eval()
    first = model.encode(batch)[0]
    changed = batch.words.clone()
    changed[0, 3:] = UNK_INDEX
    first_changed = model.encode(dataclasses.replace(batch, words=changed))[0]
    half = first.size(-1) // 2
    assert torch.equal(first[0, :3, :half], first_changed[0, :3, :half])
    assert not torch.allclose(first[0, 3:, :half], first_changed[0, 3:, :half])  # the change does reach it
    assert not torch.allclose(first[0, :3, half:], first_changed[0, :3, half:])  # and the backward half


def test_lm_loss_is_added_in_training_and_absent_from_inference():
    torch.manual_seed(0)
    model, batch = _tagger(weight=0.5)
    model.eval()  # no dropout: the two calls see the same network
    nll, lm_nll = model.training_losses(batch)
    assert lm_nll > 0
    assert torch.allclose(nll, model.loss(model(batch), batch))
    raw = model.neighbour_words(model.encode(batch)[0], batch.words, batch.real_word_positions())
    assert torch.allclose(lm_nll, 0.5 * raw)
    lm_nll.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.forward_layers[0].parameters())
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.encoder.forward_layers[1].parameters())

    plain, _ = _tagger(weight=0.0)
    assert plain.neighbour_words is None
    assert float(plain.training_losses(batch)[1]) == 0.0


def test_lm_vocab_is_capped_by_the_word_vocabulary():
    model, _ = _tagger(vocab=7500)
    assert model.neighbour_words.num_classes == model.word_embedding.num_embeddings
    model, _ = _tagger(vocab=4)
    assert model.neighbour_words.next_word[-1].out_features == 4


def test_training_samples_the_softmax_and_evaluation_computes_it_whole():
    """model.lm_loss_samples draws classes in training (a cheaper estimate of the cost,
    repeated under the same seed); in evaluation, or with 0 samples, the full softmax."""
    torch.manual_seed(0)
    objective = NeighbourWordObjective(state_size=3, hidden_size=4, num_classes=300, num_samples=40)
    words = torch.randint(1, 300, (4, 9))
    states = torch.randn(4, 9, 6)
    positions = torch.arange(words.numel())
    full = NeighbourWordObjective(state_size=3, hidden_size=4, num_classes=300, num_samples=0)
    full.load_state_dict(objective.state_dict())
    exact = full.train()(states, words, positions)
    assert torch.allclose(objective.eval()(states, words, positions), exact)
    objective.train()
    torch.manual_seed(1)
    sampled = objective(states, words, positions)
    torch.manual_seed(1)
    assert torch.equal(objective(states, words, positions), sampled)  # the same draws
    assert not torch.allclose(sampled, exact)  # an estimate over drawn classes, not the full sum
    # As many samples as classes: nothing to save, the full softmax.
    objective.num_samples = 300
    assert torch.allclose(objective(states, words, positions), exact)


def test_the_tagger_passes_lm_loss_samples_to_its_objective():
    vocabs = TaggingVocabs.fit(SENTENCES, "iobes", "iob2", lowercase_words=True)
    cfg = TaggerModelConfig(emb_size=8, hidden_size=6, lm_loss_weight=0.1, lm_loss_samples=77)
    assert build_tagger(cfg, vocabs, "iobes").neighbour_words.num_samples == 77
    assert TaggerModelConfig().lm_loss_samples == 1024  # the default: sampled


@pytest.mark.parametrize(
    "key,value", [("lm_loss_weight", -0.1), ("lm_loss_vocab", 2), ("lm_loss_hidden", 0), ("lm_loss_samples", -1)]
)
def test_bad_lm_loss_settings_name_the_key(key, value):
    with pytest.raises(ConfigError, match=f"model.{key}"):
        TaggerModelConfig(**{key: value})


def _tagger_with_feature_lm(bidirectional: bool, weight: float = 0.5, layers: str = "top"):
    from nlp_lstm.config import ModelConfig
    from nlp_lstm.models.lm import RNNLanguageModel

    vocabs = TaggingVocabs.fit(SENTENCES, "iobes", "iob2", lowercase_words=True)
    torch.manual_seed(0)
    lm = RNNLanguageModel(
        ModelConfig(emb_size=5, hidden_size=7, num_layers=1 if layers == "top" else 2, bidirectional=bidirectional), 12
    )
    cfg = TaggerModelConfig(
        emb_size=8,
        hidden_size=6,
        num_layers=2,
        char_emb_size=4,
        char_hidden_size=5,
        lm_loss_weight=weight,
        word_dropout=0.0,
        lm_features="lm",
        lm_features_layers=layers,
    )
    model = build_tagger(cfg, vocabs, "iobes")
    model = type(model)(cfg, len(vocabs.words), len(vocabs.chars), len(vocabs.tags), {}, lm=lm, lm_eos=2)
    batch = collate([encode(s, vocabs, "iobes", "iob2") for s in SENTENCES])
    batch.lm_ids = torch.where(batch.mask, batch.words % 8 + 3, torch.zeros_like(batch.words))
    # A word LM's stream: one token per word, so each word's first and last token is itself.
    batch.lm_lengths = batch.lengths
    batch.lm_first = batch.lm_last = torch.arange(batch.words.size(1)).expand_as(batch.words)
    return model.eval(), batch


def _with_word_changed(batch, position: int):
    """The batch with sentence 0's word at `position` replaced (word, its characters, its LM id)."""

    words, lm_ids, char_index = batch.words.clone(), batch.lm_ids.clone(), batch.char_index.clone()
    words[0, position] = UNK_INDEX
    lm_ids[0, position] = 11
    # Its characters: a new row of their own (a distinct word's row is shared by every
    # occurrence); sentence 0's words come first in char_index.
    row = batch.chars[char_index[position]]
    chars = torch.cat([batch.chars, torch.where(row > 0, 3, 0).unsqueeze(0)])
    char_index[position] = len(batch.chars)
    lengths = torch.cat([batch.char_lengths, batch.char_lengths[batch.char_index[position]].view(1)])
    return dataclasses.replace(
        batch, words=words, lm_ids=lm_ids, chars=chars, char_lengths=lengths, char_index=char_index
    )


@pytest.mark.parametrize("layers", ["top", "mix"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_lm_cost_never_sees_its_targets_through_feature_lm_states(bidirectional, layers):
    """Changing word 3 must leave the states that predict it unchanged: the first layer's
    forward state at word 2 (which predicts word 3) and its backward state at word 4 (which
    predicts word 3), whatever the feature LM's directions and layers read."""
    model, batch = _tagger_with_feature_lm(bidirectional, layers=layers)
    assert model.lm_size == 7 and (model.lm_mix is not None) == (layers == "mix")
    first = model.encode(batch)[0]
    changed = model.encode(_with_word_changed(batch, 3))[0]
    half = first.size(-1) // 2
    assert torch.equal(first[0, :3, :half], changed[0, :3, :half])  # forward states up to word 2
    assert torch.equal(first[0, 4:6, half:], changed[0, 4:6, half:])  # backward states from word 4
    assert not torch.allclose(first[0, 3, :half], changed[0, 3, :half])  # the change does reach word 3
    assert not torch.allclose(first[0, 3, half:], changed[0, 3, half:])


def test_without_the_lm_cost_both_directions_read_every_feature_lm_state():
    """Without the auxiliary cost there is nothing to leak: the first layer reads the whole
    input in both directions (ELMo-style), as before."""
    model, batch = _tagger_with_feature_lm(True, weight=0.0)
    assert not model.lm_directions_split
    first = model.encode(batch)[0]
    changed = model.encode(_with_word_changed(batch, 3))[0]
    half = first.size(-1) // 2
    assert not torch.allclose(first[0, 2, :half], changed[0, 2, :half])  # via the backward LM state
