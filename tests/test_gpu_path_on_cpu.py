"""Decisions of the GPU path that are visible on a CPU: the RNN's precision, the process
group's device order, determinism settings, the fused softmax's chunking per device."""

import traceback

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from helpers.runs import in_process, step_trainer
from nlp_lstm.models.rnn import RNNLayer
from nlp_lstm.models.softmax import ROW_CHUNK, row_chunk


class _RecordDtypes(TorchDispatchMode):
    """The floating dtypes every op really receives (below autocast, as kernels see them),
    but the explicit casts into the compute dtype."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        flat = [a for a in args if isinstance(a, torch.Tensor)]
        flat += [t for a in args if isinstance(a, (list, tuple)) for t in a if isinstance(t, torch.Tensor)]
        dtypes = {t.dtype for t in flat if t.is_floating_point()}
        if name != "_to_copy" and dtypes:
            self.calls.append((name, dtypes))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(
    "precision, dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)]
)
def test_lstm_kernel_runs_in_the_configured_precision(precision, dtype):
    """Input, weights and both states reach the kernel (oneDNN's in fp32/bf16; fp16 has
    none on CPU and runs per step) in one dtype, the configured one, and the layer returns
    its output and carried state in it."""
    layer = RNNLayer("lstm", 8, 16)
    x, state = torch.randn(2, 5, 8), layer.initial_state(2, "cpu")
    recorder = _RecordDtypes()
    context = torch.autocast("cpu", dtype=dtype) if precision != "fp32" else torch.autocast("cpu", enabled=False)
    with context, recorder:
        out, (h, c) = layer(x, state)
    names = {name for name, _ in recorder.calls}
    assert names & {"mkldnn_rnn_layer", "addmm", "lstm"}, names
    assert all(dtypes == {dtype} for _, dtypes in recorder.calls), recorder.calls
    assert out.dtype == h.dtype == c.dtype == dtype


def test_cpu_gru_runs_products_in_bf16_with_an_fp32_state():
    layer = RNNLayer("gru", 8, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, (h,) = layer(torch.randn(2, 5, 8), layer.initial_state(2, "cpu"))
    assert out.dtype == torch.bfloat16 and h.dtype == torch.float32


def test_rnn_precision_does_not_depend_on_autocast_rnn_wrappers():
    """Autocast is off inside the layer: an fp32 input under no autocast stays fp32 even
    where a wrapper would have cast it, and bf16 tensors without autocast stay bf16."""
    layer = RNNLayer("lstm", 8, 16).to(torch.bfloat16)
    out, (h, c) = layer(torch.randn(2, 5, 8, dtype=torch.bfloat16), layer.initial_state(2, "cpu", torch.bfloat16))
    assert out.dtype == h.dtype == c.dtype == torch.bfloat16


def test_softmax_chunks_are_cache_sized_on_cpu_and_memory_sized_on_gpu():
    assert row_chunk("cpu", 33_278, training=True) == ROW_CHUNK
    assert row_chunk("cpu", 33_278, training=False) > ROW_CHUNK
    rows = row_chunk("cuda", 33_278, training=True)
    assert rows >= 2000 and rows * 33_278 * 4 <= 256 * 2**20
    assert row_chunk("cuda", 10**7, training=True) == ROW_CHUNK  # never below the CPU's


def test_cuda_device_is_set_before_the_process_group_is_made(monkeypatch):
    """NCCL binds a communicator to the current device: set_device must come first."""
    import torch.distributed as dist

    from nlp_lstm.training import distributed

    calls = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(distributed, "_uses_cuda", lambda setting: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: calls.append(("set_device", index)))
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend: calls.append(("init_process_group", backend)))
    info = distributed.init_from_env("cuda")
    assert calls == [("set_device", 1), ("init_process_group", "nccl")]
    assert (info.rank, info.world_size, info.local_rank) == (1, 2, 1)


def test_deterministic_setting_configures_cublas_cudnn_and_torch(monkeypatch):
    import os

    from nlp_lstm.train_entry import make_deterministic

    def code():
        make_deterministic()
        print(
            os.environ["CUBLAS_WORKSPACE_CONFIG"],
            torch.are_deterministic_algorithms_enabled(),
            torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark,
        )

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    # as `python -c` would run it; torch's flags and the environment are put back afterwards
    proc = in_process(code, ["-c"])
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.split() == [":4096:8", "True", "True", "False"]


# Functions that work on the batch while it is still on the host (before `.to(device)`):
# on a CPU their ops look like any other, on a GPU they never touch the device.
HOST_SIDE = {"cluster_rows"}


class _RecordHostSyncs(TorchDispatchMode):
    """Ops that make a GPU wait for the host: reading a value (.item(), bool(), float()) and
    boolean-mask indexing (its output size depends on the data), but those of HOST_SIDE."""

    def __init__(self):
        super().__init__()
        self.syncs = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        bool_index = name in ("index", "index_put", "index_put_") and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] if len(args) > 1 else []) or []
        )
        if name in ("_local_scalar_dense", "nonzero", "masked_select") or bool_index:
            if not HOST_SIDE & {frame.name for frame in traceback.extract_stack()}:
                self.syncs.append(name)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("head, optim", [("crf", "tagger_adam"), ("softmax", "tagger_sgd")])
def test_a_tagger_training_step_never_waits_for_the_host(tmp_path, head, optim):
    """The tagger's step (char CNN, CRF or softmax head, auxiliary LM cost), its optimiser
    update and the default non-finite check (trainer.nonfinite=skip) read nothing back."""
    from helpers.tagging import TINY_TAGGER, conll_overrides, tagging_corpus

    corpus = tagging_corpus(tmp_path / "corpus")
    trainer, task = step_trainer(
        tmp_path,
        conll_overrides(corpus, pos_feature=True)
        + TINY_TAGGER
        + [f"model.head={head}", "model.lm_loss_weight=0.1", f"optim={optim}", f"paths.data_dir={tmp_path / 'data'}"],
    )
    trainer.train_step(task.next_batch())  # warm up (lazy state)
    batch = task.next_batch()  # made on the host, as a data loader would
    recorder = _RecordHostSyncs()
    with recorder:
        trainer.train_step(batch)
    assert recorder.syncs == []


@pytest.mark.parametrize(
    "nonfinite, optim, averaging, softmax",
    [
        ("skip", "sgd", False, "full"),
        ("stop", "adamw", False, "full"),
        ("skip", "ntasgd", True, "full"),
        ("off", "sgd", False, "full"),
        ("skip", "sgd", False, "adaptive"),
    ],
)
def test_a_language_model_training_step_never_waits_for_the_host(tmp_path, nonfinite, optim, averaging, softmax):
    """The non-finite check keeps its flag on the device: the fused optimiser skips the
    update with it (as under GradScaler), the carried state and the iterate average are
    masked with it, and its counters are read at log time, not in the step."""
    from torch.optim.swa_utils import AveragedModel

    from helpers.corpora import TINY_MODEL, make_lines, text_data_overrides, write_lines

    corpus = {
        s: write_lines(tmp_path / f"{s}.txt", make_lines(200, i)) for i, s in enumerate(("train", "valid", "test"))
    }
    trainer, task = step_trainer(
        tmp_path,
        text_data_overrides(corpus)
        + TINY_MODEL
        + [
            f"paths.data_dir={tmp_path / 'data'}",
            f"trainer.nonfinite={nonfinite}",
            f"optim={optim}",
            "model.activation_reg=1",
            "model.temporal_activation_reg=1",
            f"model.softmax={softmax}",
            "model.tie_weights=false",
            "model.adaptive_cutoffs=[5,15]",
        ],
    )
    assert (trainer.model.adaptive is not None) == (softmax == "adaptive")
    if averaging:  # as NT-ASGD's trigger leaves it
        trainer.averaged = AveragedModel(trainer.model)
    trainer.train_step(task.next_batch())
    batch = task.next_batch()
    recorder = _RecordHostSyncs()
    with recorder:
        trainer.train_step(batch)
    assert recorder.syncs == []


def test_weights_in_a_given_layout_are_views_of_one_buffer_and_keep_gradients():
    """The helper behind cuDNN's flat buffer: pieces placed at given offsets (gaps and any
    order) in one new buffer, values equal, gradients reaching every piece."""
    from nlp_lstm.models.cudnn_weights import in_layout

    torch.manual_seed(0)
    pieces = [
        torch.randn(4, 3, requires_grad=True),
        torch.randn(4, 2, requires_grad=True),
        torch.randn(4, requires_grad=True),
        torch.randn(4, requires_grad=True),
    ]
    offsets, total = [0, 16, 12, 28], 40  # w_hh after b_ih, a 4-element gap, padding at the end
    views = in_layout(pieces, offsets, total)
    storage = views[0].untyped_storage().data_ptr()
    for view, piece, offset in zip(views, pieces, offsets):
        assert torch.equal(view, piece) and view.storage_offset() == offset
        assert view.untyped_storage().data_ptr() == storage and view.is_contiguous()
    assert views[0].untyped_storage().nbytes() == total * 4
    weights = [torch.randn_like(p) for p in pieces]
    grads = torch.autograd.grad(sum((v * w).sum() for v, w in zip(views, weights)), pieces)
    assert all(torch.equal(g, w) for g, w in zip(grads, weights))
    with pytest.raises(ValueError):
        in_layout(pieces, [0, 4, 12, 28], total)  # overlapping
