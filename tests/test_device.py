"""Where a model runs: a device this machine lacks is refused in one line that names where
the name came from (a command's --device is not the training config's trainer.device)."""

from __future__ import annotations

import pytest
import torch

import nlp_lstm
from nlp_lstm.cli import main
from nlp_lstm.device import DeviceError, resolve_device

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


def test_auto_and_cpu_resolve():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cuda", "mps", "cpu")


def test_a_name_that_is_no_device_is_refused():
    with pytest.raises(DeviceError, match=r"^device='tpu': not a device \(auto, cpu, cuda, cuda:N or mps\)$"):
        resolve_device("tpu")


@no_cuda
def test_missing_cuda_is_named_by_where_it_was_asked_for():
    with pytest.raises(DeviceError, match=r"^config trainer.device='cuda': CUDA is not available"):
        resolve_device("cuda", "config trainer.device")


@no_cuda
def test_tag_with_device_cuda_on_a_cpu_machine_says_device_not_trainer_device(trained_tagger, capsys):
    model = str(trained_tagger["run_dir"] / "model")
    assert main(["tag", model, "-", "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: device='cuda': CUDA is not available on this machine (use cpu or auto)"
    with pytest.raises(DeviceError, match="^device='cuda:1': CUDA is not available"):
        nlp_lstm.load(model, device="cuda:1")


def test_load_refuses_the_other_kind_in_one_line(trained_tagger):
    model = trained_tagger["run_dir"] / "model"
    with pytest.raises(nlp_lstm.errors.ModelPackageError, match=r"model: not a language model \(a tagger package\)$"):
        nlp_lstm.load(model, "cpu", kind="lm")
    assert type(nlp_lstm.load(model, "cpu", kind="tagger")).__name__ == "Tagger"
    with pytest.raises(ValueError, match="kind='parser'"):
        nlp_lstm.load(model, "cpu", kind="parser")
