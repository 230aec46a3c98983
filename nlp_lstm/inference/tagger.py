"""A trained tagger loaded from its package: `nlp_lstm.load(path).tag([...])`.

A new input feature of the tagger (a column, a character or LM feature) goes through:
config.py (TaggerModelConfig), data/tagging_corpus.py (the vocabulary, `encode`, the
EncodedSentence and TaggingBatch fields, `collate`), models/tagger.py (how the model reads
it), this Tagger's `_encode` where the user gives it, and inference/export.py (the ONNX
graph's inputs). TaggingBatch is built and moved by field name, so nothing else changes.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch

from nlp_lstm.config import TaggerModelConfig
from nlp_lstm.data.conll import Sentence
from nlp_lstm.data.tag_files import InputSentence
from nlp_lstm.data.tag_schemes import convert, split_tag
from nlp_lstm.data.tagging_batch import collate
from nlp_lstm.data.tagging_corpus import EncodedSentence, TaggingVocabs, encode
from nlp_lstm.device import autocast_context
from nlp_lstm.errors import ModelPackageError, NlpLstmError
from nlp_lstm.inference.corpus_marginals import corpus_marginals, scheme_tables
from nlp_lstm.inference.prediction import predict
from nlp_lstm.inference.records import Prediction, as_input, span_record, token_records
from nlp_lstm.inference.tagger_package import FEATURE_TAGGERS, build_tagger, read_feature_lm
from nlp_lstm.metrics import tagging_metrics, write_conll_predictions
from nlp_lstm.models.tagger import SequenceTagger
from nlp_lstm.package import rebuild
from nlp_lstm.speed_choices import measured_precision


class Tagger:
    """A trained tagger loaded from its package: `nlp_lstm.load(path).tag([...])`."""

    def __init__(
        self,
        model: SequenceTagger,
        vocabs: TaggingVocabs,
        configs: Dict[str, Any],
        device,
        lm_tokenizer=None,
        feature_taggers: Optional[Dict[str, "Tagger"]] = None,
    ) -> None:
        self.model, self.vocabs, self.configs, self.device = model, vocabs, configs, device
        self.lm_tokenizer = lm_tokenizer
        self.feature_taggers = feature_taggers or {}  # input columns this package can predict
        self.corpus_scheme = configs["data"]["tag_scheme"]
        self.scheme = "none" if self.corpus_scheme == "none" else configs["task"]["train_scheme"]
        self._char_cache: Dict[str, List[int]] = {}  # word -> character ids (see encode)
        self._tables: Dict[Tuple[str, str], Tuple] = {}  # (model, corpus scheme) -> _scheme_tables
        self.model.eval()
        self._precision = "auto"  # the default of every inference command too (see set_precision)

    @classmethod
    def from_package(cls, path, meta, state_dict, device) -> "Tagger":
        try:
            vocabs = TaggingVocabs.load(Path(path))
        except (FileNotFoundError, KeyError, ValueError) as exc:
            raise ModelPackageError(f"{path}: unreadable vocabs.json ({exc})") from None
        model_cfg = TaggerModelConfig(**meta["configs"]["model"])
        scheme = "none" if meta["configs"]["data"]["tag_scheme"] == "none" else meta["configs"]["task"]["train_scheme"]
        feature_lm = read_feature_lm(Path(path), device) if model_cfg.lm_features else None
        model = build_tagger(model_cfg, vocabs, scheme, feature_lm, for_inference=True)
        model.load_state_dict(state_dict)
        feature_taggers = {
            name: rebuild(Path(path) / FEATURE_TAGGERS / name, device, {"tagging": Tagger})
            for name in model_cfg.feature_taggers
        }
        return cls(
            model.to(device),
            vocabs,
            meta["configs"],
            device,
            feature_lm.tokenizer if feature_lm else None,
            feature_taggers,
        )

    def __repr__(self) -> str:
        m = self.configs["model"]
        labels = self.labels
        shown = ", ".join(labels[:8]) + (", ..." if len(labels) > 8 else "")
        chars = [] if m.get("char_features") in (None, "none") else [f"characters ({m['char_features']})"]
        inputs = ["words", *chars, *(f"column {name}" for name in self.feature_columns)]
        parameters = sum(p.numel() for p in self.model.parameters())
        return (
            f"Tagger({len(labels)} labels in {self.corpus_scheme} [{shown}], {m.get('head')} head, "
            f"{len(self.vocabs.words):,} words, inputs: {', '.join(inputs)}, {parameters:,} parameters, "
            f"{self.precision} on {self.device})"
        )

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
            raise NlpLstmError(
                f"this model also reads input column(s) {', '.join(missing)} "
                f"(data.feature_columns={self.feature_columns}): give CoNLL input that has them, "
                f"or train it with +model.feature_taggers.{missing[0]}=PATH to predict them"
            )
        return encode(
            Sentence(list(words), [], {n: list(v) for n, v in features.items()}),
            self.vocabs,
            self.scheme,
            self.corpus_scheme,
            self.lm_tokenizer,
            self._char_cache,
        )

    def tag_tokens(
        self,
        sentences: Sequence[Sequence[str]],
        batch_size: int = 256,
        features: Optional[Sequence[Dict[str, Sequence[str]]]] = None,
    ) -> List[List[str]]:
        """Tags (in the corpus's scheme) for pre-tokenized sentences; `features[i]` holds the
        extra input columns of sentence i where the model reads some."""
        inputs = [
            InputSentence(list(words), dict(features[i]) if features else {}) for i, words in enumerate(sentences)
        ]
        return [p.tags for p in self.predict_inputs(inputs, batch_size)]

    def predict_inputs(
        self,
        sentences: Sequence[InputSentence],
        batch_size: int = 256,
        spans: bool = False,
        nbest: Optional[int] = None,
        marginals: bool = False,
    ) -> List[Prediction]:
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
        out = [
            Prediction([], [] if want_spans else None, [] if nbest else None, [] if marginals else None)
            for _ in sentences
        ]
        if not encoded:
            return out
        labels = self.labels
        with self._autocast():
            result = predict(
                self.model,
                encoded,
                self.vocabs,
                batch_size,
                self.device,
                self.scheme if want_spans else None,
                nbest=nbest,
                marginals=self._corpus_marginals if marginals else None,
            )
        for n, (i, tags) in enumerate(zip(keep, result.tags)):
            found = result.spans[n] if result.spans is not None else None
            best = result.nbest[n] if result.nbest is not None else None
            probs = result.marginals[n].tolist() if result.marginals is not None else None
            out[i] = Prediction(
                convert(tags, self.scheme, self.corpus_scheme),
                [span_record(sentences[i], span) for span in found] if found is not None else None,
                [(convert(seq, self.scheme, self.corpus_scheme), score) for seq, score in best]
                if best is not None
                else None,
                [dict(zip(labels, row)) for row in probs] if probs is not None else None,
            )
        return out

    def _corpus_marginals(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """P(tag at t | sentence) over the corpus scheme's tags (`labels`), (B, T, C)."""
        key = (self.scheme, self.corpus_scheme)
        if key not in self._tables:
            self._tables[key] = scheme_tables(self.model.crf, self.vocabs.tags.get_itos(), self.labels, *key)
        return corpus_marginals(self.model.crf, self._tables[key], emissions, mask)

    def set_precision(self, precision: str) -> "Tagger":
        """auto (the default, as for `nlp-lstm tag`, `evaluate` and `serve`: whichever of fp32
        and bf16 tags faster here, timed once per machine and model shape; bf16 gave about
        twice the sentences/s on a CPU with AMX), fp32 (the numbers a tagger trained in fp32
        reported) or bf16. Packaged feature taggers follow."""
        self._precision = precision  # `auto` is timed when first needed (see `precision`)
        for tagger in self.feature_taggers.values():
            tagger.set_precision(precision)
        return self

    @property
    def precision(self) -> str:
        """The precision this tagger runs in: `auto` is resolved (timed) on first use."""
        if self._precision == "auto":
            self._precision = self._measured_precision()
        return self._precision

    PROBE_SENTENCES, PROBE_WORDS = 128, 24  # about a CoNLL-2000 sentence's length

    def _measured_precision(self) -> str:
        """`auto`: the faster precision for tagging a batch of sentences with this model here
        (timed once per machine and model shape; see nlp_lstm.speed_choices)."""
        device = torch.device(self.device)
        rng = random.Random(0)
        words = self.vocabs.words.get_itos()[2:] or ["x"]
        columns = {name: vocab.get_itos()[2:] or ["x"] for name, vocab in self.vocabs.features.items()}
        sentences = [
            self._encode(
                rng.choices(words, k=self.PROBE_WORDS),
                {name: rng.choices(values, k=self.PROBE_WORDS) for name, values in columns.items()},
            )
            for _ in range(self.PROBE_SENTENCES)
        ]
        batch = collate(sentences).to(device)

        @torch.no_grad()
        def tag(precision: str) -> None:
            with autocast_context(device, precision):
                self.model.decode(self.model(batch), batch)

        return measured_precision(
            "tagging precision=auto",
            self.model,
            f"batch {self.PROBE_SENTENCES} sentences x {self.PROBE_WORDS} words",
            device,
            tag,
        )

    def _autocast(self):
        return autocast_context(torch.device(self.device), self.precision)

    def _predict_missing_features(self, sentences: Sequence[InputSentence], batch_size: int) -> None:
        """Fill each input column a sentence lacks from the packaged tagger that predicts it
        (the chunker's POS from its POS tagger), in one batched pass per column."""
        for name, tagger in self.feature_taggers.items():
            lacking = [s for s in sentences if name not in s.features]
            if lacking:
                for sentence, prediction in zip(
                    lacking,
                    tagger.predict_inputs([InputSentence(s.words, dict(s.features)) for s in lacking], batch_size),
                ):
                    sentence.features[name] = prediction.tags

    def spans(
        self,
        texts: Sequence[Union[str, Sequence[str]]],
        batch_size: int = 256,
        features: Optional[Sequence[Dict[str, Sequence[str]]]] = None,
    ) -> List[List[Dict[str, Any]]]:
        """The chunks / entities of raw sentences or token lists, with confidences:
        `nlp_lstm.load(path).spans(["Alice lives in Paris ."])`."""
        if self.scheme == "none":
            raise NlpLstmError("this model tags plain labels (data.tag_scheme=none): it has no spans")
        inputs = [as_input(t, features[i] if features else None) for i, t in enumerate(texts)]
        return [p.spans for p in self.predict_inputs(inputs, batch_size, spans=True)]

    def tag(
        self, texts: Sequence[Union[str, Sequence[str]]], features: Optional[Sequence[Dict[str, Sequence[str]]]] = None
    ) -> List[List[Dict[str, Any]]]:
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

    def nbest(
        self, words: Sequence[str], k: int, features: Optional[Dict[str, Sequence[str]]] = None
    ) -> List[Tuple[List[str], float]]:
        """The k best tag sequences of one sentence (corpus scheme) with their CRF scores;
        the first is what `tag` outputs."""
        return self.predict_inputs([InputSentence(list(words), dict(features or {}))], nbest=k)[0].nbest

    def marginals(
        self, words: Sequence[str], features: Optional[Dict[str, Sequence[str]]] = None
    ) -> List[Dict[str, float]]:
        """Per token, the marginal probability of each tag of the corpus's scheme (`labels`);
        they sum to 1 per token."""
        return self.predict_inputs([InputSentence(list(words), dict(features or {}))], marginals=True)[0].marginals
