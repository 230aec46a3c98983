"""Decisions of the GPU path that are visible on a CPU: the RNN's precision, the process
group's device order, determinism settings, the fused softmax's chunking per device."""

import subprocess
import sys

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

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


@pytest.mark.parametrize("precision, dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16),
                                              ("fp16", torch.float16)])
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


def test_deterministic_setting_configures_cublas_cudnn_and_torch():
    code = ("import os, torch; from nlp_lstm.train_entry import make_deterministic; make_deterministic(); "
            "print(os.environ['CUBLAS_WORKSPACE_CONFIG'], torch.are_deterministic_algorithms_enabled(), "
            "torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)")
    env = {k: v for k, v in __import__("os").environ.items() if k != "CUBLAS_WORKSPACE_CONFIG"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.split() == [":4096:8", "True", "True", "False"]
