"""The AWD-LSTM presets build the paper's model: its size (24M parameters on PTB, 33M on
WikiText-2, Merity et al. 2017, Tables 1-2), a last layer of the embedding's size with
the softmax tied to the embedding and no projection, and the authors' settings."""

from __future__ import annotations

import pytest

from nlp_lstm.train_entry import compose_config


@pytest.mark.parametrize(
    "preset,vocab,params_m,batch,dropouts",
    [
        ("ptb_awd", "ptb", 24, 20, (0.1, 0.4, 0.25, 0.4)),
        ("wt2_awd", "wikitext2", 33, 80, (0.1, 0.65, 0.2, 0.4)),
    ],
)
def test_awd_presets_build_the_papers_model(tmp_path, preset, vocab, params_m, batch, dropouts):
    from nlp_lstm.data.registry import get_corpus
    from nlp_lstm.models.lm import RNNLanguageModel

    config = compose_config([f"experiment={preset}"], tmp_path / "run")
    m = config.model
    assert (m.num_layers, m.hidden_size, m.last_layer_size, m.emb_size, m.tie_weights) == (3, 1150, 400, 400, True)
    assert (m.dropout_embedding, m.dropout_input, m.dropout_hidden, m.dropout_output) == dropouts
    assert (m.weight_drop, m.activation_reg, m.temporal_activation_reg) == (0.5, 2.0, 1.0)
    assert (config.task.batch_size, config.task.bptt, config.task.variable_bptt) == (batch, 70, True)
    assert (
        config.optim.name,
        config.optim.lr,
        config.optim.clip_grad_norm,
        config.optim.weight_decay,
        config.optim.nonmono,
    ) == ("ntasgd", 30.0, 0.25, 1.2e-6, 5)
    sizes = {"ptb": 10_000, "wikitext2": 33_278}  # the corpora's vocabularies, <eos> included
    model = RNNLanguageModel(m, sizes[vocab])
    assert model.projection is None and model.decoder.weight is model.embedding.weight
    assert [layer.hidden_size for layer in model.rnns[0].layers] == [1150, 1150, 400]
    total = sum(p.numel() for p in model.parameters())
    assert abs(total / 1e6 - params_m) < 0.6, total
    assert get_corpus(vocab).name == vocab
