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


class CRF(nn.Module):
    def __init__(self, num_tags: int, allowed: Optional[Tensor] = None,
                 allowed_start: Optional[Tensor] = None, allowed_end: Optional[Tensor] = None) -> None:
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
        return (self.transitions.masked_fill(~self.allowed, NEG), self.start.masked_fill(~self.allowed_start, NEG),
                self.end.masked_fill(~self.allowed_end, NEG))

    # --------------------------------------------------------------- training
    def log_partition(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """log Z per sentence. emissions (B, T, N) fp32, mask (B, T) bool with mask[:, 0] true.

        The forward algorithm in probability space: each step is one (B, N) x (N, N) matrix
        product of exp(alpha - max) with exp(transitions), rather than a logsumexp over a
        (B, N, N) tensor (N times fewer exponentials). float64 and the per-step max shift
        keep it exact where fp32 would underflow; a clamp keeps log() finite for a tag no
        path can reach.
        """
        trans, start, end = self._params()
        shift = trans.max(dim=0).values  # per target tag
        exp_trans = torch.exp(trans - shift).double()
        shift = shift.double()
        emissions = emissions.double()
        alpha = start.double() + emissions[:, 0]
        for t in range(1, emissions.size(1)):
            top = alpha.max(dim=1, keepdim=True).values
            reach = torch.exp(alpha - top) @ exp_trans
            step = torch.log(reach.clamp_min(1e-300)) + top + shift + emissions[:, t]
            alpha = torch.where(mask[:, t, None], step, alpha)
        return torch.logsumexp(alpha + end.double(), dim=1).float()

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
        trans, start, end = self._params()
        emissions = emissions.float()
        batch, length, _ = emissions.shape
        score = start + emissions[:, 0]
        pointers = []
        for t in range(1, length):
            best, arg = (score.unsqueeze(2) + trans.unsqueeze(0)).max(dim=1)
            step = best + emissions[:, t]
            keep = mask[:, t, None]
            score = torch.where(keep, step, score)
            # past a sentence's end the pointer is the identity, so backtracking passes through
            identity = torch.arange(self.num_tags, device=emissions.device).expand(batch, -1)
            pointers.append(torch.where(keep, arg, identity))
        best_last = (score + end).argmax(dim=1)
        path = [best_last]
        for arg in reversed(pointers):
            path.append(arg.gather(1, path[-1].unsqueeze(1)).squeeze(1))
        tags = torch.stack(path[::-1], dim=1).cpu()
        lengths = mask.sum(1).tolist()
        return [tags[b, :n].tolist() for b, n in enumerate(lengths)]

    def allows(self, seq: List[int]) -> bool:
        """Whether a tag sequence uses only allowed starts, transitions and ends."""
        allowed = self.allowed.tolist()
        return (bool(self.allowed_start[seq[0]]) and bool(self.allowed_end[seq[-1]])
                and all(allowed[a][b] for a, b in zip(seq, seq[1:])))

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
        out = []
        for value, flat in zip(best.tolist(), idx.tolist()):
            tag, rank = divmod(flat, widths[-1])
            seq = [tag]
            for t in range(length - 1, 0, -1):
                tag, rank = divmod(int(back[t - 1][tag, rank]), widths[t - 1])
                seq.append(tag)
            out.append((seq[::-1], value))
        allowed = [(seq, value) for seq, value in out if self.allows(seq)]
        # Where the constraints allow no sequence at all (a one-word sentence and a tag set
        # that never had an S- tag), the best one is what Viterbi outputs too.
        return allowed or out[:1]

    def marginals(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """P(tag at t | sentence), (B, T, N): the gradient of log Z with respect to the emissions."""
        with torch.enable_grad():
            emissions = emissions.detach().float().requires_grad_(True)
            log_z = self.log_partition(emissions, mask).sum()
            (grad,) = torch.autograd.grad(log_z, emissions)
        return grad * mask.unsqueeze(2)
