"""CUDA paths. Marked `gpu`: run with `python -m pytest -m gpu` on a machine with a GPU."""

import json

import pytest
import torch

from helpers.corpora import TINY_MODEL, text_data_overrides
from helpers.runs import run_train, step_trainer
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
    run_train(
        run_dir,
        text_data_overrides(text_corpus)
        + TINY_MODEL
        + ["trainer.device=cuda", f"trainer.precision={precision}", "trainer.max_steps=20"],
        tmp_path / "data",
    )
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


@pytest.mark.parametrize(
    "precision, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16), ("fp32", torch.float32)]
)
def test_cudnn_rnn_runs_in_the_configured_precision(precision, dtype):
    """trainer.precision=bf16 means bf16 in cuDNN too (autocast's RNN wrapper once cast to
    fp16 whatever the autocast dtype): input, weights and states, and the returned state."""
    from test_gpu_path_on_cpu import _RecordDtypes

    from nlp_lstm.models.cudnn_weights import runs_in_cudnn

    if dtype == torch.bfloat16 and not runs_in_cudnn(dtype, torch.device("cuda")):
        dtype = torch.float32  # this PyTorch runs no bf16 RNN in cuDNN: fp32 is the policy then
    for cell in ("lstm", "gru"):
        layer = RNNLayer(cell, 16, 32).cuda()
        x, state = torch.randn(4, 9, 16, device="cuda"), layer.initial_state(4, "cuda")
        recorder = _RecordDtypes()
        autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        context = (
            torch.autocast("cuda", dtype=autocast_dtype) if autocast_dtype else torch.autocast("cuda", enabled=False)
        )
        with context, recorder:
            out, new_state = layer(x, state)
        assert recorder.calls and all(dtypes == {dtype} for _, dtypes in recorder.calls), recorder.calls
        assert "_cudnn_rnn" in {name for name, _ in recorder.calls}  # never the slow step-by-step loop
        assert out.dtype == dtype and all(s.dtype == dtype for s in new_state)


def test_deterministic_training_on_cuda_repeats_bitwise(tmp_path, text_corpus):
    from nlp_lstm.training.checkpoint import load_checkpoint

    common = (
        text_data_overrides(text_corpus)
        + TINY_MODEL
        + ["trainer.device=cuda", "trainer.max_steps=15", "trainer.deterministic=true"]
    )
    for name in ("a", "b"):
        run_train(tmp_path / name, common, tmp_path / "data")
    a = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(autouse=True)
def _no_tf32():
    """Parity tests compare against fp32 CPU results: TF32 matmuls (on by default for cuDNN
    on Ampere and later) would need looser tolerances than the code deserves."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_crf_on_cuda_matches_cpu():
    from nlp_lstm.models.crf import CRF

    torch.manual_seed(0)
    allowed = torch.rand(7, 7) > 0.3
    allowed.fill_diagonal_(True)
    crf = CRF(7, allowed=allowed)
    with torch.no_grad():
        crf.transitions.normal_()
        crf.start.normal_()
    emissions = torch.randn(5, 11, 7) * 3
    mask = torch.arange(11)[None] < torch.tensor([11, 1, 6, 9, 3])[:, None]
    tags = torch.randint(0, 7, (5, 11))
    results = []
    for device in ("cpu", "cuda"):
        model, e = crf.to(device), emissions.to(device).requires_grad_()
        nll = model.nll(e, tags.to(device), mask.to(device))
        grads = torch.autograd.grad(nll, [e, model.transitions])
        results.append(
            (
                float(nll),
                [g.cpu() for g in grads],
                model.viterbi(e.detach(), mask.to(device)),
                model.nbest(e.detach()[0], 4),
            )
        )
    (nll_cpu, grads_cpu, paths_cpu, nbest_cpu), (nll_gpu, grads_gpu, paths_gpu, nbest_gpu) = results
    assert nll_gpu == pytest.approx(nll_cpu, rel=1e-5)
    for a, b in zip(grads_cpu, grads_gpu):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert paths_cpu == paths_gpu
    assert [s for s, _ in nbest_cpu] == [s for s, _ in nbest_gpu]


def test_weight_drop_in_training_mode_on_cuda():
    torch.manual_seed(0)
    layer = RNNLayer("lstm", 16, 32, weight_drop=0.5).cuda().train()
    x = torch.randn(4, 12, 16, device="cuda")
    a, _ = layer(x, layer.initial_state(4, "cuda"))
    b, _ = layer(x, layer.initial_state(4, "cuda"))
    assert not torch.allclose(a, b)  # a fresh DropConnect mask per call
    a.sum().backward()
    assert torch.isfinite(layer.weight_hh.grad).all() and layer.weight_hh.grad.abs().sum() > 0
    layer.eval()
    c, _ = layer(x, layer.initial_state(4, "cuda"))
    d, _ = layer(x, layer.initial_state(4, "cuda"))
    assert torch.equal(c, d)


def test_bidirectional_lm_trains_on_cuda(tmp_path, text_corpus):
    run_dir = tmp_path / "run"
    run_train(
        run_dir,
        text_data_overrides(text_corpus)
        + TINY_MODEL
        + ["trainer.device=cuda", "model.bidirectional=true", "trainer.max_steps=20", "trainer.precision=bf16"],
        tmp_path / "data",
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"]["ppl"] < 1000


def test_tagger_trains_on_cuda(tmp_path):
    from helpers.tagging import TINY_TAGGER, conll_overrides, tagging_corpus

    corpus = tagging_corpus(tmp_path / "corpus")
    run_dir = tmp_path / "run"
    run_train(
        run_dir,
        conll_overrides(corpus, pos_feature=True)
        + TINY_TAGGER
        + ["trainer.device=cuda", "trainer.max_epochs=4", "trainer.max_time=null", "model.lm_loss_weight=0.1"],
        tmp_path / "data",
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"]["f1"] > 50


@pytest.mark.parametrize("task", ["lm", "tagger"])
def test_resume_on_cuda_equals_the_uninterrupted_run(tmp_path, text_corpus, task):
    from helpers.resume import straight_and_split

    if task == "lm":
        common = text_data_overrides(text_corpus) + TINY_MODEL + ["trainer.val_check_interval=4"]
    else:
        from helpers.tagging import TINY_TAGGER, conll_overrides, tagging_corpus

        common = conll_overrides(tagging_corpus(tmp_path / "corpus")) + TINY_TAGGER + ["trainer.val_check_interval=5"]
    common += [
        "trainer.device=cuda",
        "trainer.deterministic=true",
        "trainer.max_epochs=null",
        "trainer.max_time=null",
        "logger.tensorboard=false",
    ]
    straight_and_split(tmp_path, common, total=30, first=18)  # best, weights, schedule... equal, bitwise


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("mode", ["plain", "weight_drop", "bf16"])
def test_cudnn_gets_one_flat_weight_buffer(cell, mode):
    """No 'not part of single contiguous chunk of memory' copy: the parameters are views of
    cuDNN's buffer, and a weight-dropped or cast set is built as one; same results as a
    layer whose weights were never flattened."""
    import warnings

    torch.manual_seed(0)
    layer = RNNLayer(cell, 16, 32, weight_drop=0.5 if mode == "weight_drop" else 0.0).cuda()
    assert layer.weight_hh.untyped_storage().data_ptr() == layer.weight_ih.untyped_storage().data_ptr()
    x = torch.randn(4, 9, 16, device="cuda")
    context = torch.autocast("cuda", dtype=torch.bfloat16) if mode == "bf16" else torch.autocast("cuda", enabled=False)
    torch.manual_seed(1)
    with warnings.catch_warnings(record=True) as caught, context:
        warnings.simplefilter("always")
        out, _ = layer(x, layer.initial_state(4, "cuda"))
        out.float().sum().backward()
    assert not [w for w in caught if "contiguous chunk" in str(w.message)], [str(w.message) for w in caught]
    reference = RNNLayer(cell, 16, 32, weight_drop=layer.weight_drop)
    reference.load_state_dict({k: v.cpu() for k, v in layer.state_dict().items()})
    reference.cuda().weight_hh.data = reference.weight_hh.data.clone()  # a separate, unflattened tensor
    torch.manual_seed(1)
    with context:
        expected, _ = reference(x, reference.initial_state(4, "cuda"))
    tolerance = 2e-2 if mode == "bf16" else 1e-5
    torch.testing.assert_close(out.float(), expected.float(), rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("what", ["lm_full", "lm_adaptive_bf16", "lm_ntasgd_averaging", "tagger_crf", "tagger_softmax"])
def test_a_training_step_on_cuda_never_synchronises(tmp_path, text_corpus, what):
    """The whole step (non-finite check on, as by default) under CUDA's sync debug mode:
    any read-back, nonzero() or copy from pageable memory raises."""
    from torch.optim.swa_utils import AveragedModel

    if what.startswith("lm"):
        overrides = text_data_overrides(text_corpus) + TINY_MODEL + [f"paths.data_dir={tmp_path / 'data'}"]
        if what == "lm_adaptive_bf16":
            overrides += [
                "model.softmax=adaptive",
                "model.tie_weights=false",
                "model.adaptive_cutoffs=[5,15]",
                "trainer.precision=bf16",
            ]
        if what == "lm_ntasgd_averaging":
            overrides += ["optim=ntasgd"]
    else:
        from helpers.tagging import TINY_TAGGER, conll_overrides, tagging_corpus

        overrides = (
            conll_overrides(tagging_corpus(tmp_path / "corpus"), pos_feature=True)
            + TINY_TAGGER
            + [f"model.head={what.split('_')[1]}", "model.lm_loss_weight=0.1", f"paths.data_dir={tmp_path / 'data'}"]
        )
    trainer, task = step_trainer(tmp_path, overrides, device="cuda")
    if what == "lm_ntasgd_averaging":
        trainer.averaged = AveragedModel(trainer.model)
    trainer.train_step(task.next_batch())  # warm up (lazy state, cuDNN plans)
    batch = task.next_batch()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(2):
            trainer.train_step(batch)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    trainer.read_step_flags()
    assert trainer.state.skipped_steps == 0
