"""The neural cache pointer against a brute-force per-token interpolation on a tiny model."""

import copy
import json
import math

import numpy as np
import pytest
import torch

from helpers.runs import run_cli
from nlp_lstm.config import ModelConfig
from nlp_lstm.inference.lm_cache import score_with_cache
from nlp_lstm.models.lm import RNNLanguageModel


def _brute_force(model, ids, eos, size, theta, lam):
    """One row, token by token: the model reads <eos> then the stream; at each position t the
    cache holds the states of the `size` previous positions and the tokens that followed.
    In log space, in float64: exact for tokens of any probability."""
    model.eval()
    with torch.no_grad():
        inputs = torch.tensor([[eos] + list(ids[:-1])])
        features, _ = model(inputs, model.initial_state(1)[0], 0)
        features = features[0].float()
        log_probs = torch.log_softmax(model.logits(features).float(), -1)
    plain = cached = 0.0
    for t, target in enumerate(ids):
        log_model = float(log_probs[t, target])
        plain -= log_model
        history = range(max(0, t - size), t)
        if not history:
            cached -= log_model
            continue
        scores = [theta * float(features[t] @ features[i]) for i in history]
        top = max(scores)
        weights = [math.exp(s - top) for s in scores]
        p_cache = sum(w for w, i in zip(weights, history) if ids[i] == target) / sum(weights)
        terms = [math.log(1 - lam) + log_model] if lam < 1 else []
        if lam > 0 and p_cache > 0:
            terms.append(math.log(lam) + math.log(p_cache))
        top = max(terms)
        cached -= top + math.log(sum(math.exp(x - top) for x in terms))
    return plain, cached


# The default LM's adaptive softmax as well as the full one.
SOFTMAXES = {"full": {}, "adaptive": {"softmax": "adaptive", "adaptive_cutoffs": [6]}}


@pytest.mark.parametrize("softmax", sorted(SOFTMAXES))
@pytest.mark.parametrize("bptt, size", [(4, 3), (5, 100), (3, 7)])
def test_cache_equals_brute_force_per_token_interpolation(bptt, size, softmax):
    torch.manual_seed(0)
    model = RNNLanguageModel(ModelConfig(emb_size=8, hidden_size=8, num_layers=1, **SOFTMAXES[softmax]), 12)
    rng = np.random.default_rng(1)
    ids = rng.integers(2, 12, size=23)
    ids[[5, 11, 17]] = 1  # line ends (eos)
    result = score_with_cache(model, ids, 1, 1, bptt, torch.device("cpu"), size, [(0.5, 0.3), (1.0, 0.0)])
    plain, cached = _brute_force(model, list(ids), 1, size, 0.5, 0.3)
    assert result["tokens"] == len(ids)
    assert result["nll"] == pytest.approx(plain, rel=1e-5)
    assert result["cache"][(0.5, 0.3)] == pytest.approx(cached, rel=1e-5)
    assert result["cache"][(1.0, 0.0)] == pytest.approx(plain, rel=1e-5)  # lambda 0: the model alone


def test_no_token_is_in_the_cache_before_it_is_scored():
    """Changing a later token never changes the probability given to an earlier one."""
    torch.manual_seed(0)
    model = RNNLanguageModel(ModelConfig(emb_size=8, hidden_size=8, num_layers=1), 12)
    ids = np.array([3, 4, 5, 3, 4, 5, 3, 4, 5, 6])
    changed = ids.copy()
    changed[-1] = 7
    a = score_with_cache(model, ids[:-1], 1, 1, 4, torch.device("cpu"), 50, [(1.0, 0.5)])
    b = score_with_cache(model, changed[:-1], 1, 1, 4, torch.device("cpu"), 50, [(1.0, 0.5)])
    assert a == b


def test_repeated_text_gets_a_lower_perplexity_with_the_cache(trained_lm):
    """The CLI on the toy corpus repeated: the cache helps, the plain ppl is the one of
    `nlp-lstm evaluate` without it on as many rows, and each setting is reported with its
    speed."""
    model = str(trained_lm["run_dir"] / "model")
    out = run_cli(
        [
            "evaluate",
            model,
            "--split",
            "valid",
            "--data-dir",
            str(trained_lm["data_dir"]),
            "--batch-size",
            "1",
            "--cache-size",
            "200",
            "--cache-theta",
            "0.3,1.0",
            "--cache-lambda",
            "0.1,0.3",
        ]
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    cache = report["cache"]
    assert cache["rows"] == 1 and cache["ppl_without"] == pytest.approx(report["ppl"], rel=1e-4)
    assert len(cache["settings"]) == 4 and cache["tokens_per_sec"] > 0 and report["tokens_per_sec"] > 0
    assert [s["ppl"] for s in cache["settings"]] == sorted(s["ppl"] for s in cache["settings"])  # best first


def test_the_cache_lowers_perplexity_on_repeated_text(trained_lm):
    """Text the model finds surprising, repeated: the cache remembers what followed."""
    import nlp_lstm

    lm = nlp_lstm.load(trained_lm["run_dir"] / "model", device="cpu")
    lines = ["river the found mat past bird talked committee sister"] * 15
    report = lm.score_lines_with_cache(lines, 500, [(0.3, 0.3)], batch_size=1)
    assert report["cache"][0]["ppl"] < 0.5 * report["ppl"]


def test_cache_nll_is_exact_for_tokens_of_tiny_probability():
    """A token the model gives log p = -300: exp then log in fp32 made the plain NLL
    infinite, and a clamp at 1e-30 capped the cache's NLL of such a token at 69 nats."""
    torch.manual_seed(0)
    model = RNNLanguageModel(ModelConfig(emb_size=8, hidden_size=8, num_layers=1), 12)
    with torch.no_grad():
        model.decoder.bias[3] = -300.0
    ids = np.array([4, 5, 3, 6, 4, 5, 3, 7, 2, 3])
    result = score_with_cache(model, ids, 1, 1, 4, torch.device("cpu"), 50, [(0.5, 0.3), (1.0, 0.0)])
    plain, cached = _brute_force(model, list(ids), 1, 50, 0.5, 0.3)
    assert plain > 900  # three tokens of about 300 nats each
    assert result["nll"] == pytest.approx(plain, rel=1e-5)
    assert result["cache"][(0.5, 0.3)] == pytest.approx(cached, rel=1e-5)
    assert result["cache"][(1.0, 0.0)] == pytest.approx(plain, rel=1e-5)


def _surprising_block(lm, lines=7, words=10, seed=0):
    """Lines of the model's own words in a random order: text it finds surprising."""
    import random

    vocab = [w for w in lm.tokenizer.token_strings(range(lm.tokenizer.vocab_size)) if w.isalpha()]
    rng = random.Random(seed)
    return [" ".join(rng.choice(vocab) for _ in range(words)) for _ in range(lines)]


def test_cache_scores_the_text_in_one_row_by_default(trained_lm, tmp_path, capsys):
    """A block repeated 8 times, scored by `evaluate` with the cache: the text is read as one
    row with one cache (the brute force's number), not cut into --batch-size rows each with
    its own cache that never sees the block repeat; the report says how many rows."""
    import nlp_lstm
    from nlp_lstm.cli import main

    lm = nlp_lstm.load(trained_lm["run_dir"] / "model", device="cpu")
    lines = _surprising_block(lm) * 8
    text = tmp_path / "repeated.txt"
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert (
        main(
            [
                "evaluate",
                str(trained_lm["run_dir"] / "model"),
                str(text),
                "--cache-size",
                "200",
                "--cache-theta",
                "0.5",
                "--cache-lambda",
                "0.5",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    ids = lm.tokenizer.encode_lines(lines)
    _, cached = _brute_force(lm.model, ids, lm.tokenizer.eos_id, 200, 0.5, 0.5)
    assert report["cache"]["rows"] == 1
    assert report["cache"]["settings"][0]["ppl"] == pytest.approx(math.exp(cached / len(ids)), rel=1e-4)
    assert report["cache"]["settings"][0]["ppl"] < 0.5 * report["ppl"]


def test_cache_rows_are_never_shorter_than_the_cache():
    """More rows asked for than the text fills with `size` tokens each: fewer, longer rows."""
    model = _tiny_lm()
    ids = np.random.default_rng(5).integers(2, 12, size=100)
    result = score_with_cache(model, ids, 1, 8, 5, torch.device("cpu"), 30, [(0.5, 0.3)])
    assert result["rows"] == 3  # 100 tokens: rows of at least 30
    assert result == score_with_cache(model, ids, 1, 3, 5, torch.device("cpu"), 30, [(0.5, 0.3)])
    assert score_with_cache(model, ids[:20], 1, 8, 5, torch.device("cpu"), 30, [(0.5, 0.3)])["rows"] == 1


def test_bad_cache_lambda_is_one_line(trained_lm):
    out = run_cli(
        [
            "evaluate",
            str(trained_lm["run_dir"] / "model"),
            "--data-dir",
            str(trained_lm["data_dir"]),
            "--cache-size",
            "10",
            "--cache-lambda",
            "1.5",
        ]
    )
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "error: --cache-lambda [1.5]: each must be in [0, 1]"
    ]


# ------------------------------------------------------------------ dynamic evaluation
def _tiny_lm(softmax: str = "full"):
    torch.manual_seed(0)
    return RNNLanguageModel(ModelConfig(emb_size=8, hidden_size=8, num_layers=1, **SOFTMAXES[softmax]), 12)


@pytest.mark.parametrize("softmax", sorted(SOFTMAXES))
@pytest.mark.parametrize("method", ["sgd", "rms"])
def test_dynamic_evaluation_never_sees_a_token_before_scoring_it(method, softmax):
    """Changing the token at position k leaves the NLL of every token before it unchanged
    (in its own window, which is scored before its update, and all earlier ones); with lr 0
    it is ordinary evaluation."""
    from nlp_lstm.inference.lm_dynamic import gradient_statistics, score_dynamic
    from nlp_lstm.inference.lm_scoring import score_stream

    model = _tiny_lm(softmax)
    rng = np.random.default_rng(2)
    ids = rng.integers(2, 12, size=40)
    statistics = gradient_statistics(model, rng.integers(2, 12, size=50), 1, 2, 5, torch.device("cpu"))

    def run(stream, lr):
        return score_dynamic(
            model, stream, 1, 1, 5, torch.device("cpu"), lr, 0.01, method, statistics=statistics, per_token=True
        )

    lr = 0.5 if method == "sgd" else 0.002
    base = run(ids, lr)
    for k in (7, 23, 39):
        changed = ids.copy()
        changed[k] = 2 if ids[k] != 2 else 3
        other = run(changed, lr)
        assert torch.equal(base["per_token"][0, :k], other["per_token"][0, :k]), k
        if k + 1 < len(ids):
            assert not torch.equal(base["per_token"][0, k + 1 :], other["per_token"][0, k + 1 :])
    static = score_stream(model, ids, 1, 1, 5, torch.device("cpu"))
    assert run(ids, 0.0)["nll"] == pytest.approx(static["loss"] * static["tokens"], rel=1e-5)
    before = [p.clone() for p in model.parameters()]
    run(ids, lr)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # the given model is untouched


def test_dynamic_evaluation_lowers_perplexity_on_repeated_text(trained_lm):
    import nlp_lstm

    lm = nlp_lstm.load(trained_lm["run_dir"] / "model", device="cpu")
    lines = ["river the found mat past bird talked committee sister"] * 40
    static = lm.score_lines(lines, batch_size=1)["ppl"]
    train = trained_lm["corpus"]["train"].read_text(encoding="utf-8").splitlines()
    for method, lr in (("sgd", 1.0), ("rms", 0.003)):
        report = lm.score_lines_dynamic(lines, lr, 0.0, method, train_lines=train)
        assert report["ppl"] == pytest.approx(static, rel=1e-5)  # the plain ppl on the same one row
        assert report["settings"][0]["ppl"] < 0.7 * static, method


def _evaluate_json(args, capsys):
    from nlp_lstm.cli import main

    assert main(["evaluate", *args]) == 0
    return json.loads(capsys.readouterr().out)


def _write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_evaluate_cli_takes_rms_statistics_from_the_training_split(trained_lm, tmp_path, capsys):
    """On a file as on a split, `rms` reads the model's training split for its gradient
    statistics: the numbers are the API's with the training text given."""
    import nlp_lstm

    lm = nlp_lstm.load(trained_lm["run_dir"] / "model", device="cpu")
    lines = ["river the found mat past bird talked committee sister"] * 10
    report = _evaluate_json(
        [
            str(trained_lm["run_dir"] / "model"),
            _write_lines(tmp_path / "odd.txt", lines),
            "--data-dir",
            str(trained_lm["data_dir"]),
            "--dynamic-eval",
            "rms",
            "--dynamic-lr",
            "0.003",
            "--dynamic-stats-batches",
            "3",
        ],
        capsys,
    )
    train = trained_lm["corpus"]["train"].read_text(encoding="utf-8").splitlines()
    expected = lm.score_lines_dynamic(lines, 0.003, None, "rms", train_lines=train, statistics_batches=3)
    dynamic = report["dynamic"]
    assert dynamic["settings"][0]["ppl"] == pytest.approx(expected["settings"][0]["ppl"], rel=1e-6)
    assert dynamic["rows"] == 1 and dynamic["settings"][0]["ppl"] < dynamic["ppl_without"]


@pytest.mark.parametrize("method", ["sgd", "rms"])
def test_dynamic_evaluation_default_settings_help_on_repeated_text(trained_lm, tmp_path, capsys, method):
    """`--dynamic-eval M` without --dynamic-lr tries the method's default settings, and on a
    surprising block repeated 8 times the best of them at least halves the perplexity (the
    former default, lr 1e-4, left it as it was)."""
    import nlp_lstm
    from nlp_lstm.inference.lm_dynamic import default_settings

    lm = nlp_lstm.load(trained_lm["run_dir"] / "model", device="cpu")
    lines = _surprising_block(lm) * 8
    report = _evaluate_json(
        [
            str(trained_lm["run_dir"] / "model"),
            _write_lines(tmp_path / "rep.txt", lines),
            "--data-dir",
            str(trained_lm["data_dir"]),
            "--dynamic-eval",
            method,
        ],
        capsys,
    )
    dynamic = report["dynamic"]
    lrs, decays = default_settings(method, lm.configs["task"]["bptt"])
    assert sorted((s["lr"], s["decay"]) for s in dynamic["settings"]) == sorted(
        (lr, decay) for lr in lrs for decay in decays
    )
    assert dynamic["ppl_without"] == pytest.approx(lm.score_lines(lines, batch_size=1)["ppl"], rel=1e-6)
    assert dynamic["settings"][0]["ppl"] < 0.5 * dynamic["ppl_without"]


def test_evaluate_cli_tries_every_dynamic_lr_and_decay_best_first(trained_lm, capsys):
    """Lists of lrs and decays, as the cache takes its theta and lambda: every combination,
    each the number of a run with that setting alone, best first."""
    import nlp_lstm

    model = str(trained_lm["run_dir"] / "model")
    report = _evaluate_json(
        [
            model,
            "--split",
            "valid",
            "--data-dir",
            str(trained_lm["data_dir"]),
            "--dynamic-eval",
            "sgd",
            "--dynamic-lr",
            "0.1,0.5",
            "--dynamic-decay",
            "0,0.2",
        ],
        capsys,
    )
    dynamic = report["dynamic"]
    assert dynamic["method"] == "sgd" and dynamic["rows"] == 1 and dynamic["tokens_per_sec"] > 0
    settings = dynamic["settings"]
    assert sorted((s["lr"], s["decay"]) for s in settings) == [(0.1, 0.0), (0.1, 0.2), (0.5, 0.0), (0.5, 0.2)]
    assert [s["ppl"] for s in settings] == sorted(s["ppl"] for s in settings)
    lm = nlp_lstm.load(model, device="cpu")
    valid = trained_lm["corpus"]["valid"].read_text(encoding="utf-8").splitlines()
    alone = lm.score_lines_dynamic(valid, settings[-1]["lr"], settings[-1]["decay"])["settings"]
    assert alone[0]["ppl"] == pytest.approx(settings[-1]["ppl"], rel=1e-6)


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--dynamic-lr", "-1", "error: --dynamic-lr [-1.0]: each must be >= 0"),
        ("--dynamic-decay", "0.1,1.5", "error: --dynamic-decay [0.1, 1.5]: each must be in [0, 1]"),
    ],
)
def test_bad_dynamic_setting_is_one_line(trained_lm, capsys, flag, value, message):
    from nlp_lstm.cli import main

    assert (
        main(
            [
                "evaluate",
                str(trained_lm["run_dir"] / "model"),
                "--data-dir",
                str(trained_lm["data_dir"]),
                "--dynamic-eval",
                "sgd",
                flag,
                value,
            ]
        )
        == 2
    )
    assert capsys.readouterr().err.strip().splitlines() == [message]


def _dynamic_brute_force(model, ids, eos, bptt, lr, decay, rms=None, eps=0.0):
    """Krause et al. (2018) written out: one row, window by window; each window is scored,
    then every weight moves from its value w *before* the step,
        sgd: w <- w - lr g + decay (w0 - w)
        rms: w <- w - lr g / (rms + eps) + decay min(norm, 1 / decay) (w0 - w),
    g the gradient of the window's mean NLL (zero for a weight the window did not reach),
    rms the root mean squared gradient per weight, norm = rms / (mean over the parameter
    tensors of each one's mean rms)."""
    model = copy.deepcopy(model)
    model.eval()
    names = [n for n, _ in model.named_parameters()]
    w0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    norm = None
    if rms is not None:
        average = sum(float(rms[n].mean()) for n in names) / len(names)
        norm = {n: (rms[n] / average).clamp(max=1 / decay) if decay else rms[n] / average for n in names}
    total = 0.0
    for nll in _window_nlls(model, ids, eos, bptt):
        total += float(nll.detach().double().sum())
        nll.mean().backward()
        with torch.no_grad():
            for n, p in model.named_parameters():
                w = p.detach().clone()
                g = p.grad if p.grad is not None else torch.zeros_like(w)
                if rms is None:
                    p.copy_(w - lr * g + decay * (w0[n] - w))
                else:
                    p.copy_(w - lr * g / (rms[n] + eps) + decay * norm[n] * (w0[n] - w))
    return total


def _window_nlls(model, ids, eos, bptt):
    """One row of `ids` read window by window, the state carried (detached) between
    windows: each window's token NLLs, with gradients (zeroed before each window)."""
    from nlp_lstm.models.rnn import detach_state

    inputs = [eos] + list(ids[:-1])
    state = model.initial_state(1)[0]
    for start in range(0, len(ids), bptt):
        x = torch.tensor([inputs[start : start + bptt]])
        y = torch.tensor([list(ids[start : start + bptt])])
        model.zero_grad()
        features, state = model(x, state, 0)
        state = detach_state(state)
        log_probs = torch.log_softmax(model.logits(features).float(), -1)
        yield -log_probs.gather(-1, y.unsqueeze(-1)).squeeze(-1)


def _rms_brute_force(model, ids, eos, bptt):
    """Root mean squared gradient of each weight over the windows of one row of `ids`."""
    model = copy.deepcopy(model)
    model.eval()
    squares = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    windows = 0
    for nll in _window_nlls(model, ids, eos, bptt):
        nll.mean().backward()
        for n, p in model.named_parameters():
            if p.grad is not None:
                squares[n] += p.grad * p.grad
        windows += 1
    return {n: (s / windows).sqrt() for n, s in squares.items()}


@pytest.mark.parametrize("softmax", sorted(SOFTMAXES))
def test_dynamic_sgd_is_krause_rule_against_a_brute_force(softmax):
    """Large lr and decay, where applying the decay after the step (w <- (w - lr g) + decay
    (w0 - (w - lr g))) and the paper's rule differ clearly."""
    from nlp_lstm.inference.lm_dynamic import score_dynamic

    model = _tiny_lm(softmax)
    ids = np.random.default_rng(3).integers(2, 12, size=40)
    expected = _dynamic_brute_force(model, list(ids), 1, 5, lr=2.0, decay=0.3)
    result = score_dynamic(model, ids, 1, 1, 5, torch.device("cpu"), 2.0, 0.3, "sgd")
    assert result["tokens"] == len(ids)
    assert result["nll"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("softmax", sorted(SOFTMAXES))
def test_dynamic_rms_is_krause_rule_with_training_statistics_against_a_brute_force(softmax):
    """The RMS rule with its gradient statistics from training text (not the text scored),
    the decay rate clipped at 1 / decay so no weight overshoots w0."""
    from nlp_lstm.inference.lm_dynamic import gradient_statistics, score_dynamic

    model = _tiny_lm(softmax)
    rng = np.random.default_rng(4)
    train, ids = rng.integers(2, 12, size=60), rng.integers(2, 12, size=40)
    rms = _rms_brute_force(model, list(train), 1, 5)
    statistics = gradient_statistics(model, train, 1, 1, 5, torch.device("cpu"))
    for (name, _), root in zip(model.named_parameters(), statistics):
        assert torch.allclose(root, rms[name], rtol=1e-4, atol=1e-7), name
    lr, decay, eps = 0.003, 0.4, 1e-3
    average = sum(float(r.mean()) for r in rms.values()) / len(rms)
    assert max(float(r.max()) for r in rms.values()) / average > 1 / decay  # some rates are clipped
    expected = _dynamic_brute_force(model, list(ids), 1, 5, lr, decay, rms=rms, eps=eps)
    result = score_dynamic(model, ids, 1, 1, 5, torch.device("cpu"), lr, decay, "rms", statistics=statistics, eps=eps)
    assert result["nll"] == pytest.approx(expected, rel=1e-5)
    static = score_dynamic(model, ids, 1, 1, 5, torch.device("cpu"), 0.0, 0.0, "rms", statistics=statistics)
    assert abs(result["nll"] - static["nll"]) > 1e-3  # the updates did something
