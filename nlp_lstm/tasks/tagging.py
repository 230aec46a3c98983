"""Sequence tagging: the training task and the loaded tagger's inference API."""

from __future__ import annotations

import logging
import contextlib
import math
import random
import shutil
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch

from nlp_lstm.config import TaggerModelConfig
from nlp_lstm.data.conll import Sentence
from nlp_lstm.data.tag_files import InputSentence, tokenize
from nlp_lstm.data.tag_schemes import allowed_transition, convert, spans_from_tags, split_tag
from nlp_lstm.data.tagging_corpus import (EncodedSentence, TaggingVocabs, batch_indices, collate, encode,
                                          read_tagging_splits)
from nlp_lstm.errors import ConfigError, NlpLstmError
from nlp_lstm.fileio import atomic_write_text
from nlp_lstm.metrics import confusion_matrix, conlleval, strict_span_f1
from nlp_lstm.models.tagger import TRAINING_ONLY_PREFIX, SequenceTagger
from nlp_lstm.package import save_package
from nlp_lstm.training.distributed import SINGLE, DistInfo, gather_objects
from nlp_lstm.tasks.feature_cache import FrozenFeatureCache
from nlp_lstm.tasks.init_from import load_leading_weights, merged_model_config, read_init_package
from nlp_lstm.tasks.word_vector_init import coverage, initialise_word_embedding, load_word_vectors
from nlp_lstm.training.task import StepOutput, TrainingTask

log = logging.getLogger("nlp_lstm")


def crf_constraints(tags: Sequence[str], scheme: str) -> Dict[str, torch.Tensor]:
    """Allowed transitions of the CRF from the tag scheme (no I-X after O in IOB2...)."""
    allowed = torch.tensor([[allowed_transition(a, b, scheme) for b in tags] for a in tags], dtype=torch.bool)
    start = torch.tensor([allowed_transition("START", t, scheme) for t in tags], dtype=torch.bool)
    end = torch.tensor([allowed_transition(t, "END", scheme) for t in tags], dtype=torch.bool)
    return {"allowed": allowed, "allowed_start": start, "allowed_end": end}


def build_tagger(model_cfg, vocabs: TaggingVocabs, train_scheme: str, feature_lm=None,
                 for_inference: bool = False) -> SequenceTagger:
    """`feature_lm`: a loaded LanguageModel whose states become input features;
    `for_inference`: without the training-only parts (what a model package holds)."""
    tags = vocabs.tags.get_itos()
    return SequenceTagger(model_cfg, len(vocabs.words), len(vocabs.chars), len(tags),
                          {n: len(v) for n, v in vocabs.features.items()},
                          crf_constraints(tags, train_scheme) if model_cfg.head == "crf" else None,
                          lm=feature_lm.model if feature_lm else None,
                          lm_eos=feature_lm.tokenizer.eos_id if feature_lm else 0, for_inference=for_inference)


def load_config_package(key: str, path: str, device, kind: type, what: str):
    """The model package a config key names, checked to be of `kind`; errors name the key."""
    from nlp_lstm.api import load

    try:
        loaded = load(path, str(device))
    except NlpLstmError as exc:
        raise ConfigError(f"config {key}={path!r}: {exc}") from None
    if not isinstance(loaded, kind):
        raise ConfigError(f"config {key}={path!r}: not a {what} package")
    return loaded


def load_feature_lm(path: str, device):
    """The LM package named by model.lm_features (a word, character or subword LM)."""
    from nlp_lstm.tasks.language_modeling import LanguageModel

    return load_config_package("model.lm_features", path, device, LanguageModel, "language model")


FEATURE_TAGGERS = "feature_taggers"  # a package's folder of the taggers that predict its input columns


def load_feature_taggers(paths: Dict[str, str], feature_columns: Dict[str, int], device,
                         train: Sequence[Sentence] = ()) -> Dict[str, "Tagger"]:
    """model.feature_taggers, each checked to be a tagger package for one of the model's
    input columns whose tags cover every value that column holds in `train` (a tagger of
    another kind, e.g. an NER tagger given for POS, would feed the model values it never
    saw in training)."""
    taggers = {}
    for name, path in (paths or {}).items():
        if name not in (feature_columns or {}):
            raise ConfigError(f"config model.feature_taggers.{name}: the model has no input column {name!r} "
                              f"(data.feature_columns={dict(feature_columns or {})})")
        tagger = load_config_package(f"model.feature_taggers.{name}", path, device, Tagger, "tagger")
        labels = set(tagger.labels)
        misses = Counter(v for s in train for v in s.features.get(name, ()) if v not in labels)
        if misses:
            shown = ", ".join(f"{v!r} ({n} tokens)" for v, n in sorted(misses.items(), key=lambda x: (-x[1], x[0]))[:3])
            raise ConfigError(f"config model.feature_taggers.{name}={path!r}: its tags do not cover the values of "
                              f"column {name!r} in the train split: {len(misses)} value(s) it never predicts, "
                              f"e.g. {shown}")
        taggers[name] = tagger
    return taggers


def save_feature_lm(lm, directory: Path) -> None:
    """Copy what rebuilds the feature LM (its config and tokenizer; the weights live in the
    tagger's state_dict) into the tagger's package, so the package stands alone."""
    import json
    from dataclasses import asdict

    from nlp_lstm.data.tokenizers import save_tokenizer

    save_tokenizer(lm.tokenizer, directory / "lm" / "tokenizer")
    model_cfg = lm.configs["model"]
    (directory / "lm" / "model.json").write_text(json.dumps(model_cfg if isinstance(model_cfg, dict)
                                                            else asdict(model_cfg)) + "\n", encoding="utf-8")


def read_feature_lm(directory: Path, device):
    import json

    from nlp_lstm.config import ModelConfig
    from nlp_lstm.data.tokenizers import load_tokenizer
    from nlp_lstm.models.lm import RNNLanguageModel
    from nlp_lstm.tasks.language_modeling import LanguageModel

    tokenizer = load_tokenizer(directory / "lm" / "tokenizer")
    model_cfg = json.loads((directory / "lm" / "model.json").read_text(encoding="utf-8"))
    model = RNNLanguageModel(ModelConfig(**model_cfg), tokenizer.vocab_size)
    return LanguageModel(model.to(device), tokenizer, {"model": model_cfg}, device)


def model_scheme(task_cfg, data_cfg) -> str:
    """The scheme the model predicts in: plain labels stay plain."""
    return "none" if data_cfg.tag_scheme == "none" else task_cfg.train_scheme


def length_batches(encoded: Sequence[EncodedSentence], batch_size: int) -> List[Tuple[List[int], Any]]:
    """(sentence indices, collated batch) in length order: what `predict` runs."""
    return [(indices, collate([encoded[i] for i in indices]))
            for indices in batch_indices([len(s.words) for s in encoded], batch_size, shuffle=False)]


class Predicted(NamedTuple):
    tags: List[List[str]]  # model scheme, per sentence
    loss: float  # summed over the sentences with gold tags
    scored: int  # sentences with gold tags
    spans: Optional[List[List["Span"]]]  # given `scheme`
    nbest: Optional[List[List[Tuple[List[str], float]]]]  # given `nbest`: model scheme, best first
    marginals: Optional[List[torch.Tensor]]  # given `marginals`: per sentence, what it returned


@torch.no_grad()
def predict(model: SequenceTagger, encoded: Sequence[EncodedSentence], vocabs: TaggingVocabs, batch_size: int,
            device, scheme: Optional[str] = None, batches: Optional[List[Tuple[List[int], Any]]] = None,
            nbest: Optional[int] = None, marginals: Optional[Callable] = None) -> Predicted:
    """Predicted tags (model scheme) per sentence, summed loss, number of sentences scored,
    and, given the model's `scheme`, each sentence's predicted spans with their confidence
    (see span_confidences); given `nbest` k, each sentence's k best sequences (CRF); given
    `marginals`, a function (emissions, mask) -> (B, T, C) tensor, its rows per sentence.
    Every output of a sentence comes from the one emissions tensor its tags come from (so
    under one precision: n-best's first is the Viterbi path). `batches`:
    length_batches(encoded, batch_size), made beforehand (evaluation attaches the cached
    feature-LM states to them)."""
    was_training = model.training
    model.eval()
    itos = vocabs.tags.get_itos()
    predictions: List[Optional[List[str]]] = [None] * len(encoded)
    spans: Optional[List[Optional[List[Span]]]] = [None] * len(encoded) if scheme else None
    best: Optional[List[Any]] = [None] * len(encoded) if nbest else None
    probs: Optional[List[Any]] = [None] * len(encoded) if marginals is not None else None
    loss, scored = torch.zeros((), dtype=torch.float64, device=device), 0
    for indices, host in batches if batches is not None else length_batches(encoded, batch_size):
        batch = host.to(device)
        emissions = model(batch)
        decoded = model.decode(emissions, batch)
        for i, tags in zip(indices, decoded):
            predictions[i] = [itos[t] for t in tags]
        if spans is not None:
            for i, found in zip(indices, span_confidences(model, emissions, batch, decoded, itos, scheme)):
                spans[i] = found
        if best is not None:
            for b, (i, tags) in enumerate(zip(indices, decoded)):
                best[i] = [([itos[t] for t in seq], score)
                           for seq, score in model.crf.nbest(emissions[b, :len(tags)], nbest)]
        if probs is not None:
            table = marginals(emissions, batch.mask).cpu()
            for b, (i, tags) in enumerate(zip(indices, decoded)):
                probs[i] = table[b, :len(tags)]
        gold_rows = host.has_gold.nonzero().squeeze(1)  # chosen on the host: no device sync
        if len(gold_rows):
            rows = gold_rows.to(device)
            pick = lambda t: t.index_select(0, rows)  # noqa: E731
            sub = type(batch)(pick(batch.words), batch.chars, batch.char_lengths, {}, pick(batch.tags),
                              pick(batch.mask), pick(batch.lengths), pick(batch.has_gold))
            loss += model.loss(pick(emissions), sub).double()
            scored += len(gold_rows)
    model.train(was_training)
    return Predicted(predictions, float(loss), scored, spans, best, probs)  # the loss is read once, at the end


Span = Tuple[str, int, int, float]  # type, first word, one past the last word, confidence


def span_confidences(model: SequenceTagger, emissions: torch.Tensor, batch, decoded: List[List[int]],
                     itos: List[str], scheme: str) -> List[List[Span]]:
    """Each sentence's predicted spans and their confidence: with a CRF, the posterior
    probability that exactly these words carry exactly these tags (so, in IOBES, that they
    form one span of this type), computed with the forward and backward algorithms; with a
    softmax head, the product of the words' probabilities of their predicted tags."""
    found = [spans_from_tags([itos[t] for t in tags], scheme) for tags in decoded]
    requests = [[(start, tags[start:end]) for _, start, end in row] for row, tags in zip(found, decoded)]
    if not any(requests):
        return [[] for _ in found]
    if model.crf is not None:
        log_probs = model.crf.segment_log_probs(emissions, batch.mask, requests)
    else:
        token = torch.log_softmax(emissions.float(), dim=-1).cpu()
        log_probs = [[float(sum(token[b, start + k, t] for k, t in enumerate(ids))) for start, ids in row]
                     for b, row in enumerate(requests)]
    return [[(label, start, end, math.exp(lp)) for (label, start, end), lp in zip(row, probs)]
            for row, probs in zip(found, log_probs)]


def write_conll_predictions(path: Path, sentences: Sequence[Sentence], predicted: Sequence[Sequence[str]]) -> None:
    """conlleval's input format: WORD GOLD PREDICTED, a blank line between sentences."""
    lines = []
    for sentence, tags in zip(sentences, predicted):
        lines.extend(f"{w} {g} {p}" for w, g, p in zip(sentence.words, sentence.tags, tags))
        lines.append("")
    atomic_write_text(path, "\n".join(lines) + "\n")


def tagging_metrics(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]], scheme: str) -> Dict[str, Any]:
    result = conlleval(gold, predicted, scheme)
    metrics: Dict[str, Any] = {"acc": result["acc"]}
    if scheme != "none":
        metrics.update({k: result[k] for k in ("precision", "recall", "f1", "macro_f1")})
        metrics["strict_f1"] = strict_span_f1(gold, predicted, scheme)["f1"]
        metrics.update({f"f1_{label}": v["f1"] for label, v in result["per_label"].items()})
        metrics["per_label"] = result["per_label"]
    return metrics


# Keys of the shared model schema that only language models read: left out of a tagger's
# HParams table.
LM_ONLY_MODEL_KEYS = ("tie_weights", "last_layer_size", "softmax", "adaptive_cutoffs", "adaptive_div_value",
                      "activation_reg", "temporal_activation_reg")


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
            self.feature_lm = (read_feature_lm(Path(cfg.model.init_from), device) if init_weights is not None
                               else load_feature_lm(cfg.model.lm_features, device))
        else:
            self.feature_lm = None
        self.feature_taggers = load_feature_taggers(cfg.model.feature_taggers, cfg.data.feature_columns, device,
                                                    self.splits["train"])
        lm_tokenizer = self.feature_lm.tokenizer if self.feature_lm else None
        self.encoded = {s: [encode(x, self.vocabs, self.scheme, self.corpus_scheme, lm_tokenizer) for x in sents]
                        for s, sents in self.splits.items()}
        for split in ("valid", "test"):
            unknown = sum(1 for e in self.encoded.get(split, []) if e.tags is None)
            if unknown:
                log.info(f"{split}: {unknown} sentence(s) hold a tag never seen in train; "
                         f"it can never be predicted and is scored as an error")
        sizes = ", ".join(f"{split} {len(sentences):,}" for split, sentences in self.splits.items())
        log.info(f"tagging corpus {cfg.data.name}: sentences: {sizes}; {len(self.vocabs.words):,} words, "
                 f"{len(self.vocabs.tags)} tags ({self.scheme})")
        self.model = build_tagger(cfg.model, self.vocabs, self.scheme, self.feature_lm)
        if init_weights is not None:
            load_leading_weights(self.model, init_weights, cfg.model.init_from, skip_prefix=TRAINING_ONLY_PREFIX)
        self.lm_cache = (FrozenFeatureCache(cfg.model.lm_features_cache_mb)
                         if self.feature_lm is not None and not cfg.model.lm_fine_tune
                         and cfg.model.lm_features_cache_mb > 0 else None)
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
                raise ConfigError(f"config model.{key}={getattr(cfg.model, key)!r}: a run with model.init_from "
                                  f"keeps the package's {key.replace('_', ' ')}; leave model.{key} unset")
        meta, weights = read_init_package(path, "tagging")
        configs = meta["configs"]
        package_scheme = model_scheme(SimpleNamespace(**configs["task"]), SimpleNamespace(**configs["data"]))
        if package_scheme != self.scheme:
            raise ConfigError(f"config task.train_scheme: the package at {path} predicts {package_scheme} tags, "
                              f"this run {self.scheme}; set task.train_scheme={package_scheme}")
        # The package's feature taggers are its own copies (the paths it was trained with
        # may be gone); this run's, if any, are added or replace them.
        packaged = {name: str(Path(path) / FEATURE_TAGGERS / name)
                    for name in configs["model"].get("feature_taggers") or {}}
        cfg.model = merged_model_config(cfg.model, {**configs["model"],
                                                    "feature_taggers": {**packaged, **dict(cfg.model.feature_taggers)}})
        vocabs = TaggingVocabs.load(Path(path))
        columns = sorted(dict(cfg.data.feature_columns or {}))
        if columns != sorted(vocabs.features):
            raise ConfigError(f"config data.feature_columns: the package at {path} reads input column(s) "
                              f"{sorted(vocabs.features)}, this run gives {columns}")
        self.summary["init_from"] = {"path": str(path), **meta.get("info", {})}
        return weights, vocabs

    def _initialise_word_vectors(self) -> None:
        vectors = self.word_vectors
        has_vector = initialise_word_embedding(self.model.word_embedding.weight, self.vocabs, vectors)
        covered = coverage(self.encoded, has_vector)
        self.summary["word_vectors"] = {**vectors.describe(), "vocabulary": len(self.vocabs.words),
                                        "with_vector": int(has_vector.sum()),
                                        **{f"coverage_{split}": round(c, 6) for split, c in covered.items()}}
        log.info(f"word vectors {vectors.path} ({vectors.format}, {vectors.dim}d): {vectors.rows_read:,} rows read; "
                 f"{int(has_vector.sum()):,} of {len(self.vocabs.words):,} vocabulary words have one "
                 f"({len(vectors.new_words):,} added from the file); token coverage "
                 + ", ".join(f"{split} {100 * c:.1f}%" for split, c in covered.items()))

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
        self.batches = batch_indices([len(s.words) for s in self.encoded["train"]], self.cfg.task.batch_size * world,
                                     shuffle=True, rng=rng)
        self.epoch, self.position = epoch, 0

    def steps_done_in_epoch(self) -> int:
        return self.position

    def next_batch(self):
        if self.position >= len(self.batches):
            return None
        global_batch = self.batches[self.position]
        self.position += 1
        mine = global_batch[self.dist.rank::self.dist.world_size]
        # The loss is the sum over this rank's sentences divided by the global batch's size:
        # DDP averages gradients over ranks, so the world size is multiplied back in. A rank
        # whose share of a short last batch is empty runs one sentence at weight zero.
        weight = self.dist.world_size / len(global_batch) if mine else 0.0
        indices = mine or global_batch[:1]
        return collate([self.encoded["train"][i] for i in indices]), weight, indices

    def training_step(self, batch) -> StepOutput:
        batch, weight, indices = batch
        if self.lm_cache is not None:
            batch.lm_states = self._cached_lm_states("train", indices)
        tokens = batch.num_tokens if weight else 0  # counted on the host batch: no device sync
        sentences = int(batch.lengths.numel()) if weight else 0
        batch = batch.to(self.device)
        nll, lm_nll = self.model.training_losses(batch)
        return StepOutput(loss=(nll + lm_nll) * weight, nll_sum=nll.detach() * (weight > 0), units=sentences, tokens=tokens)

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
        predicted, loss, scored = predict(self.model, mine, self.vocabs, self.cfg.task.eval_batch_size,
                                          self.device, batches=batches)[:3]
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
        from nlp_lstm.training import figures

        labels, matrix = self.last_confusion
        # The labels are every gold and predicted tag, so the matrix's final 'other' row and
        # column are empty: left out.
        matrix = [row[:len(labels)] for row in matrix[:len(labels)]]
        # Figures in groups of their own after train/ and valid/: Time Series opens its first
        # two groups (sorted by name), which should be the curves.
        monitor.figure("valid_figures/confusion_matrix", figures.confusion_figure(labels, matrix), step)
        monitor.table("valid/confusion_matrix", ["gold \\ predicted"] + labels,
                      [[label] + list(row) for label, row in zip(labels, matrix)], step)
        if self.last_per_type:
            types = sorted(self.last_per_type)
            monitor.figure("valid_figures/f1_per_type", figures.bar_figure(
                types, [self.last_per_type[t] for t in types], "valid F1 per type", "F1"), step)
        if self.model.crf is not None:
            monitor.figure("weights/crf_transitions", figures.transitions_figure(
                self.vocabs.tags.get_itos(), self.model.crf.transitions.detach().float().cpu()), step)

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

        save_package(directory, "tagging", {"model": self.cfg.model, "task": self.cfg.task, "data": self.cfg.data},
                     write_assets, {k: v for k, v in self.model.state_dict().items()
                                    if not k.startswith(TRAINING_ONLY_PREFIX)},
                     info=self.summary)

    def hparams(self) -> Dict[str, Any]:
        c = self.cfg
        out = {"data": c.data.name, "scheme": self.scheme, "optim": c.optim.name, "lr": c.optim.lr,
               "batch_size": c.task.batch_size, "precision": c.trainer.precision, "seed": c.seed}
        out.update({f"model.{k}": v for k, v in vars(c.model).items() if k not in LM_ONLY_MODEL_KEYS})
        return out


def as_input(text: Union[str, Sequence[str]], features: Optional[Dict[str, Sequence[str]]] = None) -> InputSentence:
    """A raw sentence (tokenized with `tokenize`, offsets kept) or a token list."""
    if isinstance(text, str):
        tokens = tokenize(text)
        return InputSentence([t for t, _, _ in tokens], dict(features or {}), text=text,
                             offsets=[(a, b) for _, a, b in tokens])
    return InputSentence(list(text), dict(features or {}))


def token_records(sentence: InputSentence, tags: Sequence[str]) -> List[Dict[str, Any]]:
    """Tokens with their tags and, for raw text, character offsets into the input line
    (a split sentence's own offsets moved by its start in the line)."""
    if sentence.offsets is None:
        return [{"token": w, "tag": t, "start": None, "end": None} for w, t in zip(sentence.words, tags)]
    shift = sentence.text_start
    return [{"token": w, "tag": t, "start": a + shift, "end": b + shift}
            for w, t, (a, b) in zip(sentence.words, tags, sentence.offsets)]


def span_record(sentence: InputSentence, span: Span) -> Dict[str, Any]:
    label, start, end, confidence = span
    record: Dict[str, Any] = {"type": label, "start": start, "end": end,
                              "words": " ".join(sentence.words[start:end]), "confidence": round(confidence, 6)}
    if sentence.offsets is not None:
        first, last = sentence.offsets[start][0], sentence.offsets[end - 1][1]
        shift = sentence.text_start  # character offsets are into the input line, as the tokens'
        record.update({"start_char": first + shift, "end_char": last + shift, "text": sentence.text[first:last]})
    return record


class Prediction(NamedTuple):
    """One sentence's outputs, in the corpus's scheme, all from one emissions tensor."""
    tags: List[str]
    spans: Optional[List[Dict[str, Any]]]  # with spans=True (see Tagger.predict_inputs)
    nbest: Optional[List[Tuple[List[str], float]]]  # with nbest=k: (tags, CRF score), best first
    marginals: Optional[List[Dict[str, float]]]  # with marginals=True: per token, P(tag) of each label


class Tagger:
    """A trained tagger loaded from its package: `nlp_lstm.load(path).tag([...])`."""

    def __init__(self, model: SequenceTagger, vocabs: TaggingVocabs, configs: Dict[str, Any], device,
                 lm_tokenizer=None, feature_taggers: Optional[Dict[str, "Tagger"]] = None) -> None:
        self.model, self.vocabs, self.configs, self.device = model, vocabs, configs, device
        self.lm_tokenizer = lm_tokenizer
        self.feature_taggers = feature_taggers or {}  # input columns this package can predict
        self.corpus_scheme = configs["data"]["tag_scheme"]
        self.scheme = "none" if self.corpus_scheme == "none" else configs["task"]["train_scheme"]
        self.precision = "fp32"
        self.set_precision("auto")  # the default of every inference command too (see set_precision)
        self._char_cache: Dict[str, List[int]] = {}  # word -> character ids (see encode)
        self._tables: Dict[Tuple[str, str], Tuple] = {}  # (model, corpus scheme) -> _scheme_tables
        self.model.eval()

    @classmethod
    def from_package(cls, path, meta, state_dict, device) -> "Tagger":
        from nlp_lstm.errors import ModelPackageError

        try:
            vocabs = TaggingVocabs.load(Path(path))
        except (FileNotFoundError, KeyError, ValueError) as exc:
            raise ModelPackageError(f"{path}: unreadable vocabs.json ({exc})") from None
        model_cfg = TaggerModelConfig(**meta["configs"]["model"])
        scheme = "none" if meta["configs"]["data"]["tag_scheme"] == "none" else meta["configs"]["task"]["train_scheme"]
        feature_lm = read_feature_lm(Path(path), device) if model_cfg.lm_features else None
        model = build_tagger(model_cfg, vocabs, scheme, feature_lm, for_inference=True)
        model.load_state_dict(state_dict)
        from nlp_lstm.api import load

        feature_taggers = {name: load(Path(path) / FEATURE_TAGGERS / name, str(device))
                           for name in model_cfg.feature_taggers}
        return cls(model.to(device), vocabs, meta["configs"], device, feature_lm.tokenizer if feature_lm else None,
                   feature_taggers)

    def __repr__(self) -> str:
        m = self.configs["model"]
        labels = self.labels
        shown = ", ".join(labels[:8]) + (", ..." if len(labels) > 8 else "")
        chars = [] if m.get("char_features") in (None, "none") else [f"characters ({m['char_features']})"]
        inputs = ["words", *chars, *(f"column {name}" for name in self.feature_columns)]
        parameters = sum(p.numel() for p in self.model.parameters())
        return (f"Tagger({len(labels)} labels in {self.corpus_scheme} [{shown}], {m.get('head')} head, "
                f"{len(self.vocabs.words):,} words, inputs: {', '.join(inputs)}, {parameters:,} parameters, "
                f"{self.precision} on {self.device})")

    @property
    def feature_columns(self) -> Dict[str, int]:
        """Extra input columns the model reads besides the word (e.g. {"pos": 1})."""
        return dict(self.configs["data"].get("feature_columns") or {})

    @property
    def labels(self) -> List[str]:
        """The tags this model can output, in the corpus's scheme."""
        itos = self.vocabs.tags.get_itos()
        if self.scheme == "none":
            return itos
        types = sorted({split_tag(t)[1] for t in itos if t != "O"})
        prefixes = "BIES" if self.corpus_scheme == "iobes" else "BI"
        return ["O"] + [f"{p}-{t}" for t in types for p in prefixes]

    @property
    def conllu_field(self) -> str:
        """Where CoNLL-U output puts this model's tags by default: the field it was trained
        on (UPOS or XPOS; UPOS for other plain labels), MISC for chunk/entity tags."""
        if self.corpus_scheme != "none":
            return "misc"
        return self.configs["data"].get("conllu_field") or "upos"

    def _encode(self, words: Sequence[str], features: Optional[Dict[str, Sequence[str]]] = None) -> EncodedSentence:
        features = features or {}
        missing = [name for name in self.vocabs.features if name not in features]
        if missing:
            raise NlpLstmError(f"this model also reads input column(s) {', '.join(missing)} "
                               f"(data.feature_columns={self.feature_columns}): give CoNLL input that has them, "
                               f"or train it with +model.feature_taggers.{missing[0]}=PATH to predict them")
        return encode(Sentence(list(words), [], {n: list(v) for n, v in features.items()}), self.vocabs,
                      self.scheme, self.corpus_scheme, self.lm_tokenizer, self._char_cache)

    def tag_tokens(self, sentences: Sequence[Sequence[str]], batch_size: int = 256,
                   features: Optional[Sequence[Dict[str, Sequence[str]]]] = None) -> List[List[str]]:
        """Tags (in the corpus's scheme) for pre-tokenized sentences; `features[i]` holds the
        extra input columns of sentence i where the model reads some."""
        inputs = [InputSentence(list(words), dict(features[i]) if features else {}) for i, words in enumerate(sentences)]
        return [p.tags for p in self.predict_inputs(inputs, batch_size)]

    def predict_inputs(self, sentences: Sequence[InputSentence], batch_size: int = 256, spans: bool = False,
                       nbest: Optional[int] = None, marginals: bool = False) -> List[Prediction]:
        """Per sentence (a Prediction): its tags and, with `spans` (for a model whose tags
        have spans), its spans as dicts: type, start and end (words, end exclusive),
        start_char/end_char/text where the sentence has character offsets, and confidence
        (see span_confidences); with `nbest` k (CRF), its k best sequences; with `marginals`
        (CRF), each token's probability of each of `labels`. All in the corpus's scheme and
        all from the emissions the tags come from, computed once under the tagger's
        precision (a second pass could differ from the first in bf16)."""
        if (nbest or marginals) and self.model.crf is None:
            raise NlpLstmError(f"{'n-best' if nbest else 'marginals'} need a CRF head (model.head=crf)")
        keep = [i for i, s in enumerate(sentences) if len(s.words)]
        self._predict_missing_features([sentences[i] for i in keep], batch_size)
        encoded = [self._encode(sentences[i].words, sentences[i].features) for i in keep]
        want_spans = spans and self.scheme != "none"
        out = [Prediction([], [] if want_spans else None, [] if nbest else None, [] if marginals else None)
               for _ in sentences]
        if not encoded:
            return out
        labels = self.labels
        with self._autocast():
            result = predict(self.model, encoded, self.vocabs, batch_size, self.device,
                             self.scheme if want_spans else None, nbest=nbest,
                             marginals=self._corpus_marginals if marginals else None)
        for n, (i, tags) in enumerate(zip(keep, result.tags)):
            found = result.spans[n] if result.spans is not None else None
            best = result.nbest[n] if result.nbest is not None else None
            probs = result.marginals[n].tolist() if result.marginals is not None else None
            out[i] = Prediction(
                convert(tags, self.scheme, self.corpus_scheme),
                [span_record(sentences[i], span) for span in found] if found is not None else None,
                [(convert(seq, self.scheme, self.corpus_scheme), score) for seq, score in best]
                if best is not None else None,
                [dict(zip(labels, row)) for row in probs] if probs is not None else None)
        return out

    def _corpus_marginals(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """P(tag at t | sentence) over the corpus scheme's tags (`labels`), (B, T, C)."""
        crf = self.model.crf
        kind, *tables = self._scheme_tables()
        probs = crf.marginals(emissions, mask).double()
        tables = [t.to(probs.device) for t in tables]
        if kind == "unary":
            return probs @ tables[0]
        first, pairs = tables  # the first word from its own tag; each later one from (tag before, its tag)
        return torch.cat([probs[:, :1] @ first, crf.pair_marginals(emissions, mask).flatten(2) @ pairs], dim=1)

    def _scheme_tables(self):
        """How the corpus-scheme tag at t follows from the model's tags, as 0/1 matrices onto
        `labels`: ("unary", U (N, C)) where the model's tag at t decides it (the same scheme;
        IOBES -> IOB2: S-X is B-X, E-X is I-X, so P(B-X) = P(B-X) + P(S-X)), else ("pairs",
        first (N, C), pairs (N * N, C)) from the tags at (t - 1, t) (IOB1 needs the tag before
        to choose B or I). An IOBES corpus from a model in another scheme would need the tag
        after as well: refused."""
        key = (self.scheme, self.corpus_scheme)
        if key not in self._tables:
            self._tables[key] = self._build_scheme_tables()
        return self._tables[key]

    def _build_scheme_tables(self):
        itos, labels = self.vocabs.tags.get_itos(), self.labels
        index = {t: c for c, t in enumerate(labels)}

        def matrix(targets: List[str]) -> torch.Tensor:
            table = torch.zeros(len(targets), len(labels), dtype=torch.float64)
            table[torch.arange(len(targets)), torch.tensor([index[t] for t in targets])] = 1.0
            return table

        if self.scheme in ("none", self.corpus_scheme):
            return ("unary", matrix(itos))
        if self.corpus_scheme == "iobes":
            raise NlpLstmError(f"marginals in the corpus's iobes scheme need a model trained in iobes "
                               f"(task.train_scheme); this one was trained in {self.scheme}")
        crf = self.model.crf
        allowed, allowed_start = crf.allowed.tolist(), crf.allowed_start.tolist()
        first = [convert([b], self.scheme, self.corpus_scheme)[0] for b in itos]
        pairs = [[convert([a, b], self.scheme, self.corpus_scheme)[1] for b in itos] for a in itos]
        unary = []
        for j, tag in enumerate(itos):
            outcomes = ({first[j]} if allowed_start[j] else set()) | {
                pairs[i][j] for i in range(len(itos)) if allowed[i][j]}
            unary.append(outcomes.pop() if len(outcomes) == 1 else None)
        if all(u is not None for u in unary):
            return ("unary", matrix(unary))
        return ("pairs", matrix(first), matrix([t for row in pairs for t in row]))

    def set_precision(self, precision: str) -> "Tagger":
        """auto (the default, as for `nlp-lstm tag` and `evaluate`: bf16 where the hardware
        computes it natively, about twice the sentences/s on a CPU with AMX; else fp32), fp32
        (the numbers a tagger trained in fp32 reported) or bf16. Packaged feature taggers
        follow."""
        from nlp_lstm.device import resolve_precision

        self.precision = resolve_precision(precision, torch.device(self.device))
        for tagger in self.feature_taggers.values():
            tagger.set_precision(precision)
        return self

    def _autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(torch.device(self.device).type, dtype=dtype)

    def _predict_missing_features(self, sentences: Sequence[InputSentence], batch_size: int) -> None:
        """Fill each input column a sentence lacks from the packaged tagger that predicts it
        (the chunker's POS from its POS tagger), in one batched pass per column."""
        for name, tagger in self.feature_taggers.items():
            lacking = [s for s in sentences if name not in s.features]
            if lacking:
                for sentence, prediction in zip(lacking, tagger.predict_inputs(
                        [InputSentence(s.words, dict(s.features)) for s in lacking], batch_size)):
                    sentence.features[name] = prediction.tags

    def spans(self, texts: Sequence[Union[str, Sequence[str]]], batch_size: int = 256,
              features: Optional[Sequence[Dict[str, Sequence[str]]]] = None) -> List[List[Dict[str, Any]]]:
        """The chunks / entities of raw sentences or token lists, with confidences:
        `nlp_lstm.load(path).spans(["Alice lives in Paris ."])`."""
        if self.scheme == "none":
            raise NlpLstmError("this model tags plain labels (data.tag_scheme=none): it has no spans")
        inputs = [as_input(t, features[i] if features else None) for i, t in enumerate(texts)]
        return [p.spans for p in self.predict_inputs(inputs, batch_size, spans=True)]

    def tag(self, texts: Sequence[Union[str, Sequence[str]]],
            features: Optional[Sequence[Dict[str, Sequence[str]]]] = None) -> List[List[Dict[str, Any]]]:
        """Tag raw sentences (tokenized with `tokenize`) or token lists.

        Returns, per sentence, [{"token", "tag", "start", "end"}] (offsets for raw text only).
        """
        inputs = [as_input(t, features[i] if features else None) for i, t in enumerate(texts)]
        return [token_records(sentence, p.tags) for sentence, p in zip(inputs, self.predict_inputs(inputs))]

    def evaluate(self, sentences: Sequence[Sentence], predictions_path: Optional[Path] = None) -> Dict[str, Any]:
        """conlleval metrics (or accuracy for plain labels) on gold-tagged sentences."""
        predicted = self.tag_tokens([s.words for s in sentences], features=[s.features for s in sentences])
        if predictions_path is not None:
            write_conll_predictions(Path(predictions_path), sentences, predicted)
        metrics = tagging_metrics([s.tags for s in sentences], predicted, self.corpus_scheme)
        metrics.pop("per_label", None)
        return metrics

    def nbest(self, words: Sequence[str], k: int,
              features: Optional[Dict[str, Sequence[str]]] = None) -> List[Tuple[List[str], float]]:
        """The k best tag sequences of one sentence (corpus scheme) with their CRF scores;
        the first is what `tag` outputs."""
        return self.predict_inputs([InputSentence(list(words), dict(features or {}))], nbest=k)[0].nbest

    def marginals(self, words: Sequence[str], features: Optional[Dict[str, Sequence[str]]] = None
                  ) -> List[Dict[str, float]]:
        """Per token, the marginal probability of each tag of the corpus's scheme (`labels`);
        they sum to 1 per token."""
        return self.predict_inputs([InputSentence(list(words), dict(features or {}))], marginals=True)[0].marginals
