"""CUDA paths. Marked `gpu`: run with `python -m pytest -m gpu` on a machine with a GPU."""

import json

import pytest
import torch

from conftest import TINY_MODEL, run_train, text_data_overrides
from nlp_lstm.models.rnn import RNNLayer

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_fused_layer_on_cuda_matches_cpu(cell):
    torch.manual_seed(0)
    layer = RNNLayer(cell, 16, 32, weight_drop=0.3).eval()
    x = torch.randn(4, 20, 16)
    out_cpu, _ = layer(x, layer.initial_state(4, "cpu"))
    layer.cuda()
    out_gpu, _ = layer(x.cuda(), layer.initial_state(4, "cuda"))
    assert torch.allclose(out_cpu, out_gpu.cpu(), atol=1e-4)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_training_on_cuda(tmp_path, text_corpus, precision):
    run_dir = tmp_path / "run"
    run_train(run_dir, text_data_overrides(text_corpus) + TINY_MODEL + [
        "trainer.device=cuda", f"trainer.precision={precision}", "trainer.max_steps=20"], tmp_path / "data")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"]["ppl"] < 1000


def test_fused_cross_entropy_on_cuda_matches_textbook():
    import torch.nn.functional as F

    from nlp_lstm.models.softmax import linear_cross_entropy

    torch.manual_seed(0)
    features = torch.randn(300, 32, device="cuda", requires_grad=True)
    weight = torch.randn(1000, 32, device="cuda", requires_grad=True)
    bias = torch.zeros(1000, device="cuda", requires_grad=True)
    targets = torch.randint(0, 1000, (300,), device="cuda")
    expected = F.cross_entropy(F.linear(features, weight, bias), targets, reduction="sum")
    got = linear_cross_entropy(features, weight, bias, targets)
    assert torch.allclose(got, expected, rtol=1e-4)
    for a, b in zip(torch.autograd.grad(got, (features, weight)), torch.autograd.grad(expected, (features, weight))):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16),
                                              ("fp32", torch.float32)])
def test_cudnn_rnn_runs_in_the_configured_precision(precision, dtype):
    """trainer.precision=bf16 means bf16 in cuDNN too (autocast's RNN wrapper once cast to
    fp16 whatever the autocast dtype): input, weights and states, and the returned state."""
    from test_gpu_path_on_cpu import _RecordDtypes

    torch.backends.cuda.matmul.allow_tf32 = False
    for cell in ("lstm", "gru"):
        layer = RNNLayer(cell, 16, 32).cuda()
        x, state = torch.randn(4, 9, 16, device="cuda"), layer.initial_state(4, "cuda")
        recorder = _RecordDtypes()
        context = (torch.autocast("cuda", dtype=dtype) if precision != "fp32"
                   else torch.autocast("cuda", enabled=False))
        with context, recorder:
            out, new_state = layer(x, state)
        assert recorder.calls and all(dtypes == {dtype} for _, dtypes in recorder.calls), recorder.calls
        assert out.dtype == dtype and all(s.dtype == dtype for s in new_state)


def test_deterministic_training_on_cuda_repeats_bitwise(tmp_path, text_corpus):
    from nlp_lstm.training.checkpoint import load_checkpoint

    common = text_data_overrides(text_corpus) + TINY_MODEL + ["trainer.device=cuda", "trainer.max_steps=15",
                                                               "trainer.deterministic=true"]
    for name in ("a", "b"):
        run_train(tmp_path / name, common, tmp_path / "data")
    a = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
