import math

import numpy as np
import pytest
import torch

from nlp_lstm.config import ModelConfig
from nlp_lstm.inference.lm_scoring import score_stream
from nlp_lstm.metrics import lm_metrics
from nlp_lstm.models.generation import filter_logits, sample
from nlp_lstm.models.lm import RNNLanguageModel


def test_perplexity_is_exp_of_total_nll_over_total_tokens():
    # two "batches": 10 tokens with NLL 20, 30 tokens with NLL 30
    m = lm_metrics(50.0, 40)
    assert m["ppl"] == pytest.approx(math.exp(50 / 40))
    assert m["ppl"] != pytest.approx((math.exp(2.0) + math.exp(1.0)) / 2)  # not a mean of batch ppls


def test_word_ppl_and_bpc_for_subword_and_char_models():
    m = lm_metrics(100.0, tokens=80, words=20, chars=120, unit="sentencepiece")
    assert m["word_ppl"] == pytest.approx(math.exp(100 / 20))
    assert m["bpc"] == pytest.approx(100 / (120 * math.log(2)))
    assert "word_ppl" not in lm_metrics(100.0, 80, 80, 400, unit="word")


def test_score_stream_scores_every_token_whatever_the_batch_size():
    torch.manual_seed(0)
    model = RNNLanguageModel(ModelConfig(emb_size=8, hidden_size=8), 12)
    ids = np.random.default_rng(0).integers(0, 12, size=97)
    for batch_size in (1, 4, 10):
        out = score_stream(model, ids, 1, batch_size, 6, torch.device("cpu"))
        assert out["tokens"] == 97
    # batch size 1 is one continuous pass: equals a direct computation
    x = torch.tensor([[1] + ids[:-1].tolist()])
    features, _ = model.eval()(x, model.initial_state(1)[0])
    nll, _ = model.nll(features, torch.tensor([ids.tolist()]))
    assert score_stream(model, ids, 1, 1, 6, torch.device("cpu"))["loss"] == pytest.approx(
        float(nll.detach()) / 97, rel=1e-5
    )


def test_bidirectional_scores_report_both_directions():
    torch.manual_seed(0)
    model = RNNLanguageModel(ModelConfig(emb_size=8, hidden_size=8, bidirectional=True), 12)
    out = score_stream(model, np.arange(40) % 12, 1, 3, 5, torch.device("cpu"))
    assert {"ppl_forward", "ppl_backward", "ppl"} <= set(out)
    assert out["ppl"] == pytest.approx(math.sqrt(out["ppl_forward"] * out["ppl_backward"]), rel=1e-6)


def test_top_k_and_top_p_filtering():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, top_k=2)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.7)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.5)).tolist() == [[False, True, True, True]]
    assert not torch.isinf(filter_logits(logits, top_p=0.99)).any()


def test_seeded_sampling_is_reproducible_and_greedy_is_deterministic():
    torch.manual_seed(0)
    model = RNNLanguageModel(ModelConfig(emb_size=8, hidden_size=8), 15)
    run = lambda seed: sample(model, [3, 4], 20, 1.0, None, None, torch.Generator().manual_seed(seed), start_id=1)  # noqa
    assert run(7) == run(7)
    assert run(7) != run(8)
    assert sample(model, [3], 10, temperature=0, start_id=1) == sample(model, [3], 10, temperature=0, start_id=1)
    assert len(sample(model, [], 5, top_k=3, generator=torch.Generator().manual_seed(0), start_id=1)) == 5
