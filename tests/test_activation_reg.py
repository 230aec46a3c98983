"""AWD-LSTM's activation regularisers (model.activation_reg, model.temporal_activation_reg):
values against a hand computation, training loss only, logged separately."""

import math

import pytest
import torch
import torch.nn.functional as F

from helpers.corpora import TINY_MODEL, text_data_overrides
from helpers.runs import run_train
from nlp_lstm.config import ModelConfig, TaggerModelConfig
from nlp_lstm.errors import ConfigError
from nlp_lstm.models.lm import RNNLanguageModel


def _by_hand(model, x, y, alpha, beta):
    """NLL mean + alpha * mean(out ** 2) + beta * mean((out[t] - out[t-1]) ** 2), written out
    with nn.functional on the layers' own weights (no dropout: dropped == raw)."""
    with torch.no_grad():
        h = model.embedding(x)
        for layer in model.rnns[0].layers:
            state = layer.initial_state(x.size(0), "cpu")
            h, _ = layer(h, state)
        logits = F.linear(h, model.decoder.weight, model.decoder.bias)
    nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
    squares = sum(float(v) ** 2 for v in h.flatten()) / h.numel()
    diffs = h[:, 1:] - h[:, :-1]
    temporal = sum(float(v) ** 2 for v in diffs.flatten()) / diffs.numel()
    return float(nll), alpha * squares, beta * temporal


def test_regularisers_equal_a_hand_computation():
    torch.manual_seed(0)
    cfg = ModelConfig(emb_size=6, hidden_size=6, num_layers=2, activation_reg=2.0, temporal_activation_reg=1.0)
    model = RNNLanguageModel(cfg, 11)
    x, y = torch.randint(0, 11, (3, 7)), torch.randint(0, 11, (3, 7))
    features, _, (raw, dropped) = model.forward_with_activations(x, model.initial_state(3)[0])
    ar, tar = model.activation_regularisers(raw, dropped)
    nll, ar_hand, tar_hand = _by_hand(model, x, y, 2.0, 1.0)
    assert float(ar.detach()) == pytest.approx(ar_hand, rel=1e-5)
    assert float(tar.detach()) == pytest.approx(tar_hand, rel=1e-5)
    total, count = model.nll(features, y)
    assert float(total.detach()) / int(count) == pytest.approx(nll, rel=1e-5)


def test_activation_reg_reads_the_dropped_output_and_temporal_the_undropped():
    torch.manual_seed(0)
    cfg = ModelConfig(
        emb_size=6, hidden_size=6, num_layers=1, dropout_output=0.5, activation_reg=1.0, temporal_activation_reg=1.0
    )
    model = RNNLanguageModel(cfg, 11).train()
    x = torch.randint(0, 11, (4, 9))
    _, _, (raw, dropped) = model.forward_with_activations(x, model.initial_state(4)[0])
    assert not torch.equal(raw, dropped)
    with torch.no_grad():
        ar, tar = model.activation_regularisers(raw, dropped)
        assert float(ar) == pytest.approx(float(dropped.pow(2).mean()))
        assert float(tar) == pytest.approx(float((raw[:, 1:] - raw[:, :-1]).pow(2).mean()))


def test_training_logs_them_separately_and_train_loss_stays_the_nll(tmp_path, text_corpus):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    run_train(
        run_dir,
        text_data_overrides(text_corpus)
        + TINY_MODEL
        + [
            "model.activation_reg=2",
            "model.temporal_activation_reg=1",
            "trainer.max_steps=6",
            "trainer.max_epochs=null",
            "trainer.max_time=null",
        ],
        tmp_path / "data",
    )
    events = EventAccumulator(str(run_dir)).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/activation_reg", "train/temporal_activation_reg", "train/loss"} <= tags
    ar = [e.value for e in events.Scalars("train/activation_reg")]
    loss = [e.value for e in events.Scalars("train/loss")]
    ppl = [e.value for e in events.Scalars("train/ppl")]
    assert all(v > 0 for v in ar)
    assert all(math.exp(nll) == pytest.approx(p, rel=1e-4) for nll, p in zip(loss, ppl))  # ppl of the NLL alone


@pytest.mark.parametrize("key", ["activation_reg", "temporal_activation_reg"])
def test_bad_values_and_taggers_are_refused(key):
    with pytest.raises(ConfigError, match=f"model.{key}"):
        ModelConfig(**{key: -1.0})
    with pytest.raises(ConfigError, match=f"model.{key}=1.0: is for language models only"):
        TaggerModelConfig(**{key: 1.0})
