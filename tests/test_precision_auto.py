"""trainer.precision=auto without timing (NLP_LSTM_SPEED_CHOICES=off): bf16 where the CPU (or
card) has bf16 instructions, else fp32. (With timing, the default: tests/test_speed_choices.py.)"""

from __future__ import annotations

import json

import torch

from helpers.corpora import TINY_MODEL, text_data_overrides
from helpers.runs import run_train
from nlp_lstm import device as precision
from nlp_lstm.device import cpu_has_native_bf16, resolve_precision
from nlp_lstm.speed_choices import MODE_ENV


def test_auto_follows_the_cpus_bf16_instructions(monkeypatch):
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == ("bf16" if cpu_has_native_bf16() else "fp32")
    for fixed in ("fp32", "bf16", "fp16"):
        assert resolve_precision(fixed, cpu) == fixed
    # A CPU with neither AVX512-BF16 nor AMX falls back to fp32 (the probes say no).
    monkeypatch.setattr(precision.torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(precision.torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert resolve_precision("auto", cpu) == "fp32"
    monkeypatch.setattr(precision.torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert resolve_precision("auto", cpu) == "bf16"


def test_a_run_with_auto_logs_the_precision_it_uses(tmp_path, text_corpus, monkeypatch):
    monkeypatch.setenv(MODE_ENV, "off")
    run_dir = tmp_path / "run"
    proc = run_train(
        run_dir,
        text_data_overrides(text_corpus)
        + TINY_MODEL
        + ["trainer.precision=auto", "trainer.max_steps=3", "logger.tensorboard=false"],
        tmp_path / "data",
    )
    expected = "bf16" if cpu_has_native_bf16() else "fp32"
    assert f"trainer.precision=auto: {expected} ({MODE_ENV}=off: not timed)" in proc.stderr + proc.stdout
    log = (run_dir / "train.log").read_text()
    assert log.count(f"softmax products: 128 rows ({MODE_ENV}=off: not timed)") == 1, log  # not at every step
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed"
