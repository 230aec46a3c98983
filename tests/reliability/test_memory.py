"""Memory stays flat over a long run: no autograd graph kept alive through the carried
hidden state, no per-step tensors accumulated in metrics."""

import threading

import torch

from helpers.corpora import TINY_MODEL, make_lines, text_data_overrides, write_lines
from nlp_lstm.bench import PeakMemory
from nlp_lstm.train_entry import build_task, compose_config
from nlp_lstm.training.trainer import Trainer


def test_resident_memory_does_not_grow_over_thousands_of_steps(tmp_path):
    d = tmp_path / "corpus"
    d.mkdir()
    corpus = {
        s: write_lines(d / f"{s}.txt", make_lines(n, seed))
        for s, n, seed in (("train", 3000, 1), ("valid", 50, 2), ("test", 50, 3))
    }
    cfg = compose_config(
        text_data_overrides(corpus)
        + TINY_MODEL
        + [
            f"paths.data_dir={tmp_path / 'data'}",
            "trainer.max_steps=1200",
            "trainer.max_epochs=null",
            "trainer.max_time=null",
            "logger.tensorboard=false",
            "logger.histogram_every_n_steps=0",
            "trainer.log_every_n_steps=10",
        ],
        tmp_path / "run",
    )
    torch.manual_seed(0)
    task = build_task(cfg, torch.device("cpu"))
    trainer = Trainer(cfg, task, tmp_path / "run", torch.device("cpu"))
    samples, stop = [], threading.Event()

    def sample():
        while not stop.wait(0.02):
            samples.append((trainer.state.step, PeakMemory.rss_mb()))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        trainer.fit()
    finally:
        stop.set()
        sampler.join()
    assert trainer.state.step == 1200
    # Allocator warm-up happens early: compare the second quarter with the last one.
    early = [rss for step, rss in samples if 300 <= step < 600]
    late = [rss for step, rss in samples if 900 <= step < 1200]
    assert early and late
    growth = max(late) - max(early)
    assert growth < 20, f"RSS grew by {growth:.1f} MB between steps 600 and 1200"
