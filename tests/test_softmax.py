"""The fused full softmax against the textbook one, and the adaptive softmax head."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from nlp_lstm import speed_choices
from nlp_lstm.config import ModelConfig
from nlp_lstm.data.lm_batches import IGNORE_INDEX
from nlp_lstm.errors import ConfigError
from nlp_lstm.models.lm import RNNLanguageModel
from nlp_lstm.models.softmax import (
    PRODUCT_LAYOUTS,
    ROW_CHUNK,
    SCORING_LAYOUTS,
    WEIGHT_GRADIENT_CLASSES,
    AdaptiveSoftmax,
    _nll_and_logit_gradient,
    _scoring_nll,
    linear_cross_entropy,
    log_uniform_draws,
    log_uniform_probability,
    log_uniform_sample,
    sampled_softmax_nll,
)


def _problem(n=2 * ROW_CHUNK + 37, d=24, vocab=301, seed=0):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(n, d, generator=g, requires_grad=True)
    weight = (torch.randn(vocab, d, generator=g) * 0.3).requires_grad_()
    bias = (torch.randn(vocab, generator=g) * 0.1).requires_grad_()
    targets = torch.randint(0, vocab, (n,), generator=g)
    targets[::7] = IGNORE_INDEX  # padding positions must neither count nor get gradient
    return features, weight, bias, targets


def _grads(loss, *tensors):
    return torch.autograd.grad(loss, tensors)


def test_fused_cross_entropy_equals_textbook_in_fp32():
    features, weight, bias, targets = _problem()
    expected = F.cross_entropy(F.linear(features, weight, bias), targets, ignore_index=IGNORE_INDEX, reduction="sum")
    got = linear_cross_entropy(features, weight, bias, targets)
    assert got.dtype == torch.float32
    assert float(got.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    # A non-unit upstream gradient (the trainer divides by the token count).
    for g_exp, g_got in zip(_grads(expected / 3.0, features, weight, bias), _grads(got / 3.0, features, weight, bias)):
        torch.testing.assert_close(g_got, g_exp, rtol=1e-4, atol=1e-6)


def test_fused_cross_entropy_ignored_rows_get_zero_gradient():
    features, weight, bias, targets = _problem()
    (grad_features,) = _grads(linear_cross_entropy(features, weight, bias, targets), features)
    ignored = targets == IGNORE_INDEX
    assert ignored.any()
    assert torch.all(grad_features[ignored] == 0)
    assert torch.all(grad_features[~ignored].abs().sum(1) > 0)


def test_fused_cross_entropy_under_bf16_autocast_stays_close_to_fp32():
    features, weight, bias, targets = _problem(vocab=2000)
    exact = linear_cross_entropy(features, weight, bias, targets)
    exact_grads = _grads(exact, features, weight, bias)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = linear_cross_entropy(features, weight, bias, targets)
    assert low.dtype == torch.float32  # the loss is accumulated in fp32
    assert float(low.detach()) == pytest.approx(float(exact.detach()), rel=2e-2)
    low_grads = _grads(low, features, weight, bias)
    for g_low, g_exact, param in zip(low_grads, exact_grads, (features, weight, bias)):
        assert g_low.dtype == param.dtype == torch.float32  # master-precision gradients
        cosine = F.cosine_similarity(g_low.flatten(), g_exact.flatten(), dim=0)
        assert cosine > 0.999


@pytest.mark.parametrize(
    "layout",
    [
        "1 rows",
        "5 rows",
        f"{ROW_CHUNK} rows",
        f"{2 * ROW_CHUNK + 37} rows",
        "all rows",
        "1 classes",
        "37 classes",
        "256 classes",
        "all classes",
        *PRODUCT_LAYOUTS,
    ],
)
def test_every_product_layout_gives_the_textbook_nll_and_logit_gradient(layout):
    """Whichever products the timing picks, the numbers are the same: the last product may
    be short (rows or classes), and a log-softmax chunk never crosses a row block's end."""
    features, weight, bias, targets = _problem()
    with torch.no_grad():
        nll, grad_logits = _nll_and_logit_gradient(features, weight, bias, targets, layout)
        logits = F.linear(features, weight, bias)
        expected = F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum")
        one_hot = F.one_hot(targets.clamp(min=0), weight.size(0)).float()
        expected_grad = (torch.softmax(logits, dim=1) - one_hot) * (targets != IGNORE_INDEX)[:, None]
    assert float(nll) == pytest.approx(float(expected), rel=1e-5)
    torch.testing.assert_close(grad_logits, expected_grad, rtol=1e-4, atol=1e-6)


def test_the_products_are_timed_once_on_the_shapes(tmp_path, monkeypatch):
    monkeypatch.setenv(speed_choices.CACHE_DIR_ENV, str(tmp_path))
    speed_choices.forget_in_process()
    features, weight, bias, targets = _problem()
    linear_cross_entropy(features, weight, bias, targets).backward()
    with torch.no_grad():
        linear_cross_entropy(features, weight, bias, targets)
    saved = json.loads((tmp_path / speed_choices.CACHE_FILE).read_text())[
        speed_choices.machine_key(torch.device("cpu"))
    ]
    for what, candidates in [
        ("softmax products", PRODUCT_LAYOUTS),
        ("softmax weight-gradient classes per product", WEIGHT_GRADIENT_CLASSES),
        ("softmax scoring products", SCORING_LAYOUTS),
    ]:
        record = saved[f"{what} | 301 classes x 24, float32"]
        assert record["choice"] in candidates and set(record["ms"]) <= set(candidates), what
    speed_choices.forget_in_process()


@pytest.mark.parametrize("layout", SCORING_LAYOUTS)
def test_scoring_in_every_layout_matches_the_textbook_nll(layout, tmp_path, monkeypatch):
    """Scoring (no gradient) in row blocks of up to EVAL_ROW_CHUNK, classes per product as
    the timing picks: the cached choice is what the scoring reads."""
    monkeypatch.setenv(speed_choices.CACHE_DIR_ENV, str(tmp_path))
    speed_choices.forget_in_process()
    features, weight, bias, targets = _problem(n=1500)
    key = speed_choices.machine_key(torch.device("cpu"))
    (tmp_path / speed_choices.CACHE_FILE).write_text(
        json.dumps(
            {
                key: {
                    "softmax scoring products | 301 classes x 24, float32": {
                        "choice": layout,
                        "candidates": sorted(SCORING_LAYOUTS),
                    }
                }
            }
        )
    )
    with torch.no_grad():
        got = linear_cross_entropy(features, weight, bias, targets)
        expected = F.cross_entropy(
            F.linear(features, weight, bias), targets, ignore_index=IGNORE_INDEX, reduction="sum"
        )
    assert float(got) == pytest.approx(float(expected), rel=1e-5)
    # the cached choice was read, not timed again (a timing would have written its "ms")
    record = json.loads((tmp_path / speed_choices.CACHE_FILE).read_text())[key]
    assert record["softmax scoring products | 301 classes x 24, float32"] == {
        "choice": layout,
        "candidates": sorted(SCORING_LAYOUTS),
    }
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = linear_cross_entropy(features, weight, bias, targets)
    assert low.dtype == torch.float32 and float(low) == pytest.approx(float(expected), rel=2e-2)
    speed_choices.forget_in_process()


def test_fused_cross_entropy_without_grad_matches_and_keeps_no_graph():
    features, weight, bias, targets = _problem()
    with torch.no_grad():
        got = linear_cross_entropy(features, weight, bias, targets)
        expected = F.cross_entropy(
            F.linear(features, weight, bias), targets, ignore_index=IGNORE_INDEX, reduction="sum"
        )
    assert got.grad_fn is None
    assert float(got.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)


def test_adaptive_softmax_log_probs_normalise_and_nll_matches_them():
    torch.manual_seed(0)
    head = AdaptiveSoftmax(16, 50, [10, 30], 2.0)
    features = torch.randn(3, 5, 16)
    targets = torch.randint(0, 50, (3, 5))
    targets[0, 0] = IGNORE_INDEX
    log_probs = head.log_probs(features)
    assert log_probs.shape == (3, 5, 50)
    torch.testing.assert_close(torch.logsumexp(log_probs, -1), torch.zeros(3, 5), atol=1e-5, rtol=0)
    keep = targets != IGNORE_INDEX
    expected = -log_probs[keep].gather(1, targets[keep][:, None]).sum()
    assert float(head.nll(features, targets).detach()) == pytest.approx(float(expected.detach()), rel=1e-5)


@pytest.mark.parametrize("clusters_from", ["host", "device"])
def test_adaptive_softmax_loss_equals_pytorchs_module_in_value_and_gradients(clusters_from):
    """Our loss (rows per cluster given beforehand, no nonzero() in the step) against
    nn.AdaptiveLogSoftmaxWithLoss's own forward on the same parameters."""
    torch.manual_seed(0)
    head = AdaptiveSoftmax(16, 60, [10, 25, 40], 2.0)
    features = torch.randn(4, 7, 16, requires_grad=True)
    targets = torch.randint(0, 60, (4, 7))
    targets[1, 3] = targets[2, 0] = IGNORE_INDEX
    targets[3, 6] = 59  # the last word of the last cluster
    clusters = head.cluster_rows(targets) if clusters_from == "host" else None
    ours = head.nll(features, targets, clusters)
    grads = torch.autograd.grad(ours, [features, *head.parameters()])
    keep = targets.reshape(-1) != IGNORE_INDEX
    theirs = -head.adaptive(features.reshape(-1, 16)[keep], targets.reshape(-1)[keep]).output.sum()
    expected = torch.autograd.grad(theirs, [features, *head.parameters()])
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert [len(rows) for rows, _ in head.cluster_rows(targets)] == [
        int(((targets >= lo) & (targets < hi)).sum()) for lo, hi in ((10, 25), (25, 40), (40, 60))
    ]


def _lm_config(**overrides):
    base = dict(cell="lstm", emb_size=16, hidden_size=16, num_layers=1, tie_weights=False)
    base.update(overrides)
    return ModelConfig(**base)


def test_language_model_with_adaptive_softmax_learns():
    torch.manual_seed(0)
    model = RNNLanguageModel(
        _lm_config(softmax="adaptive", adaptive_cutoffs=[8, 20], adaptive_div_value=2.0), vocab_size=40
    )
    tokens = torch.arange(40).repeat(4).view(4, 40) % 40
    x, y = tokens[:, :-1], tokens[:, 1:]
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(200):
        features, _ = model(x, model.initial_state(4)[0])
        nll, count = model.nll(features, y)
        loss = nll / count
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[0] > math.log(40) * 0.8
    assert losses[-1] < 0.5  # a deterministic successor is learnt
    assert model.logits(features).shape == (4, 39, 40)


def test_adaptive_softmax_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="model.tie_weights"):
        _lm_config(softmax="adaptive", tie_weights=True)
    with pytest.raises(ConfigError, match="model.adaptive_cutoffs"):
        _lm_config(softmax="adaptive", adaptive_cutoffs=[30, 10])
    with pytest.raises(ConfigError, match="model.softmax"):
        _lm_config(softmax="sampled")


def test_adaptive_cutoffs_beyond_a_small_vocabulary_are_dropped():
    # The default LM is adaptive with cutoffs for a WikiText-sized vocabulary: on a small
    # corpus the clusters that would be empty go, and with none left the softmax is full.
    model = RNNLanguageModel(_lm_config(softmax="adaptive", adaptive_cutoffs=[10, 100]), vocab_size=50)
    assert model.adaptive.adaptive.cutoffs == [10, 50]  # (torch appends the vocabulary size)
    model = RNNLanguageModel(_lm_config(softmax="adaptive", adaptive_cutoffs=[49, 100]), vocab_size=50)
    assert model.adaptive.adaptive.cutoffs == [49, 50]  # the last allowed cutoff: a one-word tail
    model = RNNLanguageModel(_lm_config(softmax="adaptive", adaptive_cutoffs=[2000, 10000]), vocab_size=50)
    assert model.adaptive is None and model.decoder.weight.shape == (50, model.decoder_in)
    features = torch.randn(2, 3, model.decoder_in)
    assert torch.allclose(torch.log_softmax(model.logits(features), -1).exp().sum(-1), torch.ones(2, 3), atol=1e-5)


# --------------------------------------------------------------------------- sampled softmax
def test_log_uniform_draws_follow_the_log_uniform_distribution():
    torch.manual_seed(0)
    num_classes, draws = 50, 200_000
    counts = torch.bincount(log_uniform_sample(draws, num_classes, torch.device("cpu")), minlength=num_classes)
    expected = log_uniform_probability(torch.arange(num_classes), num_classes) * draws
    assert float(expected.sum()) == pytest.approx(draws)  # a distribution over exactly 0..V-1
    assert counts.numel() == num_classes  # nothing drawn past the last class
    # within 4 standard deviations of each class's binomial count
    assert bool(((counts.double() - expected).abs() < 4 * expected.sqrt() + 1).all()), (counts, expected)
    drawn = log_uniform_draws(300, num_classes, torch.device("cpu"))
    assert drawn.unique().numel() == drawn.numel() and drawn.min() >= 0 and drawn.max() < num_classes
    assert bool((drawn[1:] > drawn[:-1]).all())  # distinct and sorted


def test_sampled_softmax_nll_written_out_with_corrections_and_an_accidental_hit():
    torch.manual_seed(0)
    num_classes, num_samples = 6, 4
    features = torch.randn(3, 5)
    weight, bias = torch.randn(num_classes, 5), torch.randn(num_classes)
    targets = torch.tensor([2, 3, IGNORE_INDEX])
    drawn = torch.tensor([0, 2, 5])  # row 0's target is among the draws: left out of its softmax

    def q(k):  # chance that class k is among 4 log-uniform draws
        p = math.log((k + 2) / (k + 1)) / math.log(num_classes + 1)
        return 1 - (1 - p) ** num_samples

    expected = 0.0
    for row, target in [(0, 2), (1, 3)]:
        logits = {k: float(features[row] @ weight[k] + bias[k]) - math.log(q(k)) for k in range(num_classes)}
        others = [logits[k] for k in drawn.tolist() if k != target]
        expected += math.log(sum(math.exp(v) for v in [logits[target], *others])) - logits[target]
    got = sampled_softmax_nll(features, weight, bias, targets, num_samples, drawn=drawn)
    assert got.dtype == torch.float32 and float(got) == pytest.approx(expected, rel=1e-5)


def test_a_model_trained_on_the_sampled_softmax_learns_the_full_softmax():
    """The sampled loss's gradient moves the full softmax's NLL: 40 contexts, each with a
    deterministic next class among 500, trained on 32 draws a step."""
    torch.manual_seed(0)
    num_classes, contexts = 500, 40
    targets = torch.randint(0, num_classes, (contexts,))
    features = torch.nn.Parameter(torch.randn(contexts, 16) * 0.1)
    weight = torch.nn.Parameter(torch.randn(num_classes, 16) * 0.1)
    bias = torch.nn.Parameter(torch.zeros(num_classes))
    optimizer = torch.optim.Adam([features, weight, bias], lr=0.05)
    full = lambda: float(linear_cross_entropy(features, weight, bias, targets).detach()) / contexts  # noqa: E731
    before = full()
    for _ in range(300):
        optimizer.zero_grad()
        sampled_softmax_nll(features, weight, bias, targets, 32).backward()
        optimizer.step()
    assert before > math.log(num_classes) - 0.1
    assert full() < 0.5


def test_scoring_is_finite_where_the_first_classes_are_masked_out():
    """A row whose first block of classes is all -inf (a bias of -inf masks classes out)
    has nothing to rescale yet: the running log-sum-exp must not make it NaN."""
    features, weight, bias, targets = _problem()
    bias = bias.detach().clone()
    bias[:100] = -math.inf
    targets = targets.clamp(min=100)
    with torch.no_grad():
        expected = F.cross_entropy(F.linear(features, weight, bias), targets, reduction="sum")
        got = _scoring_nll(features, weight, bias, targets, 64)
    assert math.isfinite(float(got)) and float(got) == pytest.approx(float(expected), rel=1e-5)


def test_no_rows_give_a_zero_loss_and_zero_gradients(tmp_path, monkeypatch):
    monkeypatch.setenv(speed_choices.CACHE_DIR_ENV, str(tmp_path))
    speed_choices.forget_in_process()
    _, weight, bias, _ = _problem()
    features = torch.zeros(0, weight.size(1), requires_grad=True)
    loss = linear_cross_entropy(features, weight, bias, torch.zeros(0, dtype=torch.long))
    loss.backward()
    assert float(loss.detach()) == 0.0 and float(weight.grad.abs().sum()) == 0.0
    speed_choices.forget_in_process()


def test_sampled_softmax_needs_a_sample():
    features, weight, bias, targets = _problem()
    with pytest.raises(ValueError, match="num_samples"):
        sampled_softmax_nll(features, weight, bias, targets, 0)


def test_the_scoring_choice_is_timed_on_a_batch_of_rows_even_for_one_short_text(tmp_path, monkeypatch):
    """The first scoring call decides for every later one (the choice is kept), so a
    three-token text is timed as at least SCORING_TIMING_ROWS rows."""
    from nlp_lstm.models import softmax

    monkeypatch.setenv(speed_choices.CACHE_DIR_ENV, str(tmp_path))
    speed_choices.forget_in_process()
    timed_rows = []
    real = softmax._scoring_nll

    def recording(x, *args):
        timed_rows.append(x.size(0))
        return real(x, *args)

    monkeypatch.setattr(softmax, "_scoring_nll", recording)
    features, weight, bias, targets = _problem(n=3)
    with torch.no_grad():
        got = linear_cross_entropy(features, weight, bias, targets)
        expected = F.cross_entropy(
            F.linear(features, weight, bias), targets, ignore_index=IGNORE_INDEX, reduction="sum"
        )
    assert float(got) == pytest.approx(float(expected), rel=1e-5)  # the text's own rows, scored once
    assert timed_rows[-1] == 3 and min(timed_rows[:-1]) >= softmax.SCORING_TIMING_ROWS
    speed_choices.forget_in_process()
