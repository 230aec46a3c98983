"""Language modeling: the training task and the loaded model's inference API."""

from __future__ import annotations

import logging
import math
import random
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch

from nlp_lstm.config import ModelConfig
from nlp_lstm.data.lm_batches import TrainStream, window_length
from nlp_lstm.data.lm_corpus import LMCorpus, SplitStats, prepare_lm_corpus
from nlp_lstm.data.tokenizers import Tokenizer, load_tokenizer, save_tokenizer
from nlp_lstm.errors import NlpLstmError
from nlp_lstm.models.generation import sample
from nlp_lstm.models.lm import RNNLanguageModel
from nlp_lstm.models.rnn import detach_state, mask_state
from nlp_lstm.package import save_package
from nlp_lstm.tasks.init_from import load_leading_weights, merged_model_config, read_init_package
from nlp_lstm.tasks.lm_scoring import score_stream
from nlp_lstm.training.distributed import SINGLE, DistInfo
from nlp_lstm.training.task import StepOutput, TrainingTask

log = logging.getLogger("nlp_lstm")


def _state_to(state, device):
    if isinstance(state, torch.Tensor):
        return state.to(device)
    return type(state)(_state_to(s, device) for s in state)


class LanguageModelingTask(TrainingTask):
    unit = "tokens"
    objective_key = "ppl"  # a sweep minimises valid perplexity (exp of the monitored loss)
    headline_keys = ("loss", "ppl", "bpc", "word_ppl")

    def __init__(self, cfg, device: torch.device, corpus: Optional[LMCorpus] = None, dist: DistInfo = SINGLE) -> None:
        self.cfg, self.device, self.dist = cfg, device, dist
        init_weights, tokenizer_dir = None, None
        if cfg.model.init_from:  # continue a package's LM on this text, with its tokenizer
            meta, init_weights = read_init_package(cfg.model.init_from, "lm")
            cfg.model = merged_model_config(cfg.model, meta["configs"]["model"])
            tokenizer_dir = Path(cfg.model.init_from) / "tokenizer"
            if "tokenizer" in meta["configs"]:
                cfg.tokenizer = type(cfg.tokenizer)(**meta["configs"]["tokenizer"])
        self.corpus = corpus or prepare_lm_corpus(cfg.data, cfg.tokenizer, cfg.paths.data_dir, log=log.info,
                                                  tokenizer_dir=tokenizer_dir)
        self.tokenizer: Tokenizer = self.corpus.tokenizer
        self.eos = self.tokenizer.eos_id
        self.model = RNNLanguageModel(cfg.model, self.tokenizer.vocab_size)
        if init_weights is not None:
            load_leading_weights(self.model, init_weights, cfg.model.init_from)
            log.info(f"model.init_from: weights and tokenizer from {cfg.model.init_from}")
        self.model.to(device)
        self.streams = [TrainStream(self.corpus.ids["train"], self.eos, cfg.task.batch_size, reverse=d == 1,
                                    rank=dist.rank, world_size=dist.world_size)
                        for d in range(self.model.num_directions)]
        if self.streams[0].left_out:
            log.info(f"{self.streams[0].left_out} train tokens do not fill a row of task.batch_size="
                     f"{cfg.task.batch_size} and are not trained on (evaluation scores every token)")
        self.window_rng = random.Random(cfg.seed)
        self.position = 0
        self.hidden = None

    # ------------------------------------------------------------- training
    def steps_per_epoch(self) -> int:
        return math.ceil(self.streams[0].length / self.cfg.task.bptt)

    def start_epoch(self, epoch: int) -> None:
        self.position = 0
        self.hidden = self.model.initial_state(self.cfg.task.batch_size, self.device)

    def steps_done_in_epoch(self) -> int:
        return math.ceil(self.position / self.cfg.task.bptt)

    def next_batch(self):
        stream = self.streams[0]
        if self.position >= stream.length:
            return None
        length = window_length(self.cfg.task.bptt, self.cfg.task.variable_bptt, self.window_rng)
        windows = [s.window(self.position, length) for s in self.streams]
        if self.device.type == "cuda":  # pinned, so training_step's non-blocking copies overlap
            windows = [(x.pin_memory(), y.pin_memory()) for x, y in windows]
        self.position += windows[0][0].size(1)
        return windows

    def training_step(self, batch) -> StepOutput:
        total_nll, total_count = 0.0, 0
        regularised = self.cfg.model.activation_reg > 0 or self.cfg.model.temporal_activation_reg > 0
        ar = tar = 0.0
        for direction, (x, y) in enumerate(batch):
            clusters = self.model.target_clusters(y, pin=self.device.type == "cuda")  # on the host
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            features, state, (raw, dropped) = self.model.forward_with_activations(x, self.hidden[direction], direction)
            self.hidden[direction] = detach_state(state)  # truncated BPTT: carry the state, cut the graph
            nll, count = self.model.nll(features, y, clusters)
            total_nll = total_nll + nll
            total_count += int(y.numel())
            if regularised:
                step_ar, step_tar = self.model.activation_regularisers(raw, dropped)
                ar, tar = ar + step_ar / len(batch), tar + step_tar / len(batch)
        nll = total_nll / total_count
        units = batch[0][0].numel()
        if not regularised:
            return StepOutput(loss=nll, nll_sum=nll.detach() * units, units=units)
        # The regularisers shape training only: nll_sum (train/loss, ppl) stays the NLL.
        return StepOutput(loss=nll + ar + tar, nll_sum=nll.detach() * units, units=units,
                          extras={"activation_reg": ar.detach(), "temporal_activation_reg": tar.detach()})

    def keep_step_state(self, keep) -> None:
        # A skipped step's carried hidden state may be NaN: those rows start afresh (zeros).
        self.hidden = mask_state(self.hidden, keep)

    def lr_scale(self, batch) -> float:
        # With variable windows, scale the lr by length/bptt so every token weighs the same.
        return batch[0][0].size(1) / self.cfg.task.bptt if self.cfg.task.variable_bptt else 1.0

    def running_metrics(self, mean_loss: float) -> Dict[str, float]:
        out = {"loss": mean_loss, "ppl": math.exp(min(mean_loss, 700))}
        if self.tokenizer.kind == "char":
            out["bpc"] = mean_loss / math.log(2)
        return out

    # ------------------------------------------------------------- evaluation
    def has_split(self, split: str) -> bool:
        return split in self.corpus.ids

    def evaluate(self, split: str) -> Dict[str, float]:
        stats: SplitStats = self.corpus.stats[split]
        return score_stream(self.model, self.corpus.ids[split], self.eos, self.cfg.task.eval_batch_size,
                            self.cfg.task.bptt, self.device, stats.words, stats.chars, self.tokenizer.kind,
                            self.cfg.trainer.limit_eval_batches, shard=self.dist)

    def describe(self, metrics: Dict[str, float]) -> str:
        keys = ("loss", "ppl", "word_ppl", "bpc", "ppl_forward", "ppl_backward")
        return " ".join(f"{k}={metrics[k]:.4g}" for k in keys if k in metrics)

    # ------------------------------------------------------------- state
    def state_dict(self) -> Dict[str, Any]:
        return {"position": self.position, "hidden": _state_to(self.hidden, "cpu") if self.hidden else None,
                "window_rng": self.window_rng.getstate()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.position = state["position"]
        self.hidden = _state_to(state["hidden"], self.device) if state["hidden"] is not None else None
        self.window_rng.setstate(state["window_rng"])

    # ------------------------------------------------------------- outputs
    def export(self, directory: Path) -> None:
        save_package(directory, "lm", {"model": self.cfg.model, "task": self.cfg.task, "data": self.cfg.data,
                                       "tokenizer": self.cfg.tokenizer},
                     lambda d: save_tokenizer(self.tokenizer, d / "tokenizer"), self.model.state_dict())

    def on_evaluation(self, monitor, step: int) -> None:
        if self.cfg.task.sample_tokens:
            generator = torch.Generator().manual_seed(self.cfg.seed + step)
            prompt = self.tokenizer.encode_line(self.cfg.task.sample_prompt) if self.cfg.task.sample_prompt else []
            ids = sample(self.model, prompt, self.cfg.task.sample_tokens, generator=generator, start_id=self.eos)
            monitor.text("samples", self.tokenizer.decode(prompt + ids), step)

    def on_finish(self, monitor, step: int) -> None:
        n = min(self.cfg.logger.projector_tokens, self.tokenizer.vocab_size)
        if n > 0:
            # Word and char vocabularies are ordered by train frequency after the two specials.
            labels = [repr(t)[1:-1] if not t.strip() or "\t" in t else t
                      for t in self.tokenizer.token_strings(range(n))]
            monitor.embedding(self.model.embedding.weight[:n], labels, step)

    def hparams(self) -> Dict[str, Any]:
        c = self.cfg
        out = {"data": c.data.name, "tokenizer": c.tokenizer.kind, "vocab_size": self.tokenizer.vocab_size,
               "optim": c.optim.name, "lr": c.optim.lr, "schedule": c.optim.schedule,
               "batch_size": c.task.batch_size, "bptt": c.task.bptt, "precision": c.trainer.precision, "seed": c.seed}
        out.update({f"model.{k}": v for k, v in vars(c.model).items()})
        return out


class LanguageModel:
    """A trained LM loaded from its package: `nlp_lstm.load(path)`."""

    def __init__(self, model: RNNLanguageModel, tokenizer: Tokenizer, configs: Dict[str, Any], device) -> None:
        self.model, self.tokenizer, self.configs, self.device = model, tokenizer, configs, device
        self.model.eval()

    def __repr__(self) -> str:
        m = self.configs["model"]
        direction = "bidirectional " if m.get("bidirectional") else ""
        parameters = sum(p.numel() for p in self.model.parameters())
        return (f"LanguageModel({direction}{m.get('num_layers')} x {m.get('hidden_size')} {m.get('cell', 'lstm').upper()}, "
                f"{self.tokenizer.kind} vocabulary of {self.tokenizer.vocab_size:,}, {m.get('softmax', 'full')} softmax, "
                f"{parameters:,} parameters on {self.device})")

    @classmethod
    def from_package(cls, path, meta, state_dict, device) -> "LanguageModel":
        tokenizer = load_tokenizer(Path(path) / "tokenizer")
        model_cfg = ModelConfig(**meta["configs"]["model"])
        model = RNNLanguageModel(model_cfg, tokenizer.vocab_size)
        model.load_state_dict(state_dict)
        return cls(model.to(device), tokenizer, meta["configs"], device)

    def generate(self, prompt: str = "", max_tokens: int = 50, temperature: float = 1.0,
                 top_k: Optional[int] = None, top_p: Optional[float] = None, seed: Optional[int] = None) -> str:
        """The prompt continued by `max_tokens` sampled tokens, detokenized.

        Prompt words the vocabulary lacks become <unk>: they never fail.
        """
        generator = torch.Generator()
        generator.manual_seed(seed if seed is not None else torch.seed())
        prompt_ids = self.tokenizer.encode_line(prompt) if prompt else []
        ids = sample(self.model, prompt_ids, max_tokens, temperature, top_k, top_p, generator, start_id=self.tokenizer.eos_id)
        return self.tokenizer.decode(prompt_ids + ids)

    def _stream(self, lines: Sequence[str], bptt: Optional[int]):
        """The lines as one id stream, and the window length (the training bptt by default)."""
        ids = np.asarray(self.tokenizer.encode_lines(lines), dtype=np.int64)
        return ids, bptt or self.configs.get("task", {}).get("bptt", 35)

    def score_lines(self, lines: Sequence[str], batch_size: int = 10, bptt: Optional[int] = None) -> Dict[str, float]:
        ids, bptt = self._stream(lines, bptt)
        stats = SplitStats.of(list(lines), len(ids))
        return score_stream(self.model, ids, self.tokenizer.eos_id, batch_size, bptt, self.device,
                            stats.words, stats.chars, self.tokenizer.kind)

    def score_lines_with_cache(self, lines: Sequence[str], size: int, settings, batch_size: int = 1,
                               bptt: Optional[int] = None) -> Dict[str, Any]:
        """Perplexity with the neural cache pointer for each (theta, lambda) in `settings`, and
        without it; the forward direction (`nlp_lstm.tasks.lm_cache`). One row by default:
        the cache of a row never sees the other rows' text."""
        from nlp_lstm.tasks.lm_cache import cache_report, score_with_cache

        ids, bptt = self._stream(lines, bptt)
        return cache_report(score_with_cache(self.model, ids, self.tokenizer.eos_id, batch_size, bptt, self.device,
                                             size, settings))

    def score_lines_dynamic(self, lines: Sequence[str], lr=None, decay=None, method: str = "sgd",
                            batch_size: int = 1, bptt: Optional[int] = None,
                            train_lines: Optional[Sequence[str]] = None,
                            statistics_batches: Optional[int] = None) -> Dict[str, Any]:
        """Perplexity under dynamic evaluation (`nlp_lstm.tasks.lm_dynamic`) for every
        combination of `lr` and `decay` (each a number or a list; None: the method's
        `default_settings`), best first, beside the plain perplexity on the same rows;
        forward direction; the loaded model itself is left unchanged. `rms` takes its
        gradient statistics from `train_lines`, the model's training text (the first
        `statistics_batches` batches)."""
        from nlp_lstm.metrics import safe_exp
        from nlp_lstm.tasks.lm_dynamic import (STATISTICS_BATCH_SIZE, default_settings, gradient_statistics,
                                               score_dynamic)

        ids, bptt = self._stream(lines, bptt)
        default_lrs, default_decays = default_settings(method, bptt)
        lrs = default_lrs if lr is None else [lr] if isinstance(lr, (int, float)) else list(lr)
        decays = default_decays if decay is None else [decay] if isinstance(decay, (int, float)) else list(decay)
        if not lrs or not decays:
            raise NlpLstmError(f"dynamic evaluation: no setting to try (lr {lrs}, decay {decays})")
        statistics = None
        if method == "rms":
            if not train_lines:
                raise NlpLstmError("dynamic evaluation rms: its gradient statistics come from the model's "
                                   "training text, and none was given")
            train_ids, _ = self._stream(train_lines, bptt)
            statistics = gradient_statistics(self.model, train_ids, self.tokenizer.eos_id, STATISTICS_BATCH_SIZE,
                                             bptt, self.device, statistics_batches)
        settings = []
        for lr_ in lrs:
            for decay_ in decays:
                result = score_dynamic(self.model, ids, self.tokenizer.eos_id, batch_size, bptt, self.device,
                                       lr_, decay_, method, statistics)
                settings.append({"lr": lr_, "decay": decay_, "ppl": safe_exp(result["nll"] / max(1, result["tokens"]))})
        settings.sort(key=lambda r: r["ppl"])
        # The plain number on as many rows: each row starts from a zero state, so it depends on them.
        plain = self.score_lines(lines, result["rows"], bptt)
        return {"tokens": result["tokens"], "rows": result["rows"], "ppl": plain["ppl"], "settings": settings}

    def score_file(self, path, batch_size: int = 10, progress: Optional[bool] = None) -> Dict[str, float]:
        """Metrics of a text file ('-': stdin) of any size: its lines are encoded in chunks to a
        temporary int32 file that scoring reads through a memory map, so memory does not
        grow with the file. The numbers are score_lines' on the same lines."""
        import tempfile

        from nlp_lstm.data.lm_corpus import encode_to_file
        from nlp_lstm.data.tag_files import input_lines

        with tempfile.TemporaryDirectory(prefix="nlp_lstm_score_") as tmp:
            ids_path = Path(tmp) / "ids.bin"
            stats = encode_to_file(self.tokenizer, (line for _, line in input_lines(str(path), "text file")), ids_path)
            ids = np.memmap(ids_path, dtype=np.int32, mode="r") if stats.tokens else np.zeros(0, dtype=np.int32)
            bptt = self.configs.get("task", {}).get("bptt", 35)
            return score_stream(self.model, ids, self.tokenizer.eos_id, batch_size, bptt, self.device,
                                stats.words, stats.chars, self.tokenizer.kind, progress=progress)
