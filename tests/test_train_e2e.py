"""End to end through `python train.py` on a corpus the test writes: train, outputs,
TensorBoard events (read back with tensorboard's own reader), load and generate, resume."""

import json
import math

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import nlp_lstm
from helpers.corpora import TINY_MODEL, text_data_overrides
from helpers.runs import run_train
from nlp_lstm.training.checkpoint import load_checkpoint


def _events(run_dir):
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_training_writes_metrics_model_checkpoint_and_tensorboard(trained_lm):
    run_dir = trained_lm["run_dir"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    for block in ("best_valid", "test"):
        assert {"loss", "ppl"} <= set(metrics[block])
        assert metrics[block]["ppl"] == pytest.approx(math.exp(metrics[block]["loss"]))
    assert metrics["train"]["tokens_per_sec"] > 0 and metrics["train"]["steps"] > 0
    assert metrics["train"]["wall_time_s"] > 0 and metrics["params"] > 0
    assert len(metrics["history"]) == 2  # one validation per epoch
    # it learnt the toy grammar: far better than uniform over the vocabulary
    vocab = len(json.loads((run_dir / "model" / "tokenizer" / "vocab.json").read_text())["itos"])
    assert metrics["best_valid"]["ppl"] < vocab / 3
    assert (run_dir / "checkpoints" / "last.pt").exists()
    assert (run_dir / "train.log").exists()

    acc = _events(run_dir)
    scalars = set(acc.Tags()["scalars"])
    assert {
        "train/loss",
        "train/ppl",
        "train/lr",
        "train/grad_norm",
        "train/tokens_per_sec",
        "valid/loss",
        "valid/ppl",
    } <= scalars
    steps = [e.step for e in acc.Scalars("train/loss")]
    assert steps == sorted(steps) and len(steps) == len(set(steps))
    assert "samples/text_summary" in acc.Tags()["tensors"]  # generated text, each epoch
    assert any(t.startswith("weights/") for t in acc.Tags()["histograms"])
    assert any(t.startswith("weights_grad/") for t in acc.Tags()["histograms"])
    assert (run_dir / "projector_config.pbtxt").exists()
    hparams_files = [p for p in run_dir.rglob("events.out.tfevents.*")]
    assert any(b"hparams" in p.read_bytes() for p in hparams_files)
    assert "valid_best/ppl" in scalars and "valid_best/test_ppl" in scalars
    groups = sorted({t.split("/")[0] for t in scalars | set(acc.Tags()["histograms"])})
    assert groups[:2] == ["train", "valid"]  # what Time Series opens first (it sorts groups by name)


def test_loaded_package_generates_and_scores_without_the_corpus(trained_lm, tmp_path):
    import shutil

    package = tmp_path / "elsewhere"
    shutil.copytree(trained_lm["run_dir"] / "model", package)
    for path in trained_lm["corpus"].values():
        path.unlink(missing_ok=True) if False else None
    lm = nlp_lstm.load(package, device="cpu")
    text = lm.generate("the cat", max_tokens=12, seed=3)
    assert text.startswith("the cat") and len(text.split()) >= 5
    assert lm.generate("the cat", max_tokens=12, seed=3) == text
    assert lm.generate("a xylophone quantum", max_tokens=5, seed=1)  # unknown words never crash
    good = lm.score_lines(["the cat sat on the mat ."])["ppl"]
    bad = lm.score_lines(["mat the . on sat cat the"])["ppl"]
    assert good < bad


def test_package_weights_load_without_pickled_code(trained_lm):
    state = torch.load(trained_lm["run_dir"] / "model" / "weights.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    meta = json.loads((trained_lm["run_dir"] / "model" / "package.json").read_text())
    assert meta["format_version"] == 1 and meta["task"] == "lm"


def test_resume_continues_exactly(tmp_path, text_corpus):
    """Stopped at step 7 (mid-epoch) and resumed to 14 == an uninterrupted 14-step run."""
    common = (
        text_data_overrides(text_corpus)
        + TINY_MODEL
        + [
            "trainer.max_epochs=null",
            "trainer.max_time=null",
            "optim.schedule=none",
            "logger.tensorboard=false",
            "model.dropout_output=0.3",
            "model.weight_drop=0.2",
            "task.variable_bptt=true",
            "task.bptt=10",
            "task.batch_size=40",
        ]
    )  # about 8 steps an epoch
    straight, split = tmp_path / "straight", tmp_path / "split"
    run_train(straight, common + ["trainer.max_steps=14"], tmp_path / "data")
    run_train(split, common + ["trainer.max_steps=7"], tmp_path / "data")
    first = load_checkpoint(split / "checkpoints" / "last.pt")
    assert first["trainer"]["step"] == 7 and first["task"]["position"] > 0  # mid-epoch, hidden carried
    assert first["task"]["hidden"] is not None
    run_train(split, common + ["trainer.max_steps=14", "trainer.resume=true"], tmp_path / "data")
    a = load_checkpoint(straight / "checkpoints" / "last.pt")
    b = load_checkpoint(split / "checkpoints" / "last.pt")
    assert a["trainer"]["step"] == b["trainer"]["step"] == 14
    assert a["trainer"]["epoch"] >= 1  # the run crossed an epoch boundary
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name


def test_resume_with_different_model_is_refused(tmp_path, text_corpus):
    common = text_data_overrides(text_corpus) + TINY_MODEL + ["trainer.max_steps=3", "logger.tensorboard=false"]
    run_train(tmp_path / "run", common, tmp_path / "data")
    proc = run_train(
        tmp_path / "run", common + ["model.hidden_size=32", "trainer.resume=true"], tmp_path / "data", check=False
    )
    assert proc.returncode == 2
    assert "error: config model.hidden_size=32 differs from the run's 24" in proc.stderr


def test_resume_without_checkpoint_is_a_clear_error(tmp_path, text_corpus):
    proc = run_train(
        tmp_path / "fresh",
        text_data_overrides(text_corpus) + TINY_MODEL + ["trainer.resume=true"],
        tmp_path / "data",
        check=False,
    )
    assert proc.returncode == 2
    assert "no checkpoint to resume from" in proc.stderr


def test_resumed_tensorboard_has_no_duplicate_steps(tmp_path, text_corpus):
    common = (
        text_data_overrides(text_corpus)
        + TINY_MODEL
        + ["trainer.max_epochs=null", "trainer.max_time=null", "logger.histogram_every_n_steps=0"]
    )
    run_dir = tmp_path / "run"
    run_train(run_dir, common + ["trainer.max_steps=6"], tmp_path / "data")
    run_train(run_dir, common + ["trainer.max_steps=12", "trainer.resume=true"], tmp_path / "data")
    steps = [e.step for e in _events(run_dir).Scalars("train/loss")]
    assert steps == sorted(set(steps)) and steps[-1] == 12


@pytest.mark.parametrize("tokenizer", ["char", "sentencepiece"])
def test_char_and_subword_models_report_word_ppl_and_bpc(tmp_path, text_corpus, tokenizer):
    extra = ["tokenizer.vocab_size=60"] if tokenizer == "sentencepiece" else []
    run_dir = tmp_path / "run"
    run_train(
        run_dir,
        text_data_overrides(text_corpus)
        + TINY_MODEL
        + [f"tokenizer={tokenizer}", *extra, "trainer.max_steps=6", "logger.tensorboard=false"],
        tmp_path / "data",
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for block in ("best_valid", "test"):
        assert {"word_ppl", "bpc"} <= set(metrics[block])
        # word ppl is the same NLL over fewer units than tokens: larger than the token ppl
        assert metrics[block]["word_ppl"] > metrics[block]["ppl"]


def test_bidirectional_lm_trains_and_reports_each_direction(tmp_path, text_corpus):
    run_dir = tmp_path / "run"
    run_train(
        run_dir,
        text_data_overrides(text_corpus) + TINY_MODEL + ["model.bidirectional=true", "trainer.max_steps=6"],
        tmp_path / "data",
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"ppl_forward", "ppl_backward"} <= set(metrics["test"])
    assert "valid/ppl_backward" in _events(run_dir).Tags()["scalars"]


def test_gru_ntasgd_and_time_budget(tmp_path, text_corpus):
    run_dir = tmp_path / "run"
    run_train(
        run_dir,
        text_data_overrides(text_corpus)
        + TINY_MODEL
        + [
            "model.cell=gru",
            "optim=ntasgd",
            "optim.nonmono=1",
            "trainer.max_epochs=null",
            "trainer.max_time=4",
            "trainer.val_check_interval=5",
            "logger.tensorboard=false",
        ],
        tmp_path / "data",
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train"]["stop_reason"] == "max_time"
    assert 4 <= metrics["train"]["wall_time_s"] < 30
    assert metrics["status"] == "completed" and metrics["test"]["ppl"] > 1


def test_bad_corpus_is_one_line_error_and_no_model(tmp_path, text_corpus):
    text_corpus["train"].write_bytes(b"good line\nbad \xff byte\n")
    proc = run_train(tmp_path / "run", text_data_overrides(text_corpus) + TINY_MODEL, tmp_path / "data", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"error: {text_corpus['train']}:2: not valid UTF-8 (byte 0xff)"
    assert not (tmp_path / "run" / "model").exists()


def test_unwritable_run_dir_fails_before_training(tmp_path, text_corpus):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = run_train(blocker / "run", text_data_overrides(text_corpus) + TINY_MODEL, tmp_path / "data", check=False)
    assert proc.returncode != 0
    assert "run" in proc.stderr and ("not writable" in proc.stderr or "Not a directory" in proc.stderr)


@pytest.mark.parametrize("precision", ["bf16"])
def test_reduced_precision_training_on_cpu(tmp_path, text_corpus, precision):
    run_dir = tmp_path / "run"
    run_train(
        run_dir,
        text_data_overrides(text_corpus)
        + TINY_MODEL
        + [f"trainer.precision={precision}", "trainer.max_steps=8", "logger.tensorboard=false"],
        tmp_path / "data",
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert math.isfinite(metrics["test"]["loss"])


def test_hydra_multirun_sweep(tmp_path, text_corpus):
    from helpers.runs import train_py

    sweep = tmp_path / "sweep"
    proc = train_py(
        [
            "-m",
            "model.cell=lstm,gru",
            f"hydra.sweep.dir={sweep}",
            *text_data_overrides(text_corpus),
            *TINY_MODEL,
            "trainer.max_steps=3",
            "logger.tensorboard=false",
        ],
        tmp_path / "data",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    cells = {}
    for job in ("0", "1"):
        meta = json.loads((sweep / job / "model" / "package.json").read_text())
        cells[job] = meta["configs"]["model"]["cell"]
    assert cells == {"0": "lstm", "1": "gru"}


def test_console_script_is_the_same_entry_point(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).with_name("nlp-lstm-train")
    if not script.exists():
        pytest.skip("package not installed in this environment")
    proc = subprocess.run(
        [str(script), f"hydra.run.dir={tmp_path / 'run'}", "optim.name=rmsprop"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: config optim.name='rmsprop': must be one of sgd, adamw, ntasgd"


def test_early_stopping(tmp_path, text_corpus):
    run_dir = tmp_path / "run"
    # lr so small that nothing improves after the first evaluation
    run_train(
        run_dir,
        text_data_overrides(text_corpus)
        + TINY_MODEL
        + [
            "optim.lr=1e-9",
            "optim.schedule=none",
            "trainer.max_epochs=null",
            "trainer.max_time=null",
            "trainer.max_steps=1000",
            "trainer.val_check_interval=2",
            "trainer.early_stopping_patience=2",
            "logger.tensorboard=false",
        ],
        tmp_path / "data",
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train"]["stop_reason"] == "early_stopping"
    assert metrics["train"]["steps"] < 1000


def test_weight_averaging_from_an_epoch(tmp_path, text_corpus):
    from nlp_lstm.train_entry import build_task, compose_config
    from nlp_lstm.training.trainer import Trainer

    cfg = compose_config(
        text_data_overrides(text_corpus)
        + TINY_MODEL
        + [
            f"paths.data_dir={tmp_path / 'data'}",
            "trainer.max_epochs=3",
            "trainer.max_time=null",
            "optim.average_from_epoch=2",
            "logger.tensorboard=false",
        ],
        tmp_path / "run",
    )
    task = build_task(cfg, torch.device("cpu"))
    trainer = Trainer(cfg, task, tmp_path / "run", torch.device("cpu"))
    trainer.fit()
    steps_per_epoch = trainer.state.step // 3
    # Averaging began at the start of epoch 3: its initial weights plus every step of it.
    assert int(trainer.averaged.n_averaged) == steps_per_epoch + 1
    saved = nlp_lstm.load(tmp_path / "run" / "model").model.state_dict()
    if trainer.state.best_step == trainer.state.step:  # the last evaluation was the best
        for name, value in trainer.averaged.module.state_dict().items():
            assert torch.equal(saved[name], value), name
