import pytest
import torch
from torch import nn

from nlp_lstm.config import ModelConfig
from nlp_lstm.models.dropout import SequenceDropout, embedding_dropout
from nlp_lstm.models.lm import RNNLanguageModel
from nlp_lstm.models.rnn import RNNLayer, StackedRNN, detach_state


@pytest.mark.parametrize("cell, reference", [("lstm", nn.LSTM), ("gru", nn.GRU)])
def test_layer_matches_torch_rnn_with_same_weights(cell, reference):
    torch.manual_seed(0)
    layer = RNNLayer(cell, 5, 7)
    ref = reference(5, 7, batch_first=True)
    with torch.no_grad():
        ref.weight_ih_l0.copy_(layer.weight_ih)
        ref.weight_hh_l0.copy_(layer.weight_hh)
        ref.bias_ih_l0.copy_(layer.bias_ih)
        ref.bias_hh_l0.copy_(layer.bias_hh)
    x = torch.randn(3, 4, 5)
    state = layer.initial_state(3, "cpu")
    state = tuple(torch.randn_like(s) for s in state)
    out, new = layer(x, state)
    ref_out, ref_new = ref(x, state if cell == "lstm" else state[0])
    assert torch.allclose(out, ref_out, atol=1e-6)
    assert torch.allclose(new[0], ref_new[0] if cell == "lstm" else ref_new, atol=1e-6)


def test_weight_drop_is_dropconnect_in_training_only():
    torch.manual_seed(0)
    layer = RNNLayer("lstm", 4, 6, weight_drop=0.5)
    x = torch.randn(2, 5, 4)
    state = layer.initial_state(2, "cpu")
    layer.eval()
    assert torch.equal(layer(x, state)[0], layer(x, state)[0])
    layer.train()
    a, b = layer(x, state)[0], layer(x, state)[0]
    assert not torch.allclose(a, b)
    a.sum().backward()
    assert layer.weight_hh.grad is not None and layer.weight_hh.grad.abs().sum() > 0
    # the raw weight stays a plain parameter: nothing was re-registered
    assert [n for n, _ in layer.named_parameters()] == ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]


def test_locked_dropout_shares_mask_over_time():
    torch.manual_seed(0)
    drop = SequenceDropout(0.5, locked=True).train()
    y = drop(torch.ones(2, 6, 8))
    assert torch.equal(y[:, 0], y[:, 5])
    assert (y == 0).any()
    unlocked = SequenceDropout(0.5, locked=False).train()(torch.ones(2, 50, 8))
    assert not torch.equal(unlocked[:, 0], unlocked[:, 1])
    assert torch.equal(SequenceDropout(0.5).eval()(torch.ones(2, 3, 4)), torch.ones(2, 3, 4))


def test_embedding_dropout_drops_word_types_consistently():
    torch.manual_seed(1)
    emb = nn.Embedding(10, 4)
    tokens = torch.tensor([[1, 2, 1, 3, 1, 2]])
    out = embedding_dropout(emb, tokens, 0.5, training=True)
    zero = (out == 0).all(-1)[0]
    assert zero[0] == zero[2] == zero[4] and zero[1] == zero[5]
    assert torch.equal(embedding_dropout(emb, tokens, 0.5, training=False), emb(tokens))


def test_stacked_rnn_state_carries_across_windows():
    torch.manual_seed(0)
    rnn = StackedRNN("gru", 3, 5, 2).eval()
    x = torch.randn(2, 8, 3)
    full, _ = rnn(x)
    first, state = rnn(x[:, :5])
    second, _ = rnn(x[:, 5:], detach_state(state))
    assert torch.allclose(torch.cat([first, second], 1), full, atol=1e-6)


def test_tied_weights_with_projection():
    model = RNNLanguageModel(ModelConfig(emb_size=8, hidden_size=12, tie_weights=True), 30)
    assert model.decoder.weight is model.embedding.weight
    assert model.projection is not None and model.projection.in_features == 12
    untied = RNNLanguageModel(ModelConfig(emb_size=8, hidden_size=12), 30)
    assert untied.projection is None and untied.decoder.weight is not untied.embedding.weight


def test_bidirectional_lm_never_sees_its_target():
    """Forward logits at t depend only on tokens <= t; the backward direction reads the
    reversed text, so its logits at t depend only on tokens >= t in the original order."""
    torch.manual_seed(0)
    model = RNNLanguageModel(ModelConfig(emb_size=6, hidden_size=6, bidirectional=True), 20).eval()
    tokens = torch.randint(0, 20, (1, 10))
    changed = tokens.clone()
    changed[0, 6] = (tokens[0, 6] + 1) % 20
    fwd = lambda t: model.logits(model(t, model.initial_state(1)[0], 0)[0])  # noqa: E731
    bwd = lambda t: model.logits(model(t.flip(1), model.initial_state(1)[1], 1)[0]).flip(1)  # noqa: E731
    # forward input position 6 -> positions before it unchanged, it and after changed
    assert torch.allclose(fwd(tokens)[0, :6], fwd(changed)[0, :6])
    assert not torch.allclose(fwd(tokens)[0, 6:], fwd(changed)[0, 6:])
    assert torch.allclose(bwd(tokens)[0, 7:], bwd(changed)[0, 7:])
    assert not torch.allclose(bwd(tokens)[0, :7], bwd(changed)[0, :7])
    # the two directions have separate RNN weights
    assert model.rnns[0].layers[0].weight_hh.data_ptr() != model.rnns[1].layers[0].weight_hh.data_ptr()


def test_nll_sums_and_ignores_padding():
    torch.manual_seed(0)
    model = RNNLanguageModel(ModelConfig(emb_size=4, hidden_size=4), 9).eval()
    features, _ = model(torch.randint(0, 9, (2, 3)), model.initial_state(2)[0])
    targets = torch.tensor([[1, 2, 3], [4, -100, -100]])
    nll, count = model.nll(features, targets)
    logp = torch.log_softmax(model.logits(features), -1)
    expected = -(logp[0, 0, 1] + logp[0, 1, 2] + logp[0, 2, 3] + logp[1, 0, 4])
    assert int(count) == 4
    assert torch.allclose(nll, expected, atol=1e-5)
