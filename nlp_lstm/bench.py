"""`nlp-lstm bench`: throughput of the configured model beside a textbook reference loop.

The configured model runs through the real trainer step (`Trainer.train_step`: autocast,
backward, clipping, optimiser) on the task's real batches. The reference is the loop a
tutorial would write for the same shapes on the same batches and device: fp32, nn.LSTM /
nn.GRU, a full-softmax decoder (a softmax tagging head), plain SGD, one optimiser step per
batch. Both are timed in the same process, one after the other, so the ratio is
meaningful on a noisy shared machine even when the absolute numbers are not.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from nlp_lstm.data.lm_batches import IGNORE_INDEX
from nlp_lstm.data.tagging_batch import batch_indices, collate
from nlp_lstm.device import autocast_context, resolve_device, synchronize
from nlp_lstm.inference.prediction import predict
from nlp_lstm.models.rnn import detach_state
from nlp_lstm.train_entry import build_task, compose_config, configure_torch
from nlp_lstm.training.precision_choice import training_precision
from nlp_lstm.training.trainer import Trainer


# --------------------------------------------------------------------------- measuring
class PeakMemory:
    """Peak resident memory (CPU, sampled from /proc every 2 ms) or peak CUDA allocation."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak_mb, self._stop = device, None, threading.Event()

    @staticmethod
    def rss_mb() -> Optional[float]:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except (OSError, ValueError):
            return None  # not Linux: no RSS figure

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            rss = self.rss_mb()
            if rss is not None:
                self.peak_mb = max(self.peak_mb or 0.0, rss)

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.peak_mb = self.rss_mb()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self._stop.set()
            self._thread.join()


BLOCKS = 6  # turns each side takes over the timed batches


def measure(
    steps: Dict[str, Callable[[Any], int]], batches: Sequence[Any], warmup: int, device: torch.device
) -> Dict[str, Dict[str, float]]:
    """Per side ("ours", "reference"), units per second of its step over batches[warmup:]
    (each call returns its units), and its peak memory. The sides take turns, a block of
    batches each (BLOCKS per side), so that a burst of load from elsewhere on a shared
    machine falls on both: timed one after the other, the same reference loop measured 75
    and 101 sentences/s in two runs on one machine, and the ratio moved with it."""
    for step in steps.values():
        for batch in batches[:warmup]:
            step(batch)
    timed = list(batches[warmup:])
    size = max(1, -(-len(timed) // BLOCKS))
    totals = {side: {"seconds": 0.0, "units": 0, "peak_memory_mb": None} for side in steps}
    for i in range(0, len(timed), size):
        for side, step in steps.items():
            synchronize(device)
            with PeakMemory(device) as memory:
                start, units = time.perf_counter(), 0
                for batch in timed[i : i + size]:
                    units += step(batch)
                synchronize(device)
                seconds = time.perf_counter() - start
            total = totals[side]
            total["seconds"] += seconds
            total["units"] += units
            if memory.peak_mb is not None:
                total["peak_memory_mb"] = max(total["peak_memory_mb"] or 0.0, memory.peak_mb)
    return {side: {**t, "units_per_sec": t["units"] / t["seconds"]} for side, t in totals.items()}


def _by_side(train: Dict[str, Dict[str, float]], infer: Dict[str, Dict[str, float]]) -> Dict[str, Any]:
    return {side: {"train": train[side], "infer": infer[side]} for side in train}


# --------------------------------------------------------------------------- reference loops
class TextbookLM(nn.Module):
    """PyTorch's word_language_model example: embedding -> nn.LSTM/GRU -> full softmax."""

    def __init__(self, cell: str, vocab: int, emb: int, hidden: int, layers: int, dropout: float, tie: bool) -> None:
        super().__init__()
        self.encoder = nn.Embedding(vocab, emb)
        self.rnn = (nn.LSTM if cell == "lstm" else nn.GRU)(emb, hidden, layers, dropout=dropout if layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.decoder = nn.Linear(hidden, vocab)
        if tie and emb == hidden:
            self.decoder.weight = self.encoder.weight

    def forward(self, x, hidden):
        out, hidden = self.rnn(self.drop(self.encoder(x)), hidden)
        return self.decoder(self.drop(out)), hidden


class TextbookTagger(nn.Module):
    """The same parts as ours, written the textbook way: word embedding (+ a character CNN,
    + embeddings of extra input columns, where ours has them) -> packed bidirectional
    nn.LSTM/GRU -> linear -> a CRF from the pytorch-crf package (or a softmax)."""

    def __init__(
        self,
        cell: str,
        words: int,
        emb: int,
        hidden: int,
        layers: int,
        dropout: float,
        tags: int,
        chars: int = 0,
        char_emb: int = 0,
        char_filters: int = 0,
        features: Dict[str, int] | None = None,
        feature_emb: int = 0,
        crf: bool = False,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(words, emb, padding_idx=0)
        size = emb
        self.char_embedding = nn.Embedding(chars, char_emb, padding_idx=0) if char_filters else None
        self.char_conv = nn.Conv1d(char_emb, char_filters, 3, padding=1) if char_filters else None
        size += char_filters
        self.features = nn.ModuleDict(
            {n: nn.Embedding(k, feature_emb, padding_idx=0) for n, k in sorted((features or {}).items())}
        )
        size += feature_emb * len(self.features)
        self.rnn = (nn.LSTM if cell == "lstm" else nn.GRU)(
            size, hidden, layers, batch_first=True, bidirectional=True, dropout=dropout if layers > 1 else 0.0
        )
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(2 * hidden, tags)
        self.crf = None
        if crf:
            from torchcrf import CRF  # pytorch-crf: what a tutorial reaches for

            self.crf = CRF(tags, batch_first=True)

    def forward(self, batch):
        parts = [self.embedding(batch.words)]
        if self.char_conv is not None:
            # A textbook loop encodes every word's characters, repeats included.
            chars, lengths = batch.chars, batch.char_lengths
            if batch.char_index is not None:
                chars, lengths = chars.index_select(0, batch.char_index), lengths.index_select(0, batch.char_index)
            h = self.char_conv(self.char_embedding(chars).transpose(1, 2))  # (W, filters, C)
            pad = torch.arange(chars.size(1), device=h.device)[None] >= lengths[:, None]
            per_word = h.masked_fill(pad[:, None], float("-inf")).max(dim=2).values
            grid = per_word.new_zeros(*batch.words.shape, per_word.size(1))
            grid[batch.mask] = per_word
            parts.append(grid)
        parts += [embedding(batch.features[name]) for name, embedding in self.features.items()]
        packed = pack_padded_sequence(
            self.drop(torch.cat(parts, -1)), batch.lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        out, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True, total_length=batch.words.size(1))
        return self.out(self.drop(out))

    def loss(self, emissions, batch):
        if self.crf is not None:
            return -self.crf(emissions.float(), batch.tags, batch.mask, reduction="sum")
        return F.cross_entropy(emissions[batch.mask].float(), batch.tags[batch.mask], reduction="sum")

    def decode(self, emissions, batch) -> List[List[int]]:
        if self.crf is not None:
            return self.crf.decode(emissions.float(), batch.mask)
        best = emissions.argmax(-1).cpu()
        return [best[b, :n].tolist() for b, n in enumerate(batch.lengths.tolist())]


def _sgd_step(model: nn.Module, optimizer, loss, clip: Optional[float]) -> None:
    optimizer.zero_grad()
    loss.backward()
    if clip:
        nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()


def _training_batches(task, count: int) -> List[Any]:
    """The task's first `count` training batches (epochs repeat if one is shorter)."""
    batches: List[Any] = []
    epoch = 0
    task.start_epoch(epoch)
    while len(batches) < count:
        batch = task.next_batch()
        if batch is None:
            epoch += 1
            task.start_epoch(epoch)
            continue
        batches.append(batch)
    return batches


def _bench_lm(
    cfg, task, trainer, device, steps: int, warmup: int, reference: bool, reference_precision: Callable
) -> Dict[str, Any]:
    batches = _training_batches(task, warmup + steps)
    tokens = lambda batch: batch[0][0].numel()  # noqa: E731

    def ours_train(batch) -> int:
        trainer.train_step(batch)
        return tokens(batch)

    model = task.model

    @torch.no_grad()
    def ours_infer(batch) -> int:  # scoring, as evaluation does it
        model.eval()
        with autocast_context(device, cfg.trainer.precision):
            for direction, (x, y) in enumerate(batch):
                clusters = model.target_clusters(y)  # on the host, as score_stream does
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                features, _ = model(x, model.initial_state(x.size(0))[direction], direction)
                model.nll(features, y, clusters)
        return tokens(batch)

    train_steps, infer_steps = {"ours": ours_train}, {"ours": ours_infer}
    if reference:
        m = cfg.model
        ref = TextbookLM(
            m.cell, task.tokenizer.vocab_size, m.emb_size, m.hidden_size, m.num_layers, m.dropout_output, m.tie_weights
        ).to(device)
        optimizer = torch.optim.SGD(ref.parameters(), lr=cfg.optim.lr)
        carried = {"hidden": None}

        def ref_train(batch) -> int:
            ref.train()
            x, y = (t.t().contiguous().to(device) for t in batch[0])  # time-major, as the example
            hidden = carried["hidden"]
            with reference_precision():
                logits, hidden = ref(x, hidden)
                carried["hidden"] = detach_state(hidden)
                loss = F.cross_entropy(
                    logits.view(-1, logits.size(-1)).float(), y.reshape(-1), ignore_index=IGNORE_INDEX
                )
            _sgd_step(ref, optimizer, loss, cfg.optim.clip_grad_norm)
            return tokens(batch)

        @torch.no_grad()
        def ref_infer(batch) -> int:
            ref.eval()
            x, y = (t.t().contiguous().to(device) for t in batch[0])
            with reference_precision():
                logits, _ = ref(x, None)
                F.cross_entropy(
                    logits.view(-1, logits.size(-1)).float(), y.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
                )
            return tokens(batch)

        train_steps["reference"], infer_steps["reference"] = ref_train, ref_infer
    return _by_side(measure(train_steps, batches, warmup, device), measure(infer_steps, batches, warmup, device))


def _bench_tagging(
    cfg, task, trainer, device, steps: int, warmup: int, reference: bool, reference_precision: Callable
) -> Dict[str, Any]:
    batches = _training_batches(task, warmup + steps)
    sentences = lambda batch: int(batch[0].lengths.numel())  # noqa: E731

    def ours_train(batch) -> int:
        trainer.train_step(batch)
        return sentences(batch)

    # Prediction: the product's own path (`predict`, eval_batch_size) over chunks of train,
    # without gold tags, as `nlp-lstm tag` runs it (with gold, evaluation also scores a loss).
    encoded = [dataclasses.replace(e, tags=None) for e in task.encoded["train"]]
    eval_size = cfg.task.eval_batch_size
    chunk = max(eval_size, 512)
    chunks = [encoded[i : i + chunk] for i in range(0, len(encoded), chunk)][: warmup + steps]

    def ours_predict(part) -> int:
        predict(task.model, part, task.vocabs, eval_size, device)
        return len(part)

    train_steps, infer_steps = {"ours": ours_train}, {"ours": ours_predict}
    if reference:
        m = cfg.model
        ref = TextbookTagger(
            m.cell,
            len(task.vocabs.words),
            m.emb_size,
            m.hidden_size,
            m.num_layers,
            m.dropout_output,
            len(task.vocabs.tags),
            chars=len(task.vocabs.chars),
            char_emb=m.char_emb_size,
            char_filters=m.char_hidden_size if m.char_features != "none" else 0,
            features={n: len(v) for n, v in task.vocabs.features.items()},
            feature_emb=m.feature_emb_size,
            crf=m.head == "crf",
        ).to(device)
        optimizer = torch.optim.SGD(ref.parameters(), lr=0.1)

        def ref_train(batch) -> int:
            ref.train()
            tensors = batch[0].to(device)
            with reference_precision():
                loss = ref.loss(ref(tensors), tensors) / tensors.lengths.numel()
            _sgd_step(ref, optimizer, loss, cfg.optim.clip_grad_norm)
            return sentences(batch)

        @torch.no_grad()
        def ref_predict(part) -> int:
            ref.eval()
            for indices in batch_indices([len(s.words) for s in part], eval_size, shuffle=False):
                batch = collate([part[i] for i in indices]).to(device)
                with reference_precision():
                    ref.decode(ref(batch), batch)  # per-sentence tag lists, as `predict` hands them back
            return len(part)

        train_steps["reference"], infer_steps["reference"] = ref_train, ref_predict
    return _by_side(
        measure(train_steps, batches, warmup, device),
        measure(infer_steps, chunks, min(warmup, len(chunks) - 1), device),
    )


# --------------------------------------------------------------------------- entry
def run_bench(
    overrides: List[str], steps: int = 20, warmup: int = 3, reference: bool = True, reference_precision: str = "fp32"
) -> Dict[str, Any]:
    """`reference_precision`: "fp32" (the textbook loop as written) or "same" (under the
    configured precision's autocast, for a like-for-like bf16 row)."""
    with tempfile.TemporaryDirectory() as run_dir:
        config = compose_config(overrides, run_dir)
        configure_torch(config)
        device = resolve_device(config.trainer.device, "config trainer.device")
        task = build_task(config, device)
        if config.trainer.precision == "auto":  # as train.py resolves it
            config.trainer.precision = training_precision(task, device)
        trainer = Trainer(config, task, Path(run_dir), device)
        bench = _bench_lm if config.task.name == "lm" else _bench_tagging
        precision = config.trainer.precision if reference_precision == "same" else "fp32"
        results = bench(
            config, task, trainer, device, steps, warmup, reference, lambda: autocast_context(device, precision)
        )
    unit = task.unit
    report: Dict[str, Any] = {
        "overrides": list(overrides),
        "task": config.task.name,
        "unit": unit,
        "steps": steps,
        "warmup": warmup,
        "device": describe_device(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "precision": config.trainer.precision,
        "reference_precision": precision,
        "model": {
            "cell": config.model.cell,
            "hidden_size": config.model.hidden_size,
            "num_layers": config.model.num_layers,
        },
        "batch_size": config.task.batch_size,
        "params": sum(p.numel() for p in task.model.parameters()),
    }
    for who, phases in results.items():
        for phase, numbers in phases.items():
            report[f"{who}.{phase}.{unit}_per_sec"] = numbers["units_per_sec"]
            report[f"{who}.{phase}.peak_memory_mb"] = numbers["peak_memory_mb"]
    if reference:
        for phase in ("train", "infer"):
            report[f"ratio.{phase}"] = (
                report[f"ours.{phase}.{unit}_per_sec"] / report[f"reference.{phase}.{unit}_per_sec"]
            )
    return report


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return (
        f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} logical cpus, "
        f"{torch.backends.cpu.get_cpu_capability()})"
    )


def format_report(report: Dict[str, Any]) -> str:
    unit = report["unit"]
    lines = [
        f"bench {' '.join(report['overrides']) or '(defaults)'}",
        f"device {report['device']}, {report['threads']} threads, torch {report['torch']}, "
        f"precision {report['precision']} (reference {report['reference_precision']}), "
        f"{report['params']:,} parameters, {report['steps']} timed steps",
        f"{'':<12}{'train ' + unit + '/s':>22}{'infer ' + unit + '/s':>22}{'peak train MB':>16}",
    ]
    for who in ("ours", "reference"):
        if f"{who}.train.{unit}_per_sec" not in report:
            continue
        peak = report[f"{who}.train.peak_memory_mb"]
        lines.append(
            f"{who:<12}{report[f'{who}.train.{unit}_per_sec']:>22,.1f}"
            f"{report[f'{who}.infer.{unit}_per_sec']:>22,.1f}{peak if peak is None else round(peak):>16}"
        )
    if "ratio.train" in report:
        lines.append(f"{'ratio':<12}{report['ratio.train']:>21.2f}x{report['ratio.infer']:>21.2f}x")
    return "\n".join(lines)
