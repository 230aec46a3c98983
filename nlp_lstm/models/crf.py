"""Linear-chain CRF: batched forward algorithm and Viterbi on the model's device, n-best
decoding, marginals, and transition constraints from the tag scheme.

Disallowed transitions get a large negative score (not -inf, which would turn a fully
masked logsumexp into NaN); a constrained decoder therefore never outputs them.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn

NEG = -1e4


def _log_product(scores: Tensor, exp_trans: Tensor, shift: Tensor) -> Tensor:
    """log(exp(scores) @ exp(trans)) per row, for exp_trans = exp(trans - shift): a matrix
    product of exp(scores - max) with exp(transitions) rather than a logsumexp over a
    (B, N, N) tensor (N times fewer exponentials). In float64 the per-row and per-tag shifts
    keep it exact where fp32 would underflow (300-nat gaps, tested); a clamp keeps log()
    finite for a tag no path can reach."""
    top = scores.max(dim=1, keepdim=True).values
    return torch.log((torch.exp(scores - top) @ exp_trans).clamp_min(1e-300)) + top + shift


def _forward_algorithm(emissions: Tensor, trans: Tensor, start: Tensor, mask: Tensor) -> Tensor:
    """alpha (T, B, N): log-sum of the scores of every path ending at (t, tag); past a
    sentence's end alpha stays at its last value."""
    shift = trans.max(dim=0).values  # per target tag
    exp_trans = torch.exp(trans - shift)
    alphas = emissions.new_empty(emissions.size(1), *emissions.shape[::2])
    alpha = start + emissions[:, 0]
    alphas[0] = alpha
    for t in range(1, emissions.size(1)):
        step = _log_product(alpha, exp_trans, shift) + emissions[:, t]
        alpha = torch.where(mask[:, t, None], step, alpha)
        alphas[t] = alpha
    return alphas


def _backward_algorithm(emissions: Tensor, trans: Tensor, end: Tensor, mask: Tensor) -> Tensor:
    """beta (T, B, N): log-sum of the scores of every continuation from (t, tag) to the
    sentence's end (`end` at its last word and past it)."""
    shift = trans.max(dim=1).values  # per source tag
    exp_trans_t = torch.exp(trans - shift.unsqueeze(1)).t()
    length = emissions.size(1)
    betas = emissions.new_empty(length, *emissions.shape[::2])
    beta = end.expand(emissions.size(0), -1)
    betas[length - 1] = beta
    for t in range(length - 2, -1, -1):
        step = _log_product(emissions[:, t + 1] + beta, exp_trans_t, shift)
        beta = torch.where(mask[:, t + 1, None], step, end)
        betas[t] = beta
    return betas


class _LogPartition(torch.autograd.Function):
    @staticmethod
    def forward(ctx, emissions: Tensor, trans: Tensor, start: Tensor, end: Tensor, mask: Tensor) -> Tensor:
        e, tr, st, en = emissions.double(), trans.double(), start.double(), end.double()
        alphas = _forward_algorithm(e, tr, st, mask)
        last = mask.sum(1) - 1  # each sentence's last position
        log_z = torch.logsumexp(
            alphas.gather(0, last.view(1, -1, 1).expand(1, -1, alphas.size(2))).squeeze(0) + en, dim=1
        )
        ctx.save_for_backward(e, tr, en, mask, last, alphas, log_z)
        ctx.dtypes = (emissions.dtype, trans.dtype, start.dtype, end.dtype)
        return log_z.to(emissions.dtype)

    @staticmethod
    def backward(ctx, grad_log_z: Tensor):
        e, tr, en, mask, last, alphas, log_z = ctx.saved_tensors
        betas = _backward_algorithm(e, tr, en, mask)
        weight = grad_log_z.double().unsqueeze(1) * mask  # (B, T): upstream gradient at real words
        alphas, betas = alphas.transpose(0, 1), betas.transpose(0, 1)  # (B, T, N)
        # P(tag at t) = exp(alpha + beta - log Z): d log Z / d emission
        real = mask.unsqueeze(2)  # where(), not a product: no inf * 0 from padding
        marginals = torch.where(real, torch.exp(alphas + betas - log_z.view(-1, 1, 1)), 0.0) * weight.unsqueeze(2)
        grad_start = marginals[:, 0].sum(0)
        grad_end = marginals.gather(1, last.view(-1, 1, 1).expand(-1, 1, marginals.size(2))).squeeze(1).sum(0)
        # P(tag i at t-1, tag j at t) summed over every (b, t >= 1): one product over all positions
        before = alphas[:, :-1]
        after = e[:, 1:] + betas[:, 1:]
        top_before = before.max(dim=2, keepdim=True).values
        top_after = after.max(dim=2, keepdim=True).values
        scale = torch.where(real[:, 1:], torch.exp(top_before + top_after - log_z.view(-1, 1, 1)), 0.0)
        scale = scale * weight[:, 1:].unsqueeze(2)
        n = tr.size(0)
        left = (torch.exp(before - top_before) * scale).reshape(-1, n)
        right = torch.exp(after - top_after).reshape(-1, n)
        grad_trans = (left.t() @ right) * torch.exp(tr)
        emissions_dtype, trans_dtype, start_dtype, end_dtype = ctx.dtypes
        return (
            marginals.to(emissions_dtype),
            grad_trans.to(trans_dtype),
            grad_start.to(start_dtype),
            grad_end.to(end_dtype),
            None,
        )


class CRF(nn.Module):
    def __init__(
        self,
        num_tags: int,
        allowed: Optional[Tensor] = None,
        allowed_start: Optional[Tensor] = None,
        allowed_end: Optional[Tensor] = None,
    ) -> None:
        """`allowed[i, j]`: tag j may follow tag i; `allowed_start`/`allowed_end`: may begin/end."""
        super().__init__()
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))  # [from, to]
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.end = nn.Parameter(torch.zeros(num_tags))
        ones = lambda *shape: torch.ones(*shape, dtype=torch.bool)  # noqa: E731
        self.register_buffer("allowed", allowed if allowed is not None else ones(num_tags, num_tags))
        self.register_buffer("allowed_start", allowed_start if allowed_start is not None else ones(num_tags))
        self.register_buffer("allowed_end", allowed_end if allowed_end is not None else ones(num_tags))

    def _params(self) -> Tuple[Tensor, Tensor, Tensor]:
        return (
            self.transitions.masked_fill(~self.allowed, NEG),
            self.start.masked_fill(~self.allowed_start, NEG),
            self.end.masked_fill(~self.allowed_end, NEG),
        )

    # --------------------------------------------------------------- training
    def log_partition(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """log Z per sentence. emissions (B, T, N), mask (B, T) bool with mask[:, 0] true.

        One autograd node (`_LogPartition`): the forward algorithm, and a backward pass that
        runs the backward algorithm once and gets every gradient from the marginals, the
        transitions' in one matrix product over all positions, instead of differentiating
        each of the forward loop's small steps.
        """
        trans, start, end = self._params()
        return _LogPartition.apply(emissions.float(), trans, start, end, mask)

    def sequence_score(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        trans, start, end = self._params()
        tags = tags.masked_fill(~mask, 0)
        score = start[tags[:, 0]] + emissions[:, 0].gather(1, tags[:, :1]).squeeze(1)
        emit = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # (B, T)
        step = trans[tags[:, :-1], tags[:, 1:]] + emit[:, 1:]
        score = score + (step * mask[:, 1:]).sum(1)
        last = tags.gather(1, (mask.sum(1) - 1).unsqueeze(1)).squeeze(1)
        return score + end[last]

    def nll(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """Summed negative log-likelihood of the gold sequences."""
        emissions = emissions.float()
        return (self.log_partition(emissions, mask) - self.sequence_score(emissions, tags, mask)).sum()

    # --------------------------------------------------------------- decoding
    @torch.no_grad()
    def viterbi(self, emissions: Tensor, mask: Tensor) -> List[List[int]]:
        """The best tag sequence of each sentence.

        Scores are kept tags-first, (N, B): each step's max over the previous tag is then a
        reduction over the outer dimension, vectorised across the batch, and no (B, N, N)
        argmax is taken. Backpointers are not stored: backtracking re-derives each step's
        argmax for the one chosen tag from the stored scores, (N, B) work per step.
        """
        trans, start, end = self._params()
        scores = emissions.float().transpose(0, 1).transpose(1, 2)  # (T, N, B)
        length = scores.size(0)
        keep = mask.t().unsqueeze(1)  # (T, 1, B)
        trans_in = trans.unsqueeze(2)  # [from, to, 1]
        history = scores.new_empty(scores.shape)
        score = start.unsqueeze(1) + scores[0]
        history[0] = score
        for t in range(1, length):
            step = (score.unsqueeze(1) + trans_in).amax(dim=0) + scores[t]
            score = torch.where(keep[t], step, score)  # past a sentence's end its score stays
            history[t] = score
        lengths = mask.sum(1)
        current = (score + end.unsqueeze(1)).argmax(dim=0)  # each sentence's last tag
        path = [current]
        for t in range(length - 2, -1, -1):
            previous = (history[t] + trans.index_select(1, current)).argmax(dim=0)
            current = torch.where(t < lengths - 1, previous, current)  # not yet inside the sentence
            path.append(current)
        tags = torch.stack(path[::-1], dim=1).cpu()  # one copy to the host
        return [tags[b, :n].tolist() for b, n in enumerate(lengths.tolist())]

    def allows(self, seq: List[int]) -> bool:
        """Whether a tag sequence uses only allowed starts, transitions and ends."""
        allowed = self.allowed.tolist()
        return (
            bool(self.allowed_start[seq[0]])
            and bool(self.allowed_end[seq[-1]])
            and all(allowed[a][b] for a, b in zip(seq, seq[1:]))
        )

    @torch.no_grad()
    def nbest(self, emissions: Tensor, k: int) -> List[Tuple[List[int], float]]:
        """The k best allowed sequences of one sentence (emissions (T, N)) with their scores,
        best first; fewer than k where the constraints allow fewer sequences (and the single
        best where they allow none).

        A forbidden transition costs NEG, far below any allowed path, so allowed paths fill
        the beam first and the forbidden ones that make up the numbers are dropped here."""
        trans, start, end = self._params()
        emissions = emissions.float()
        length, n = emissions.shape
        # scores (n, k'): the best partial scores ending in each tag; back[t] (n, k') -> (prev tag, prev rank)
        scores = (start + emissions[0]).unsqueeze(1)
        back, widths = [], [1]  # widths[t]: how many ranks are kept per tag at step t
        for t in range(1, length):
            cand = scores.unsqueeze(2) + trans.unsqueeze(1)  # (n_prev, k', n_cur)
            cand = cand.reshape(-1, n)  # (n_prev * k', n_cur)
            top = min(k, cand.size(0))
            best, idx = cand.topk(top, dim=0)  # (top, n_cur)
            scores = (best + emissions[t]).t()  # (n_cur, top)
            back.append(idx.t())  # (n_cur, top): flat index prev_tag * widths[t-1] + prev_rank
            widths.append(top)
        final = (scores + end.unsqueeze(1)).reshape(-1)
        best, idx = final.topk(min(k, final.numel()))
        # Backpointers to the host in one copy, not one sync per (k, t): pointers[t][tag][rank].
        host = torch.cat([b.reshape(-1) for b in back]).cpu().split([b.numel() for b in back]) if back else []
        pointers = [flat.view(b.shape).tolist() for flat, b in zip(host, back)]
        out = []
        for value, flat in zip(best.tolist(), idx.tolist()):
            tag, rank = divmod(flat, widths[-1])
            seq = [tag]
            for t in range(length - 1, 0, -1):
                tag, rank = divmod(pointers[t - 1][tag][rank], widths[t - 1])
                seq.append(tag)
            out.append((seq[::-1], value))
        allowed = [(seq, value) for seq, value in out if self.allows(seq)]
        # Where the constraints allow no sequence at all (a one-word sentence and a tag set
        # that never had an S- tag), the best one is what Viterbi outputs too.
        return allowed or out[:1]

    @torch.no_grad()
    def segment_log_probs(
        self, emissions: Tensor, mask: Tensor, segments: List[List[Tuple[int, List[int]]]]
    ) -> List[List[float]]:
        """log P(tags[s : s + len(ids)] == ids | sentence) for each requested segment
        (s, ids) of each sentence: the forward score of every path into the segment's first
        tag, the segment's own transitions and emissions, the backward score of every
        continuation from its last tag, minus log Z. For a span's tags (B-X I-X E-X, S-X)
        this is the posterior probability that exactly these words form a span of type X.

        In float64, as log_partition: alpha + beta - log Z subtracts numbers of thousands of
        nats on a long sentence, and fp32 keeps too few digits of them (a 2,000-token
        sentence gave "probabilities" of 1.12)."""
        trans, start, end = (p.double() for p in self._params())
        em = emissions.double()
        alphas = _forward_algorithm(em, trans, start, mask)
        betas = _backward_algorithm(em, trans, end, mask)
        log_z = torch.logsumexp(alphas[-1] + end, dim=-1)  # alpha keeps its last real value past the end
        alphas, betas, em, trans, log_z = (t.cpu() for t in (alphas, betas, em, trans, log_z))
        # Every segment at once, by index (a Python loop of tensor reads per tag took a fifth
        # of a chunker's prediction time): the ends, then each inner step added to its segment.
        ends = [(b, s, ids) for b, requests in enumerate(segments) for s, ids in requests]
        if not ends:
            return [[] for _ in segments]
        b, s, first, last_at, last = (
            torch.tensor(column) for column in zip(*((b, s, ids[0], s + len(ids) - 1, ids[-1]) for b, s, ids in ends))
        )
        scores = alphas[s, b, first] + betas[last_at, b, last] - log_z[b]
        steps = [(i, b, s + k, ids[k - 1], ids[k]) for i, (b, s, ids) in enumerate(ends) for k in range(1, len(ids))]
        if steps:
            segment, sb, position, previous, tag = (torch.tensor(column) for column in zip(*steps))
            scores.index_add_(0, segment, trans[previous, tag] + em[sb, position, tag])
        flat, out, start = scores.tolist(), [], 0
        for requests in segments:
            out.append(flat[start : start + len(requests)])
            start += len(requests)
        return out

    @torch.no_grad()
    def pair_marginals(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """P(tag i at t, tag j at t + 1 | sentence), (B, T - 1, N, N) in float64 (as
        log_partition); zero where t + 1 is past a sentence's end."""
        trans, start, end = (p.double() for p in self._params())
        em = emissions.double()
        alphas = _forward_algorithm(em, trans, start, mask).transpose(0, 1)  # (B, T, N)
        betas = _backward_algorithm(em, trans, end, mask).transpose(0, 1)
        log_z = torch.logsumexp(alphas[:, -1] + end, dim=-1)  # alpha keeps its last real value past the end
        log_p = alphas[:, :-1, :, None] + trans + (em[:, 1:] + betas[:, 1:])[:, :, None, :] - log_z.view(-1, 1, 1, 1)
        return torch.where(mask[:, 1:, None, None], torch.exp(log_p), 0.0)

    def marginals(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """P(tag at t | sentence), (B, T, N): the gradient of log Z with respect to the emissions."""
        with torch.enable_grad():
            emissions = emissions.detach().float().requires_grad_(True)
            log_z = self.log_partition(emissions, mask).sum()
            (grad,) = torch.autograd.grad(log_z, emissions)
        return grad * mask.unsqueeze(2)
