"""`nlp-lstm export`: the ONNX graph run in onnxruntime gives the tagger's emissions (within
1e-4 absolute, float32 kernels of two runtimes) for batches and lengths other than the
export's, and decoding them with tagger.json gives exactly the tags `nlp-lstm tag` gives."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import nlp_lstm
from helpers.runs import run_cli, run_train
from helpers.tagging import TINY_TAGGER, conll_overrides, make_sentence, tagging_corpus
from nlp_lstm.inference.export import viterbi

ort = pytest.importorskip("onnxruntime")


def inputs_from_tagger_json(meta, sentences, columns):
    """The graph's inputs built from tagger.json alone, as a runtime without Python's
    nlp_lstm would build them: ids by the vocabularies' order, unk and pad as it says,
    words lowercased where it says, characters padded to the batch's longest word."""
    vocab = meta["vocab"]
    index = {
        name: {item: i for i, item in enumerate(items)}
        for name, items in [("words", vocab["words"]), ("chars", vocab["chars"]), *vocab["features"].items()]
    }
    rows, length = len(sentences), max(map(len, sentences))
    longest = max(len(w) for s in sentences for w in s)
    arrays = {
        "words": np.full((rows, length), vocab["pad"], np.int64),
        "chars": np.full((rows, length, longest), vocab["pad"], np.int64),
        "lengths": np.array([len(s) for s in sentences], np.int64),
    }
    for name in meta["inputs"][3:]:
        arrays[name] = np.full((rows, length), vocab["pad"], np.int64)
    for b, words in enumerate(sentences):
        for t, word in enumerate(words):
            key = word.lower() if vocab["lowercase_words"] else word
            arrays["words"][b, t] = index["words"].get(key, vocab["unk"])
            arrays["chars"][b, t, : len(word)] = [index["chars"].get(c, vocab["unk"]) for c in word]
            for name in meta["inputs"][3:]:
                arrays[name][b, t] = index[name].get(columns[name][b][t], vocab["unk"])
    return [arrays[name] for name in meta["inputs"]]


# Every preset's kind: no input columns (conll2000_pos, ud_ewt_upos, wnut17_ner), a POS
# column (conll2000_chunk), GRU with character LSTM, a softmax head. An export takes 10-20 s:
# the default suite runs the two that between them cover LSTM and GRU, CRF and softmax, with
# and without a column; the other two are slow.
@pytest.mark.parametrize(
    "pos, extra",
    [
        pytest.param(False, ["model.cell=lstm"], marks=pytest.mark.slow),
        (True, ["model.cell=lstm"]),
        (False, ["model.cell=gru", "model.char_features=lstm", "model.head=softmax"]),
        pytest.param(True, ["model.cell=gru", "model.head=softmax"], marks=pytest.mark.slow),
    ],
    ids=["no-columns", "pos-column", "gru-charlstm-softmax", "gru-softmax-pos"],
)
def test_exported_tagger_matches_emissions_and_tags(tmp_path, pos, extra):
    import random

    corpus = tagging_corpus(tmp_path / "corpus")
    run_dir = tmp_path / "run"
    run_train(
        run_dir,
        conll_overrides(corpus, pos_feature=pos)
        + TINY_TAGGER
        + extra
        + ["trainer.max_epochs=2", "trainer.max_time=null", "logger.tensorboard=false"],
        tmp_path / "data",
    )
    out = tmp_path / "exported"
    proc = run_cli(["export", str(run_dir / "model"), str(out)], timeout=600)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((out / "tagger.json").read_text())
    assert meta["inputs"] == ["words", "chars", "lengths"] + (["pos"] if pos else [])
    assert not proc.stderr.count("\n") > 1  # one summary line: no exporter chatter
    import onnx

    graph = onnx.load(str(out / "model.onnx")).graph
    assert [d.dim_param or d.dim_value for d in graph.output[0].type.tensor_type.shape.dim] == [
        "batch",
        "time",
        len(meta["tags"]),
    ]
    tagger = nlp_lstm.load(run_dir / "model", device="cpu")
    session = ort.InferenceSession(str(out / "model.onnx"))
    rng = random.Random(11)
    rows = [make_sentence(rng) for _ in range(37)]  # another batch size and other lengths than the export's
    rows[0] = [("Zyzzyva", "NN", "B-NP"), ("qux", "VBZ", "B-VP")] + rows[0]  # unknown words and characters
    sentences = [[w for w, _, _ in row] for row in rows]
    columns = {"pos": [[p for _, p, _ in row] for row in rows]} if pos else {}
    inputs = inputs_from_tagger_json(meta, sentences, columns)
    emissions = session.run(None, dict(zip(meta["inputs"], inputs)))[0]
    from nlp_lstm.data.tagging_batch import collate

    with torch.no_grad():
        batch = collate([tagger._encode(s, {n: c[i] for n, c in columns.items()}) for i, s in enumerate(sentences)])
        expected = tagger.model(batch).numpy()
    lengths = inputs[2]
    for b, n in enumerate(lengths):
        np.testing.assert_allclose(emissions[b, :n], expected[b, :n], atol=1e-4, rtol=0)
    conll = "".join(
        "\n".join(" ".join([w, *(c[i][t] for c in columns.values())]) for t, w in enumerate(s)) + "\n\n"
        for i, s in enumerate(sentences)
    )
    tagged = run_cli(["tag", str(run_dir / "model"), "-", "--input", "conll", "--precision", "fp32"], stdin=conll)
    assert tagged.returncode == 0, tagged.stderr
    cli_tags = [
        [line.split("\t")[1] for line in block.split("\n")[1:]]  # after each "# line = N"
        for block in tagged.stdout.strip("\n").split("\n\n")
    ]
    exported_tags = [
        [meta["tags"][t] for t in viterbi(emissions[b], int(n), meta["crf"])] for b, n in enumerate(lengths)
    ]
    from nlp_lstm.data.tag_schemes import convert

    assert [convert(t, meta["scheme"], meta["corpus_scheme"]) for t in exported_tags] == cli_tags


def test_a_tagger_with_a_feature_lm_is_refused_in_one_line(tmp_path, trained_lm):
    corpus = tagging_corpus(tmp_path / "corpus")
    run_dir = tmp_path / "run"
    run_train(
        run_dir,
        conll_overrides(corpus)
        + TINY_TAGGER
        + [f"model.lm_features={trained_lm['run_dir'] / 'model'}", "trainer.max_steps=2", "logger.tensorboard=false"],
        tmp_path / "data",
    )
    proc = run_cli(["export", str(run_dir / "model"), str(tmp_path / "out")])
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "feature LM" in proc.stderr
    assert not (tmp_path / "out").exists()
