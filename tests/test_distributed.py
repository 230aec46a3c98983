"""Data-parallel training: 2 processes under the real torchrun with the gloo backend train
the same parameters as one process with the same global batch; only rank 0 writes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers.corpora import TINY_MODEL, text_data_overrides
from helpers.paths import ROOT
from helpers.runs import run_train
from helpers.tagging import TINY_TAGGER, conll_overrides, tagging_corpus
from nlp_lstm.training.checkpoint import load_checkpoint

NO_DROPOUT = [
    "model.dropout_embedding=0",
    "model.dropout_input=0",
    "model.dropout_hidden=0",
    "model.dropout_output=0",
    "model.weight_drop=0",
]
BUDGET = ["trainer.max_steps=6", "trainer.max_epochs=null", "trainer.max_time=null", "optim.schedule=none"]


def run_torchrun(run_dir: Path, overrides, data_dir: Path, nproc: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "NLP_LSTM_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        str(ROOT / "train.py"),
        f"hydra.run.dir={run_dir}",
        *overrides,
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def final_parameters(run_dir: Path):
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]


def assert_same_parameters(a, b):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)


def assert_only_rank_zero_wrote(run_dir: Path):
    assert (run_dir / "metrics.json").is_file()
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.pt", "run.json"]


def train_single_and_parallel(tmp_path, common, per_process_batch: int) -> Path:
    """One process with batch 2B and two under torchrun with batch B each: the same final
    parameters, and only rank 0's outputs. Returns the parallel run dir."""
    single, parallel = tmp_path / "single", tmp_path / "ddp"
    run_train(single, common + [f"task.batch_size={2 * per_process_batch}"], tmp_path / "data")
    run_torchrun(parallel, common + [f"task.batch_size={per_process_batch}"], tmp_path / "data")
    assert_same_parameters(final_parameters(single), final_parameters(parallel))
    assert_only_rank_zero_wrote(parallel)
    # Evaluation is sharded over the ranks and summed: the metrics are one process's.
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (single, parallel)]
    for block in ("best_valid", "test"):
        expected, got = metrics[0][block], metrics[1][block]
        assert expected.keys() == got.keys()
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-6), (block, key)
    return parallel


def test_two_process_lm_equals_one_process_with_the_global_batch(text_corpus, tmp_path):
    common = text_data_overrides(text_corpus) + TINY_MODEL + NO_DROPOUT + BUDGET + ["optim.lr=2"]
    parallel = train_single_and_parallel(tmp_path, common, per_process_batch=2)
    # A control: a different global batch really does train different parameters.
    other = tmp_path / "other"
    run_train(other, common + ["task.batch_size=2"], tmp_path / "data")
    with pytest.raises(AssertionError):
        assert_same_parameters(final_parameters(other), final_parameters(parallel))


def test_two_process_tagger_equals_one_process_with_the_global_batch(tmp_path):
    corpus = tagging_corpus(tmp_path / "corpus")
    common = (
        conll_overrides(corpus)
        + TINY_TAGGER
        + BUDGET
        + ["model.word_dropout=0", "model.dropout_input=0", "model.dropout_hidden=0", "model.dropout_output=0"]
    )
    parallel = train_single_and_parallel(tmp_path, common, per_process_batch=4)
    assert len(list((parallel / "predictions").iterdir())) >= 1
