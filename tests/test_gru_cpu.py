"""The CPU GRU fast path against torch.gru: same outputs, exact gradients."""

import torch

from nlp_lstm.models.gru_cpu import gru_window
from nlp_lstm.models.rnn import RNNLayer


def _inputs(dtype, batch=3, steps=5, size=4, hidden=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    make = lambda *shape: torch.randn(*shape, generator=g, dtype=dtype).requires_grad_()  # noqa: E731
    return (
        make(batch, steps, size),
        make(batch, hidden),
        make(3 * hidden, size),
        make(3 * hidden, hidden),
        make(3 * hidden),
        make(3 * hidden),
    )


def _torch_gru(x, h0, *params):
    out, h = torch.gru(x, h0.unsqueeze(0), list(params), True, 1, 0.0, True, False, True)
    return out, h[0]


def test_outputs_equal_torch_gru_and_gradients_pass_gradcheck():
    args = _inputs(torch.float64)
    for a, b in zip(gru_window(*args), _torch_gru(*args)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda *a: gru_window(*a), args)


def test_gradients_equal_torch_gru_in_fp32():
    args = _inputs(torch.float32, batch=4, steps=9, size=8, hidden=10)
    weights = torch.randn(4, 9, 10)
    ours = torch.autograd.grad((gru_window(*args)[0] * weights).sum() + gru_window(*args)[1].sum(), args)
    ref = torch.autograd.grad((_torch_gru(*args)[0] * weights).sum() + _torch_gru(*args)[1].sum(), args)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_bf16_runs_products_in_bf16_and_stays_close():
    args = _inputs(torch.float32, batch=4, steps=7, size=16, hidden=16)
    exact_out, _ = gru_window(*args)
    out, h = gru_window(*args, mm_dtype=torch.bfloat16)
    assert out.dtype == torch.bfloat16 and h.dtype == torch.float32  # the carried state stays fp32
    error = (out.float() - exact_out).abs()
    assert error.max() < 0.1 and error.mean() < 0.01  # bf16 keeps ~3 significant digits
    grads = torch.autograd.grad(out.float().sum(), args)
    assert all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def test_rnn_layer_uses_it_with_weight_drop():
    torch.manual_seed(0)
    layer = RNNLayer("gru", 5, 7, weight_drop=0.5)
    x = torch.randn(2, 6, 5)
    state = layer.initial_state(2, "cpu")
    layer.eval()
    out, (h,) = layer(x, state)
    ref_out, ref_h = torch.gru(
        x, state[0], [layer.weight_ih, layer.weight_hh, layer.bias_ih, layer.bias_hh], True, 1, 0.0, False, False, True
    )
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(h, ref_h)
    layer.train()
    out, _ = layer(x, state)
    out.sum().backward()
    assert layer.weight_hh.grad is not None and (layer.weight_hh.grad == 0).any()  # dropped connections
