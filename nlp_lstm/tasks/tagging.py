"""Sequence tagging: the training task, and the pretrained parts a config names (a feature
LM, feature taggers). The loaded tagger is nlp_lstm.inference.tagger."""

from __future__ import annotations

import logging
import math
import random
import shutil
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List, Sequence

import torch

from nlp_lstm.data.conll import Sentence
from nlp_lstm.data.tag_schemes import convert
from nlp_lstm.data.tagging_batch import batch_indices, collate
from nlp_lstm.data.tagging_corpus import TaggingVocabs, encode, read_tagging_splits
from nlp_lstm.errors import ConfigError, NlpLstmError
from nlp_lstm.inference.language_model import LanguageModel
from nlp_lstm.inference.loading import load
from nlp_lstm.inference.prediction import length_batches, predict
from nlp_lstm.inference.tagger import Tagger
from nlp_lstm.inference.tagger_package import (
    FEATURE_TAGGERS,
    build_tagger,
    model_scheme,
    read_feature_lm,
    save_feature_lm,
)
from nlp_lstm.metrics import confusion_matrix, tagging_metrics, write_conll_predictions
from nlp_lstm.models.tagger import TRAINING_ONLY_PREFIX
from nlp_lstm.package import save_package
from nlp_lstm.tasks.feature_cache import FrozenFeatureCache
from nlp_lstm.tasks.init_from import load_leading_weights, merged_model_config, read_init_package
from nlp_lstm.tasks.word_vector_init import coverage, initialise_word_embedding, load_word_vectors
from nlp_lstm.training import figures
from nlp_lstm.training.distributed import SINGLE, DistInfo, gather_objects
from nlp_lstm.training.task import StepOutput, TrainingTask

log = logging.getLogger("nlp_lstm")


def load_config_package(key: str, path: str, device, kind: str):
    """The model package a config key names, checked to be of `kind`; errors name the key."""
    try:
        return load(path, str(device), kind)
    except NlpLstmError as exc:
        raise ConfigError(f"config {key}={path!r}: {exc}") from None


def load_feature_lm(path: str, device) -> LanguageModel:
    """The LM package named by model.lm_features (a word, character or subword LM)."""
    return load_config_package("model.lm_features", path, device, "lm")


def load_feature_taggers(
    paths: Dict[str, str], feature_columns: Dict[str, int], device, train: Sequence[Sentence] = ()
) -> Dict[str, Tagger]:
    """model.feature_taggers, each checked to be a tagger package for one of the model's
    input columns whose tags cover every value that column holds in `train` (a tagger of
    another kind, e.g. an NER tagger given for POS, would feed the model values it never
    saw in training)."""
    taggers = {}
    for name, path in (paths or {}).items():
        if name not in (feature_columns or {}):
            raise ConfigError(
                f"config model.feature_taggers.{name}: the model has no input column {name!r} "
                f"(data.feature_columns={dict(feature_columns or {})})"
            )
        tagger = load_config_package(f"model.feature_taggers.{name}", path, device, "tagger")
        labels = set(tagger.labels)
        misses = Counter(v for s in train for v in s.features.get(name, ()) if v not in labels)
        if misses:
            shown = ", ".join(f"{v!r} ({n} tokens)" for v, n in sorted(misses.items(), key=lambda x: (-x[1], x[0]))[:3])
            raise ConfigError(
                f"config model.feature_taggers.{name}={path!r}: its tags do not cover the values of "
                f"column {name!r} in the train split: {len(misses)} value(s) it never predicts, "
                f"e.g. {shown}"
            )
        taggers[name] = tagger
    return taggers


# Keys of the shared model schema that only language models read: left out of a tagger's
# HParams table.
LM_ONLY_MODEL_KEYS = (
    "tie_weights",
    "last_layer_size",
    "softmax",
    "adaptive_cutoffs",
    "adaptive_div_value",
    "activation_reg",
    "temporal_activation_reg",
)


class TaggingTask(TrainingTask):
    unit = "sentences"
    monitor_mode = "max"

    def __init__(self, cfg, device: torch.device, dist: DistInfo = SINGLE) -> None:
        self.cfg, self.device, self.dist = cfg, device, dist
        self.corpus_scheme = cfg.data.tag_scheme
        self.scheme = model_scheme(cfg.task, cfg.data)
        self.monitor_key = "acc" if self.corpus_scheme == "none" else "f1"
        self.headline_keys = ("loss", "acc") if self.corpus_scheme == "none" else ("loss", "f1", "acc")
        self.splits = read_tagging_splits(cfg.data, Path(cfg.paths.data_dir), log=log.info)
        self.summary: Dict[str, Any] = {}
        init_weights, package_vocabs = self._start_from_package() if cfg.model.init_from else (None, None)
        vocabs = TaggingVocabs.fit(self.splits["train"], self.scheme, self.corpus_scheme, cfg.model.lowercase_words)
        self.vocabs = package_vocabs.extended_with(vocabs) if package_vocabs is not None else vocabs
        self.word_vectors = None
        if cfg.model.word_vectors and init_weights is None:
            self.vocabs, self.word_vectors = load_word_vectors(cfg.model, self.vocabs)
        if cfg.model.lm_features:  # a package's own copy when starting from one
            self.feature_lm = (
                read_feature_lm(Path(cfg.model.init_from), device)
                if init_weights is not None
                else load_feature_lm(cfg.model.lm_features, device)
            )
        else:
            self.feature_lm = None
        self.feature_taggers = load_feature_taggers(
            cfg.model.feature_taggers, cfg.data.feature_columns, device, self.splits["train"]
        )
        lm_tokenizer = self.feature_lm.tokenizer if self.feature_lm else None
        self.encoded = {
            s: [encode(x, self.vocabs, self.scheme, self.corpus_scheme, lm_tokenizer) for x in sents]
            for s, sents in self.splits.items()
        }
        for split in ("valid", "test"):
            unknown = sum(1 for e in self.encoded.get(split, []) if e.tags is None)
            if unknown:
                log.info(
                    f"{split}: {unknown} sentence(s) hold a tag never seen in train; "
                    f"it can never be predicted and is scored as an error"
                )
        sizes = ", ".join(f"{split} {len(sentences):,}" for split, sentences in self.splits.items())
        log.info(
            f"tagging corpus {cfg.data.name}: sentences: {sizes}; {len(self.vocabs.words):,} words, "
            f"{len(self.vocabs.tags)} tags ({self.scheme})"
        )
        self.model = build_tagger(cfg.model, self.vocabs, self.scheme, self.feature_lm)
        if init_weights is not None:
            load_leading_weights(self.model, init_weights, cfg.model.init_from, skip_prefix=TRAINING_ONLY_PREFIX)
        self.lm_cache = (
            FrozenFeatureCache(cfg.model.lm_features_cache_mb)
            if self.feature_lm is not None and not cfg.model.lm_fine_tune and cfg.model.lm_features_cache_mb > 0
            else None
        )
        if self.word_vectors is not None:
            self._initialise_word_vectors()
        self.model.to(device)
        self.output_dir = Path(cfg.paths.output_dir)
        self.position = 0
        self.batches: List[List[int]] = []
        self.last_confusion, self.last_per_type = None, {}

    def _start_from_package(self):
        """model.init_from: the package's architecture, vocabularies and feature LM (see
        nlp_lstm/tasks/init_from.py); returns its weights (loaded once the model is built) and
        its vocabularies (extended with this run's train split)."""
        cfg, path = self.cfg, self.cfg.model.init_from
        for key in ("word_vectors", "lm_features"):
            if getattr(cfg.model, key):
                raise ConfigError(
                    f"config model.{key}={getattr(cfg.model, key)!r}: a run with model.init_from "
                    f"keeps the package's {key.replace('_', ' ')}; leave model.{key} unset"
                )
        meta, weights = read_init_package(path, "tagging")
        configs = meta["configs"]
        package_scheme = model_scheme(SimpleNamespace(**configs["task"]), SimpleNamespace(**configs["data"]))
        if package_scheme != self.scheme:
            raise ConfigError(
                f"config task.train_scheme: the package at {path} predicts {package_scheme} tags, "
                f"this run {self.scheme}; set task.train_scheme={package_scheme}"
            )
        # The package's feature taggers are its own copies (the paths it was trained with
        # may be gone); this run's, if any, are added or replace them.
        packaged = {
            name: str(Path(path) / FEATURE_TAGGERS / name) for name in configs["model"].get("feature_taggers") or {}
        }
        cfg.model = merged_model_config(
            cfg.model, {**configs["model"], "feature_taggers": {**packaged, **dict(cfg.model.feature_taggers)}}
        )
        vocabs = TaggingVocabs.load(Path(path))
        columns = sorted(dict(cfg.data.feature_columns or {}))
        if columns != sorted(vocabs.features):
            raise ConfigError(
                f"config data.feature_columns: the package at {path} reads input column(s) "
                f"{sorted(vocabs.features)}, this run gives {columns}"
            )
        self.summary["init_from"] = {"path": str(path), **meta.get("info", {})}
        return weights, vocabs

    def _initialise_word_vectors(self) -> None:
        vectors = self.word_vectors
        has_vector = initialise_word_embedding(self.model.word_embedding.weight, self.vocabs, vectors)
        covered = coverage(self.encoded, has_vector)
        self.summary["word_vectors"] = {
            **vectors.describe(),
            "vocabulary": len(self.vocabs.words),
            "with_vector": int(has_vector.sum()),
            **{f"coverage_{split}": round(c, 6) for split, c in covered.items()},
        }
        log.info(
            f"word vectors {vectors.path} ({vectors.format}, {vectors.dim}d): {vectors.rows_read:,} rows read; "
            f"{int(has_vector.sum()):,} of {len(self.vocabs.words):,} vocabulary words have one "
            f"({len(vectors.new_words):,} added from the file); token coverage "
            + ", ".join(f"{split} {100 * c:.1f}%" for split, c in covered.items())
        )

    def _cached_lm_states(self, split: str, indices: List[int]):
        """The frozen feature LM's states for these sentences of `split` (None where not all
        are cached); the split's states are computed at its first use, here, under the
        precision the caller runs in."""
        if split not in self.lm_cache.filled:  # a frozen LM is always in eval mode (SequenceTagger.train)
            self.lm_cache.fill(self.model, split, self.encoded[split], self.cfg.task.eval_batch_size, self.device)
        return self.lm_cache.lookup(split, indices)

    def data_summary(self) -> Dict[str, Any]:
        return self.summary

    # ------------------------------------------------------------- training
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.encoded["train"]) / self.cfg.task.batch_size)

    def start_epoch(self, epoch: int) -> None:
        # The order is a function of (seed, epoch), so a resumed run re-creates it exactly.
        rng = random.Random(self.cfg.seed * 100_003 + epoch)
        world = self.dist.world_size
        # Data-parallel: global batches of batch_size * world sentences, rank r takes every
        # world-th sentence of each (the same batches one process with the global batch sees).
        self.batches = batch_indices(
            [len(s.words) for s in self.encoded["train"]], self.cfg.task.batch_size * world, shuffle=True, rng=rng
        )
        self.epoch, self.position = epoch, 0

    def steps_done_in_epoch(self) -> int:
        return self.position

    def next_batch(self):
        if self.position >= len(self.batches):
            return None
        global_batch = self.batches[self.position]
        self.position += 1
        mine = global_batch[self.dist.rank :: self.dist.world_size]
        # The loss is the sum over this rank's sentences divided by the global batch's size:
        # DDP averages gradients over ranks, so the world size is multiplied back in. A rank
        # whose share of a short last batch is empty runs one sentence at weight zero.
        weight = self.dist.world_size / len(global_batch) if mine else 0.0
        indices = mine or global_batch[:1]
        return collate([self.encoded["train"][i] for i in indices]), weight, indices

    def probe_batch(self):
        # batch_size sentences of the median length: batches group similar lengths.
        train = self.encoded["train"]
        order = sorted(range(len(train)), key=lambda i: len(train[i].words))
        size = min(self.cfg.task.batch_size, len(order))
        start = max(0, len(order) // 2 - size // 2)
        indices = order[start : start + size]
        batch = collate([train[i] for i in indices])
        return (batch, 1.0 / size, indices), f"batch {size} sentences x {batch.words.size(1)} words"

    def training_step(self, batch) -> StepOutput:
        batch, weight, indices = batch
        if self.lm_cache is not None:
            batch.lm_states = self._cached_lm_states("train", indices)
        tokens = batch.num_tokens if weight else 0  # counted on the host batch: no device sync
        sentences = int(batch.lengths.numel()) if weight else 0
        batch = batch.to(self.device)
        nll, lm_nll = self.model.training_losses(batch)
        return StepOutput(
            loss=(nll + lm_nll) * weight, nll_sum=nll.detach() * (weight > 0), units=sentences, tokens=tokens
        )

    # ------------------------------------------------------------- evaluation
    def has_split(self, split: str) -> bool:
        return split in self.splits

    def evaluate(self, split: str) -> Dict[str, Any]:
        # Data-parallel: rank r tags every world-th sentence; the shares are put back in order
        # on every rank, so all ranks compute the same (one-process) metrics.
        rank, world = self.dist.rank, self.dist.world_size
        encoded = self.encoded[split]
        mine = encoded[rank::world]
        batches = length_batches(mine, self.cfg.task.eval_batch_size)
        if self.lm_cache is not None:
            for indices, batch in batches:
                batch.lm_states = self._cached_lm_states(split, [rank + world * i for i in indices])
        predicted, loss, scored = predict(
            self.model, mine, self.vocabs, self.cfg.task.eval_batch_size, self.device, batches=batches
        )[:3]
        if self.dist.enabled:
            shares = gather_objects((predicted, loss, scored), self.dist)
            predicted = [None] * len(encoded)
            for r, (share, _, _) in enumerate(shares):
                predicted[r::world] = share
            loss, scored = sum(s[1] for s in shares), sum(s[2] for s in shares)
        predicted = [convert(p, self.scheme, self.corpus_scheme) for p in predicted]
        gold = [s.tags for s in self.splits[split]]
        metrics = tagging_metrics(gold, predicted, self.corpus_scheme)
        metrics["loss"] = loss / max(1, scored)
        if self.dist.is_main:
            write_conll_predictions(self.output_dir / "predictions" / f"{split}.conll", self.splits[split], predicted)
        labels = sorted({t for sent in gold for t in sent} | {t for sent in predicted for t in sent})
        self.last_confusion = (labels, confusion_matrix(gold, predicted, labels))
        self.last_per_type = {label: v["f1"] for label, v in metrics.pop("per_label", {}).items()}
        return metrics  # per-type F1s stay as flat keys (f1_<label>) for metrics.json

    def describe(self, metrics: Dict[str, Any]) -> str:
        keys = ("loss", "acc", "precision", "recall", "f1", "strict_f1")
        return " ".join(f"{k}={metrics[k]:.4g}" for k in keys if k in metrics)

    def charted(self, metrics: Dict[str, Any]) -> Dict[str, Any]:
        # Per-type F1 is one bar chart per evaluation (on_evaluation), not a curve per type.
        return {k: v for k, v in metrics.items() if not k.startswith("f1_")}

    def on_evaluation(self, monitor, step: int) -> None:
        if monitor.writer is None or self.last_confusion is None:
            return

        labels, matrix = self.last_confusion
        # The labels are every gold and predicted tag, so the matrix's final 'other' row and
        # column are empty: left out.
        matrix = [row[: len(labels)] for row in matrix[: len(labels)]]
        # Figures in groups of their own after train/ and valid/: Time Series opens its first
        # two groups (sorted by name), which should be the curves.
        monitor.figure("valid_figures/confusion_matrix", figures.confusion_figure(labels, matrix), step)
        monitor.table(
            "valid/confusion_matrix",
            ["gold \\ predicted"] + labels,
            [[label] + list(row) for label, row in zip(labels, matrix)],
            step,
        )
        if self.last_per_type:
            types = sorted(self.last_per_type)
            monitor.figure(
                "valid_figures/f1_per_type",
                figures.bar_figure(types, [self.last_per_type[t] for t in types], "valid F1 per type", "F1"),
                step,
            )
        if self.model.crf is not None:
            monitor.figure(
                "weights/crf_transitions",
                figures.transitions_figure(
                    self.vocabs.tags.get_itos(), self.model.crf.transitions.detach().float().cpu()
                ),
                step,
            )

    # ------------------------------------------------------------- state
    def state_dict(self) -> Dict[str, Any]:
        return {"position": self.position, "epoch": getattr(self, "epoch", 0)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.start_epoch(state["epoch"])
        self.position = state["position"]

    # ------------------------------------------------------------- outputs
    def export(self, directory: Path) -> None:
        def write_assets(d: Path) -> None:
            self.vocabs.save(d)
            if self.feature_lm is not None:
                save_feature_lm(self.feature_lm, d)
            for name, path in self.cfg.model.feature_taggers.items():
                shutil.copytree(path, d / FEATURE_TAGGERS / name)

        save_package(
            directory,
            "tagging",
            {"model": self.cfg.model, "task": self.cfg.task, "data": self.cfg.data},
            write_assets,
            {k: v for k, v in self.model.state_dict().items() if not k.startswith(TRAINING_ONLY_PREFIX)},
            info=self.summary,
        )

    def hparams(self) -> Dict[str, Any]:
        c = self.cfg
        out = {
            "data": c.data.name,
            "scheme": self.scheme,
            "optim": c.optim.name,
            "lr": c.optim.lr,
            "batch_size": c.task.batch_size,
            "precision": c.trainer.precision,
            "seed": c.seed,
        }
        out.update({f"model.{k}": v for k, v in vars(c.model).items() if k not in LM_ONLY_MODEL_KEYS})
        return out
