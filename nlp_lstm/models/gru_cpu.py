"""A faster GRU layer for CPUs, where PyTorch has no fused (oneDNN) GRU kernel.

`torch.gru` on CPU runs the cell as separate autograd ops per time step and lets
autograd differentiate each of them. Here the whole window is one autograd node:

- forward: the input projections of every step in one matrix product, then the
  recurrence (one small product per step), saving the gates;
- backward: a hand-written reverse loop over the saved gates that needs one small
  product per step, then the weight gradients of all steps in two large products.

Matrix products run in `mm_dtype` (bf16 under autocast, from one cast of each weight per
window); the state and the gate arithmetic stay in fp32. Exact against torch.gru
(gradcheck in float64 in the tests); measured 1.4x faster than torch.gru in fp32 for a
2 x 650 LM layer here (BENCHMARKS.md).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor


class _GRUWindow(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx, x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor, mm_dtype: torch.dtype
    ) -> Tuple[Tensor, Tensor]:
        batch, steps, _ = x.shape
        hidden = h0.size(1)
        state_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        xm, w_ih_m, w_hh_t = x.to(mm_dtype), w_ih.to(mm_dtype), w_hh.to(mm_dtype).t()
        gi = torch.addmm(b_ih.to(mm_dtype), xm.reshape(batch * steps, -1), w_ih_m.t())
        gi = gi.view(batch, steps, 3 * hidden).to(state_dtype)
        out = x.new_empty(batch, steps, hidden, dtype=state_dtype)
        gates = x.new_empty(steps, batch, 3 * hidden, dtype=state_dtype)  # r, z, n
        gh_n = x.new_empty(steps, batch, hidden, dtype=state_dtype)
        b_hh = b_hh.to(state_dtype)
        h = h0.to(state_dtype)
        for t in range(steps):
            gh = torch.mm(h.to(mm_dtype), w_hh_t).to(state_dtype).add_(b_hh)
            g = gi[:, t]
            rz = torch.sigmoid(g[:, : 2 * hidden] + gh[:, : 2 * hidden])
            r, z = rz[:, :hidden], rz[:, hidden:]
            n = torch.tanh(torch.addcmul(g[:, 2 * hidden :], r, gh[:, 2 * hidden :]))
            h = torch.lerp(n, h, z)  # (1 - z) * n + z * h
            out[:, t] = h
            gates[t, :, : 2 * hidden] = rz
            gates[t, :, 2 * hidden :] = n
            gh_n[t] = gh[:, 2 * hidden :]
        ctx.save_for_backward(xm, h0, w_ih_m, w_hh_t, out, gates, gh_n)
        ctx.mm_dtype, ctx.dtypes = mm_dtype, (x.dtype, h0.dtype, w_ih.dtype, w_hh.dtype, b_ih.dtype, b_hh.dtype)
        return out.to(x.dtype), h.to(h0.dtype)

    @staticmethod
    def backward(ctx, grad_out: Tensor, grad_h_last: Tensor):
        xm, h0, w_ih_m, w_hh_t, out, gates, gh_n = ctx.saved_tensors
        mm, (x_dtype, h_dtype, w_ih_dtype, w_hh_dtype, b_ih_dtype, b_hh_dtype) = ctx.mm_dtype, ctx.dtypes
        w_hh_m = w_hh_t.t()
        batch, steps, _ = xm.shape
        hidden = h0.size(1)
        state_dtype = out.dtype
        d_gh = out.new_empty(steps, batch, 3 * hidden)
        d_gi = out.new_empty(batch, steps, 3 * hidden)
        grad_out = grad_out.to(state_dtype)
        dh = grad_h_last.to(state_dtype) if grad_h_last is not None else out.new_zeros(batch, hidden)
        h0s = h0.to(state_dtype)
        for t in range(steps - 1, -1, -1):
            dh = dh + grad_out[:, t]
            h_prev = out[:, t - 1] if t > 0 else h0s
            r, z, n = gates[t, :, :hidden], gates[t, :, hidden : 2 * hidden], gates[t, :, 2 * hidden :]
            d_n = dh * (1 - z) * (1 - n * n)  # through h = (1-z) n + z h_prev and n = tanh(.)
            d_r = d_n * gh_n[t] * r * (1 - r)
            d_z = dh * (h_prev - n) * z * (1 - z)
            d_gi[:, t, :hidden], d_gi[:, t, hidden : 2 * hidden], d_gi[:, t, 2 * hidden :] = d_r, d_z, d_n
            step = d_gh[t]
            step[:, :hidden], step[:, hidden : 2 * hidden] = d_r, d_z
            torch.mul(d_n, r, out=step[:, 2 * hidden :])
            dh = torch.mm(step.to(mm), w_hh_m).to(state_dtype).add_(dh * z)
        d_gi_flat = d_gi.view(batch * steps, 3 * hidden)
        d_gi_m = d_gi_flat.to(mm)
        grad_x = (d_gi_m @ w_ih_m).view(xm.shape).to(x_dtype)
        grad_w_ih = (d_gi_m.t() @ xm.reshape(batch * steps, -1)).to(w_ih_dtype)
        h_prev_all = torch.cat([h0s.unsqueeze(0), out.transpose(0, 1)[:-1]], 0).reshape(steps * batch, hidden)
        d_gh_flat = d_gh.view(steps * batch, 3 * hidden)
        grad_w_hh = (d_gh_flat.to(mm).t() @ h_prev_all.to(mm)).to(w_hh_dtype)
        return (
            grad_x,
            dh.to(h_dtype),
            grad_w_ih,
            grad_w_hh,
            d_gi_flat.sum(0).to(b_ih_dtype),
            d_gh_flat.sum(0).to(b_hh_dtype),
            None,
        )


def gru_window(
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
    mm_dtype: Optional[torch.dtype] = None,
) -> Tuple[Tensor, Tensor]:
    """x (B, T, D), h0 (B, H) -> outputs (B, T, H) in `mm_dtype` (default: x's), last state
    (B, H) in h0's dtype; matrix products in `mm_dtype`, gates and state in fp32."""
    mm_dtype = mm_dtype or x.dtype
    with torch.autocast("cpu", enabled=False):
        out, h = _GRUWindow.apply(x, h0, w_ih, w_hh, b_ih, b_hh, mm_dtype)
    if mm_dtype != x.dtype:
        out = out.to(mm_dtype)  # as autocast's own RNN kernels return
    return out, h
