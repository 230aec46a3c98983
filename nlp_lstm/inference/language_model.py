"""A trained language model loaded from its package: generation, and scoring of lines or
files (plain, with the neural cache pointer, or under dynamic evaluation)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch

from nlp_lstm.config import ModelConfig
from nlp_lstm.data.lm_corpus import SplitStats, encode_to_file
from nlp_lstm.data.tag_files import input_lines
from nlp_lstm.data.tokenizers import Tokenizer, load_tokenizer
from nlp_lstm.errors import NlpLstmError
from nlp_lstm.inference.lm_cache import cache_report, score_with_cache
from nlp_lstm.inference.lm_dynamic import STATISTICS_BATCH_SIZE, default_settings, gradient_statistics, score_dynamic
from nlp_lstm.inference.lm_scoring import score_stream
from nlp_lstm.metrics import safe_exp
from nlp_lstm.models.generation import sample
from nlp_lstm.models.lm import RNNLanguageModel


class LanguageModel:
    """A trained LM loaded from its package: `nlp_lstm.load(path)`."""

    def __init__(self, model: RNNLanguageModel, tokenizer: Tokenizer, configs: Dict[str, Any], device) -> None:
        self.model, self.tokenizer, self.configs, self.device = model, tokenizer, configs, device
        self.model.eval()

    def __repr__(self) -> str:
        m = self.configs["model"]
        direction = "bidirectional " if m.get("bidirectional") else ""
        parameters = sum(p.numel() for p in self.model.parameters())
        return (
            f"LanguageModel({direction}{m.get('num_layers')} x {m.get('hidden_size')} {m.get('cell', 'lstm').upper()}, "
            f"{self.tokenizer.kind} vocabulary of {self.tokenizer.vocab_size:,}, {m.get('softmax', 'full')} softmax, "
            f"{parameters:,} parameters on {self.device})"
        )

    @classmethod
    def from_package(cls, path, meta, state_dict, device) -> "LanguageModel":
        tokenizer = load_tokenizer(Path(path) / "tokenizer")
        model_cfg = ModelConfig(**meta["configs"]["model"])
        model = RNNLanguageModel(model_cfg, tokenizer.vocab_size)
        model.load_state_dict(state_dict)
        return cls(model.to(device), tokenizer, meta["configs"], device)

    def generate(
        self,
        prompt: str = "",
        max_tokens: int = 50,
        temperature: float = 1.0,
        top_k: Optional[int] = None,
        top_p: Optional[float] = None,
        seed: Optional[int] = None,
    ) -> str:
        """The prompt continued by `max_tokens` sampled tokens, detokenized.

        Prompt words the vocabulary lacks become <unk>: they never fail.
        """
        generator = torch.Generator()
        generator.manual_seed(seed if seed is not None else torch.seed())
        prompt_ids = self.tokenizer.encode_line(prompt) if prompt else []
        ids = sample(
            self.model, prompt_ids, max_tokens, temperature, top_k, top_p, generator, start_id=self.tokenizer.eos_id
        )
        return self.tokenizer.decode(prompt_ids + ids)

    def _stream(self, lines: Sequence[str], bptt: Optional[int]):
        """The lines as one id stream, and the window length (the training bptt by default)."""
        ids = np.asarray(self.tokenizer.encode_lines(lines), dtype=np.int64)
        return ids, bptt or self.configs.get("task", {}).get("bptt", 35)

    def score_lines(self, lines: Sequence[str], batch_size: int = 10, bptt: Optional[int] = None) -> Dict[str, float]:
        ids, bptt = self._stream(lines, bptt)
        stats = SplitStats.of(list(lines), len(ids))
        return score_stream(
            self.model,
            ids,
            self.tokenizer.eos_id,
            batch_size,
            bptt,
            self.device,
            stats.words,
            stats.chars,
            self.tokenizer.kind,
        )

    def score_lines_with_cache(
        self, lines: Sequence[str], size: int, settings, batch_size: int = 1, bptt: Optional[int] = None
    ) -> Dict[str, Any]:
        """Perplexity with the neural cache pointer for each (theta, lambda) in `settings`, and
        without it; the forward direction (`nlp_lstm.inference.lm_cache`). One row by default:
        the cache of a row never sees the other rows' text."""
        ids, bptt = self._stream(lines, bptt)
        return cache_report(
            score_with_cache(self.model, ids, self.tokenizer.eos_id, batch_size, bptt, self.device, size, settings)
        )

    def score_lines_dynamic(
        self,
        lines: Sequence[str],
        lr=None,
        decay=None,
        method: str = "sgd",
        batch_size: int = 1,
        bptt: Optional[int] = None,
        train_lines: Optional[Sequence[str]] = None,
        statistics_batches: Optional[int] = None,
    ) -> Dict[str, Any]:
        """Perplexity under dynamic evaluation (`nlp_lstm.inference.lm_dynamic`) for every
        combination of `lr` and `decay` (each a number or a list; None: the method's
        `default_settings`), best first, beside the plain perplexity on the same rows;
        forward direction; the loaded model itself is left unchanged. `rms` takes its
        gradient statistics from `train_lines`, the model's training text (the first
        `statistics_batches` batches)."""
        ids, bptt = self._stream(lines, bptt)
        default_lrs, default_decays = default_settings(method, bptt)
        lrs = default_lrs if lr is None else [lr] if isinstance(lr, (int, float)) else list(lr)
        decays = default_decays if decay is None else [decay] if isinstance(decay, (int, float)) else list(decay)
        if not lrs or not decays:
            raise NlpLstmError(f"dynamic evaluation: no setting to try (lr {lrs}, decay {decays})")
        statistics = None
        if method == "rms":
            if not train_lines:
                raise NlpLstmError(
                    "dynamic evaluation rms: its gradient statistics come from the model's "
                    "training text, and none was given"
                )
            train_ids, _ = self._stream(train_lines, bptt)
            statistics = gradient_statistics(
                self.model,
                train_ids,
                self.tokenizer.eos_id,
                STATISTICS_BATCH_SIZE,
                bptt,
                self.device,
                statistics_batches,
            )
        settings = []
        for lr_ in lrs:
            for decay_ in decays:
                result = score_dynamic(
                    self.model,
                    ids,
                    self.tokenizer.eos_id,
                    batch_size,
                    bptt,
                    self.device,
                    lr_,
                    decay_,
                    method,
                    statistics,
                )
                settings.append({"lr": lr_, "decay": decay_, "ppl": safe_exp(result["nll"] / max(1, result["tokens"]))})
        settings.sort(key=lambda r: r["ppl"])
        # The plain number on as many rows: each row starts from a zero state, so it depends on them.
        plain = self.score_lines(lines, result["rows"], bptt)
        return {"tokens": result["tokens"], "rows": result["rows"], "ppl": plain["ppl"], "settings": settings}

    def score_file(self, path, batch_size: int = 10, progress: Optional[bool] = None) -> Dict[str, float]:
        """Metrics of a text file ('-': stdin) of any size: its lines are encoded in chunks to a
        temporary int32 file that scoring reads through a memory map, so memory does not
        grow with the file. The numbers are score_lines' on the same lines."""
        with tempfile.TemporaryDirectory(prefix="nlp_lstm_score_") as tmp:
            ids_path = Path(tmp) / "ids.bin"
            stats = encode_to_file(self.tokenizer, (line for _, line in input_lines(str(path), "text file")), ids_path)
            ids = np.memmap(ids_path, dtype=np.int32, mode="r") if stats.tokens else np.zeros(0, dtype=np.int32)
            bptt = self.configs.get("task", {}).get("bptt", 35)
            return score_stream(
                self.model,
                ids,
                self.tokenizer.eos_id,
                batch_size,
                bptt,
                self.device,
                stats.words,
                stats.chars,
                self.tokenizer.kind,
                progress=progress,
            )
