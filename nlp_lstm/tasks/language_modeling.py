"""Language modeling: the training task (the loaded model is nlp_lstm.inference.language_model)."""

from __future__ import annotations

import logging
import math
import random
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from nlp_lstm.data.lm_batches import TrainStream, window_length
from nlp_lstm.data.lm_corpus import LMCorpus, SplitStats, prepare_lm_corpus
from nlp_lstm.data.tokenizers import Tokenizer, save_tokenizer
from nlp_lstm.inference.lm_scoring import score_stream
from nlp_lstm.models.generation import sample
from nlp_lstm.models.lm import RNNLanguageModel
from nlp_lstm.models.rnn import detach_state, mask_state
from nlp_lstm.package import save_package
from nlp_lstm.tasks.init_from import load_leading_weights, merged_model_config, read_init_package
from nlp_lstm.training.distributed import SINGLE, DistInfo, sum_over_ranks
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
        self.corpus = corpus or prepare_lm_corpus(
            cfg.data, cfg.tokenizer, cfg.paths.data_dir, log=log.info, tokenizer_dir=tokenizer_dir
        )
        self.tokenizer: Tokenizer = self.corpus.tokenizer
        self.eos = self.tokenizer.eos_id
        self.model = RNNLanguageModel(cfg.model, self.tokenizer.vocab_size)
        if init_weights is not None:
            load_leading_weights(self.model, init_weights, cfg.model.init_from)
            log.info(f"model.init_from: weights and tokenizer from {cfg.model.init_from}")
        self.model.to(device)
        self.streams = [
            TrainStream(
                self.corpus.ids["train"],
                self.eos,
                cfg.task.batch_size,
                reverse=d == 1,
                rank=dist.rank,
                world_size=dist.world_size,
            )
            for d in range(self.model.num_directions)
        ]
        if self.streams[0].left_out:
            log.info(
                f"{self.streams[0].left_out} train tokens do not fill a row of task.batch_size="
                f"{cfg.task.batch_size} and are not trained on (evaluation scores every token)"
            )
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

    def probe_batch(self):
        windows = [s.window(0, self.cfg.task.bptt) for s in self.streams]
        self.hidden = self.model.initial_state(self.cfg.task.batch_size, self.device)
        return windows, f"batch {tuple(windows[0][0].shape)} x {len(windows)} direction(s)"

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
        return StepOutput(
            loss=nll + ar + tar,
            nll_sum=nll.detach() * units,
            units=units,
            extras={"activation_reg": ar.detach(), "temporal_activation_reg": tar.detach()},
        )

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
        return score_stream(
            self.model,
            self.corpus.ids[split],
            self.eos,
            self.cfg.task.eval_batch_size,
            self.cfg.task.bptt,
            self.device,
            stats.words,
            stats.chars,
            self.tokenizer.kind,
            self.cfg.trainer.limit_eval_batches,
            self.dist.rank,
            self.dist.world_size,
            lambda sums: sum_over_ranks(sums, self.dist),
        )

    def describe(self, metrics: Dict[str, float]) -> str:
        keys = ("loss", "ppl", "word_ppl", "bpc", "ppl_forward", "ppl_backward")
        return " ".join(f"{k}={metrics[k]:.4g}" for k in keys if k in metrics)

    # ------------------------------------------------------------- state
    def state_dict(self) -> Dict[str, Any]:
        return {
            "position": self.position,
            "hidden": _state_to(self.hidden, "cpu") if self.hidden else None,
            "window_rng": self.window_rng.getstate(),
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.position = state["position"]
        self.hidden = _state_to(state["hidden"], self.device) if state["hidden"] is not None else None
        self.window_rng.setstate(state["window_rng"])

    # ------------------------------------------------------------- outputs
    def export(self, directory: Path) -> None:
        save_package(
            directory,
            "lm",
            {"model": self.cfg.model, "task": self.cfg.task, "data": self.cfg.data, "tokenizer": self.cfg.tokenizer},
            lambda d: save_tokenizer(self.tokenizer, d / "tokenizer"),
            self.model.state_dict(),
        )

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
            labels = [
                repr(t)[1:-1] if not t.strip() or "\t" in t else t for t in self.tokenizer.token_strings(range(n))
            ]
            monitor.embedding(self.model.embedding.weight[:n], labels, step)

    def hparams(self) -> Dict[str, Any]:
        c = self.cfg
        out = {
            "data": c.data.name,
            "tokenizer": c.tokenizer.kind,
            "vocab_size": self.tokenizer.vocab_size,
            "optim": c.optim.name,
            "lr": c.optim.lr,
            "schedule": c.optim.schedule,
            "batch_size": c.task.batch_size,
            "bptt": c.task.bptt,
            "precision": c.trainer.precision,
            "seed": c.seed,
        }
        out.update({f"model.{k}": v for k, v in vars(c.model).items()})
        return out
