"""`nlp-lstm export TAGGER OUT`: the tagger's network as ONNX, plus what decoding needs.

Why ONNX (through `torch.onnx.export(dynamo=True)`): onnxruntime, Triton, TensorRT,
OpenVINO and the browsers serve it with no Python and no PyTorch, which is what people
export for; `torch.export`'s ExportedProgram still needs PyTorch to run, and TorchScript is
deprecated. The graph takes batch and length as dynamic dimensions:

    inputs   words (B, T) int64        word ids (0 padding), lowercased where the model was
             chars (B, T, C) int64     each word's character ids (0 padding)
             lengths (B,) int64        words per sentence
             <feature> (B, T) int64    one per input column, in `inputs` order (e.g. pos)
    output   emissions (B, T, N) float32, the tag scores the CRF (or softmax) decodes

`tagger.json` holds the vocabularies (ids as in the inputs above, <unk> = 1), the tag
names, the tag schemes, the raw-text tokenizer's pattern, and for a CRF head its
transition, start and end scores with the scheme's forbidden moves already set to a large
negative number; `viterbi()` below decodes with numpy alone. Export covers LSTM and GRU
taggers with or without character features; a tagger reading a feature LM
(`model.lm_features`) is refused (its LM would need its own tokenizer outside the graph).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np
import torch
from torch import nn

from nlp_lstm.data.tag_files import TOKEN_PATTERN
from nlp_lstm.data.tagging_batch import TaggingBatch, collate
from nlp_lstm.errors import NlpLstmError
from nlp_lstm.fileio import atomic_directory
from nlp_lstm.models import rnn


class _Emissions(nn.Module):
    """The tagger's forward pass on plain tensors (one row of characters per word)."""

    def __init__(self, model: nn.Module, feature_names: Sequence[str]) -> None:
        super().__init__()
        self.model, self.feature_names = model, list(feature_names)

    def forward(self, words, chars, lengths, *features):
        batch, length = words.shape
        mask = torch.arange(length, device=words.device).unsqueeze(0) < lengths.unsqueeze(1)
        flat_chars = chars.reshape(batch * length, chars.size(2))
        # Padding words get one (padding) character so every row has a length; their
        # outputs never reach a real word (see BiRNN) and are dropped by the decoder.
        char_lengths = (flat_chars > 0).sum(1).clamp(min=1)
        # tags and has_gold: any tensors of their shapes (the graph computes emissions only)
        inputs = TaggingBatch(
            words=words,
            chars=flat_chars,
            char_lengths=char_lengths,
            features=dict(zip(self.feature_names, features)),
            tags=words,
            mask=mask,
            lengths=lengths,
            has_gold=mask[:, 0],
            word_positions=torch.arange(batch * length, device=words.device),
        )
        return self.model(inputs)


def example_inputs(tagger, sentences: List[List[str]]):
    """(words, chars, lengths, *features) tensors for pre-tokenized sentences, as the
    exported graph takes them (the same ids `tagger.json` describes)."""
    batch = collate(
        [tagger._encode(words, {n: ["<unk>"] * len(words) for n in tagger.vocabs.features}) for words in sentences]
    )
    rows, length = batch.words.shape
    chars = torch.zeros(rows * length, batch.chars.size(1), dtype=torch.long)
    chars[batch.word_positions] = batch.chars[batch.char_index]
    features = [batch.features[n] for n in sorted(tagger.vocabs.features)]
    return (batch.words, chars.view(rows, length, -1), batch.lengths, *features)


def _clear_rnn_dispatch_caches() -> None:
    """torch's ONNX exporter (2.13) swaps its while-loop LSTM/GRU decompositions in and out of
    aten.lstm/aten.gru without clearing the ops' dispatch caches: an export after another one
    in the same process found the stale entry, traced the loop over time and fixed the
    length to the sample's, silently. Each export starts from empty caches."""
    for op in (torch.ops.aten.lstm.input, torch.ops.aten.gru.input):
        cache = getattr(op, "_dispatch_cache", None)
        if cache is not None:
            cache.clear()


def export_tagger(tagger, out_dir: Path) -> Dict[str, Any]:
    if tagger.model.lm is not None:
        raise NlpLstmError(
            "export: this tagger reads a feature LM (model.lm_features); exporting it is not supported yet"
        )
    model = tagger.model.float().cpu().eval()
    names = sorted(tagger.vocabs.features)
    wrapper = _Emissions(model, names).eval()
    sample = example_inputs(tagger, [["The", "old", "man", "saw", "it", "."], ["Yes", "."]])
    batch, time, chars = torch.export.Dim("batch"), torch.export.Dim("time"), torch.export.Dim("chars")
    # The input columns arrive as forward's *features: one nested tuple in dynamic_shapes,
    # and none at all for a tagger without columns (torch.export counts the entries).
    shapes = ({0: batch, 1: time}, {0: batch, 1: time, 2: chars}, {0: batch})
    if names:
        shapes += (tuple({0: batch, 1: time} for _ in names),)
    out_dir = Path(out_dir)
    _clear_rnn_dispatch_caches()
    out_dir = Path(out_dir)
    with atomic_directory(out_dir) as tmp, torch.no_grad(), rnn.fused_gru_on_cpu(), _quiet_exporter():
        try:
            program = torch.onnx.export(
                wrapper,
                sample,
                input_names=["words", "chars", "lengths", *names],
                output_names=["emissions"],
                dynamic_shapes=shapes,
                dynamo=True,
                verbose=False,
            )
        except ImportError as exc:
            raise NlpLstmError(
                f"export needs the onnx and onnxscript packages ({exc}): pip install 'nlp-lstm[export]'"
            ) from None
        program.save(str(tmp / "model.onnx"))
        _declare_dynamic_output(tmp / "model.onnx")
        meta = decoding_info(tagger, names)
        (tmp / "tagger.json").write_text(json.dumps(meta, ensure_ascii=False) + "\n", encoding="utf-8")
    return meta


def _declare_dynamic_output(path: Path) -> None:
    """The exporter declares the emissions' length, and that of the LSTM outputs before
    them, as the sample's (the graph computes any length; onnxruntime then warns on every
    call): declare the output (batch, time, tags) and drop the intermediate shape
    annotations, which are optional (runtimes infer them)."""
    import onnx

    model = onnx.load(str(path))
    model.graph.ClearField("value_info")
    dims = model.graph.output[0].type.tensor_type.shape.dim
    for dim, name in zip(dims, ("batch", "time")):
        dim.Clear()
        dim.dim_param = name
    onnx.save(model, str(path))


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter's progress lines (stdout), PyTorch-internal deprecation warnings and
    "torchvision is not installed" notices say nothing to a user of `nlp-lstm export`."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch._dynamo", "torch.export")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def decoding_info(tagger, feature_names: List[str]) -> Dict[str, Any]:
    meta: Dict[str, Any] = {
        "format": "nlp_lstm tagger export 1",
        "inputs": ["words", "chars", "lengths", *feature_names],
        "tags": tagger.vocabs.tags.get_itos(),
        "scheme": tagger.scheme,
        "corpus_scheme": tagger.corpus_scheme,
        "vocab": {
            "words": tagger.vocabs.words.get_itos(),
            "chars": tagger.vocabs.chars.get_itos(),
            "features": {n: tagger.vocabs.features[n].get_itos() for n in feature_names},
            "pad": 0,
            "unk": 1,
            "lowercase_words": tagger.vocabs.lowercase_words,
        },
        # nlp-lstm tag tokenises raw text with segtok (Python); other runtimes get its
        # dependency-free fallback regex, which keeps contractions whole and splits "U.S.".
        "tokenizer": "segtok: split_contractions(word_tokenizer(text))",
        "tokenizer_pattern": TOKEN_PATTERN.pattern,
        "crf": None,
    }
    crf = tagger.model.crf
    if crf is not None:
        transitions, start, end = (t.detach().float().cpu().tolist() for t in crf._params())
        meta["crf"] = {"transitions": transitions, "start": start, "end": end}
    return meta


def viterbi(emissions: np.ndarray, length: int, crf: Dict[str, Any]) -> List[int]:
    """The best tag ids of one sentence from its emissions (T, N) and tagger.json's "crf"
    (numpy only; argmax per word where the model has no CRF: crf=None)."""
    scores = emissions[:length].astype(np.float64)
    if crf is None:
        return scores.argmax(1).tolist()
    trans = np.asarray(crf["transitions"])
    score = np.asarray(crf["start"]) + scores[0]
    back = []
    for t in range(1, length):
        total = score[:, None] + trans  # [from, to]
        back.append(total.argmax(0))
        score = total.max(0) + scores[t]
    best = [int((score + np.asarray(crf["end"])).argmax())]
    for pointers in reversed(back):
        best.append(int(pointers[best[-1]]))
    return best[::-1]
