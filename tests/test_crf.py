"""The CRF against brute-force enumeration of every tag sequence on small cases."""

import itertools
import math

import pytest
import torch

from nlp_lstm.models.crf import CRF


def brute_force(crf, emissions):
    """All (sequence, score) of one sentence (T, N), best first, with constraints applied."""
    trans, start, end = crf._params()
    length, n = emissions.shape
    scored = []
    for seq in itertools.product(range(n), repeat=length):
        s = start[seq[0]] + emissions[0, seq[0]] + end[seq[-1]]
        for t in range(1, length):
            s = s + trans[seq[t - 1], seq[t]] + emissions[t, seq[t]]
        scored.append((list(seq), float(s.detach())))
    return sorted(scored, key=lambda x: -x[1])


def path_allowed(crf, seq) -> bool:
    return (
        bool(crf.allowed_start[seq[0]])
        and bool(crf.allowed_end[seq[-1]])
        and all(bool(crf.allowed[a, b]) for a, b in zip(seq, seq[1:]))
    )


def make_crf(n=3, constrained=False, seed=0):
    torch.manual_seed(seed)
    allowed = None
    if constrained:
        allowed = torch.ones(n, n, dtype=torch.bool)
        allowed[0, 2] = False  # tag 2 may not follow tag 0
    crf = CRF(n, allowed=allowed, allowed_start=torch.tensor([True, True, False]) if constrained else None)
    with torch.no_grad():
        crf.transitions.normal_()
        crf.start.normal_()
        crf.end.normal_()
    return crf


@pytest.mark.parametrize("constrained", [False, True])
def test_partition_score_viterbi_nbest_and_marginals_match_brute_force(constrained):
    crf = make_crf(constrained=constrained)
    lengths = [4, 2, 1]
    emissions = torch.randn(3, 4, 3)
    mask = torch.arange(4).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    log_z = crf.log_partition(emissions, mask).detach()
    paths = crf.viterbi(emissions, mask)
    marginals = crf.marginals(emissions, mask)
    for b, n in enumerate(lengths):
        table = brute_force(crf, emissions[b, :n])
        scores = torch.tensor([s for _, s in table])
        assert float(log_z[b]) == pytest.approx(float(torch.logsumexp(scores, 0)), abs=1e-4)
        assert paths[b] == table[0][0]
        best = crf.nbest(emissions[b, :n], 5)
        allowed = [(seq, s) for seq, s in table if path_allowed(crf, seq)]
        assert [seq for seq, _ in best] == [seq for seq, _ in allowed[:5]]
        assert [s for _, s in best] == pytest.approx([s for _, s in allowed[:5]], abs=1e-4)
        probs = torch.softmax(scores, 0)
        for t in range(n):
            for tag in range(3):
                expected = sum(float(p) for (seq, _), p in zip(table, probs) if seq[t] == tag)
                assert float(marginals[b, t, tag]) == pytest.approx(expected, abs=1e-4)
        some = table[len(table) // 2]  # any sequence, not only the best
        tags = torch.tensor([some[0] + [0] * (4 - n)])
        score = crf.sequence_score(emissions[b : b + 1], tags, mask[b : b + 1])
        assert float(score.detach()) == pytest.approx(some[1], abs=1e-4)


def test_constrained_decoder_never_outputs_a_forbidden_transition():
    crf = make_crf(constrained=True, seed=3)
    emissions = torch.randn(20, 6, 3) * 5
    mask = torch.ones(20, 6, dtype=torch.bool)
    for path in crf.viterbi(emissions, mask):
        assert path[0] != 2
        assert all(not (a == 0 and b == 2) for a, b in zip(path, path[1:]))


def test_nbest_returns_only_allowed_paths_even_when_fewer_than_k():
    """A one-token sentence has 2 allowed tags (tag 2 may not start): asking for 6 gives
    those 2, not forbidden paths scored about -1e4."""
    crf = make_crf(constrained=True, seed=1)
    best = crf.nbest(torch.randn(1, 3), 6)
    assert sorted(seq for seq, _ in best) == [[0], [1]]
    emissions = torch.randn(3, 3)
    best = crf.nbest(emissions, 50)
    allowed = [seq for seq in itertools.product(range(3), repeat=3) if path_allowed(crf, list(seq))]
    assert len(best) == len(allowed) and all(path_allowed(crf, seq) for seq, _ in best)


def test_nbest_without_any_allowed_path_gives_viterbis_choice():
    crf = CRF(2, allowed_start=torch.tensor([True, False]), allowed_end=torch.tensor([False, True]))
    emissions = torch.tensor([[0.0, 1.0]])
    best = crf.nbest(emissions, 3)
    assert [seq for seq, _ in best] == crf.viterbi(emissions.unsqueeze(0), torch.ones(1, 1, dtype=torch.bool))


def test_nll_is_positive_and_trainable():
    crf = make_crf()
    emissions = torch.randn(2, 5, 3, requires_grad=True)
    mask = torch.ones(2, 5, dtype=torch.bool)
    tags = torch.randint(0, 3, (2, 5))
    nll = crf.nll(emissions, tags, mask)
    assert float(nll.detach()) > 0
    nll.backward()
    assert crf.transitions.grad is not None and emissions.grad is not None


def _log_space_partition(crf, emissions, mask):
    """The textbook forward algorithm (logsumexp over (B, N, N)), in float64."""
    trans, start, end = (p.double() for p in crf._params())
    emissions = emissions.double()
    alpha = start + emissions[:, 0]
    for t in range(1, emissions.size(1)):
        step = torch.logsumexp(alpha.unsqueeze(2) + trans.unsqueeze(0), dim=1) + emissions[:, t]
        alpha = torch.where(mask[:, t, None], step, alpha)
    return torch.logsumexp(alpha + end, dim=1)


def test_partition_stays_exact_and_finite_with_huge_score_gaps():
    # Emission gaps of hundreds of nats: exp() of them underflows in fp32 (and a naive
    # probability-space recursion returns -inf and NaN gradients).
    crf = make_crf(n=3, constrained=True)
    with torch.no_grad():
        crf.transitions.mul_(50)
    emissions = (torch.randn(4, 9, 3) * 300).requires_grad_(True)
    mask = torch.arange(9).unsqueeze(0) < torch.tensor([9, 5, 2, 1]).unsqueeze(1)
    log_z = crf.log_partition(emissions, mask)
    expected = _log_space_partition(crf, emissions.detach(), mask)
    torch.testing.assert_close(log_z.double(), expected, rtol=1e-6, atol=1e-3)
    log_z.sum().backward()
    assert torch.isfinite(emissions.grad).all()
    # The gradient of log Z with respect to the emissions is the marginals: they sum to one.
    torch.testing.assert_close(emissions.grad.sum(2), mask.float(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("constrained", [False, True])
def test_log_partition_gradients_equal_autograd_through_brute_force(constrained):
    """The hand-written backward (backward algorithm + marginals) against autograd through
    the enumerated log-sum-exp of every path, for every parameter, with padding."""
    crf = make_crf(constrained=constrained, seed=4)
    lengths = [4, 1, 3]
    emissions = torch.randn(3, 4, 3, requires_grad=True)
    mask = torch.arange(4).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    upstream = torch.tensor([0.7, -1.3, 2.0])
    params = [emissions, crf.transitions, crf.start, crf.end]
    ours = torch.autograd.grad((crf.log_partition(emissions, mask) * upstream).sum(), params)
    trans, start, end = crf._params()
    reference = 0
    for b, n in enumerate(lengths):
        scores = []
        for seq in itertools.product(range(3), repeat=n):
            s = start[seq[0]] + emissions[b, 0, seq[0]] + end[seq[-1]]
            for t in range(1, n):
                s = s + trans[seq[t - 1], seq[t]] + emissions[b, t, seq[t]]
            scores.append(s)
        reference = reference + upstream[b] * torch.logsumexp(torch.stack(scores), 0)
    expected = torch.autograd.grad(reference, params)
    for name, a, e in zip(("emissions", "transitions", "start", "end"), ours, expected):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-5, msg=name)


def test_log_partition_passes_gradcheck_in_float64():
    crf = make_crf(seed=5).double()
    emissions = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    mask = torch.arange(5).unsqueeze(0) < torch.tensor([5, 2]).unsqueeze(1)
    from nlp_lstm.models.crf import _LogPartition

    trans, start, end = crf._params()
    assert torch.autograd.gradcheck(
        lambda e, tr, st, en: _LogPartition.apply(e, tr, st, en, mask), (emissions, trans, start, end)
    )


def _naive_segment_probability(crf, emissions, start_pos, ids):
    """P(tags[s : s + len(ids)] == ids) of one sentence (T, N), by the textbook forward and
    backward recursions (logsumexp over (N, N)) in float64."""
    trans, start, end = (p.double() for p in crf._params())
    em = emissions.double()
    length = em.size(0)
    alphas, betas = [start + em[0]], [end]
    for t in range(1, length):
        alphas.append(torch.logsumexp(alphas[-1].unsqueeze(1) + trans, dim=0) + em[t])
    for t in range(length - 2, -1, -1):
        betas.append(torch.logsumexp(trans + (em[t + 1] + betas[-1]).unsqueeze(0), dim=1))
    betas = betas[::-1]
    log_z = torch.logsumexp(alphas[-1] + end, dim=0)
    score = alphas[start_pos][ids[0]] + betas[start_pos + len(ids) - 1][ids[-1]]
    for k in range(1, len(ids)):
        score = score + trans[ids[k - 1], ids[k]] + em[start_pos + k, ids[k]]
    return float(torch.exp(score - log_z).detach())


# 6,000 tokens takes ~10 s (the exact reference scores each path term by term): slow.
@pytest.mark.parametrize("length", [2500, pytest.param(6000, marks=pytest.mark.slow)])
def test_segment_probabilities_stay_probabilities_on_long_sentences(length):
    # log Z of a long sentence is thousands of nats: alpha + beta - log Z taken in fp32 loses
    # the digits that make a probability (confidences of 1.12 at 2,000 tokens, 3.85 at 6,000).
    crf = make_crf(n=3, seed=7)
    generator = torch.Generator().manual_seed(length)
    emissions = torch.randn(1, length, 3, generator=generator) * 3
    mask = torch.ones(1, length, dtype=torch.bool)
    positions = [0, 1, length // 3, length // 2, length - 3, length - 2]
    requests = [
        (s, [int(t) for t in torch.randint(0, 3, (k,), generator=generator)])
        for s, k in zip(positions, [1, 2, 3, 1, 2, 1])
    ]
    requests += [(s, [int(emissions[0, s].argmax())]) for s in positions]  # likely tags: larger probabilities
    log_probs = crf.segment_log_probs(emissions, mask, [requests])[0]
    for (s, ids), lp in zip(requests, log_probs):
        p = math.exp(lp)
        assert p <= 1 + 1e-6, (s, ids, p)
        assert p == pytest.approx(_naive_segment_probability(crf, emissions[0], s, ids), rel=1e-6, abs=1e-9)
