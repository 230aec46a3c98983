"""`nlp-lstm export`: the ONNX graph run in onnxruntime gives the tagger's emissions (within
1e-4 absolute, float32 kernels of two runtimes) for batches and lengths other than the
export's, and decoding them with tagger.json gives exactly the tags `nlp-lstm tag` gives."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import nlp_lstm
from conftest import run_cli, run_train
from nlp_lstm.export import example_inputs, viterbi
from tagging_fixtures import TINY_TAGGER, conll_overrides, make_sentence, tagging_corpus

ort = pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("extra", [["model.cell=lstm"], ["model.cell=gru", "model.char_features=lstm",
                                                          "model.head=softmax"]])
def test_exported_tagger_matches_emissions_and_tags(tmp_path, extra):
    import random

    corpus = tagging_corpus(tmp_path / "corpus")
    run_dir = tmp_path / "run"
    run_train(run_dir, conll_overrides(corpus, pos_feature=True) + TINY_TAGGER + extra + [
        "trainer.max_epochs=2", "trainer.max_time=null", "logger.tensorboard=false"], tmp_path / "data")
    out = tmp_path / "exported"
    proc = run_cli(["export", str(run_dir / "model"), str(out)], timeout=600)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((out / "tagger.json").read_text())
    assert meta["inputs"] == ["words", "chars", "lengths", "pos"]
    assert not proc.stderr.count("\n") > 1  # one summary line: no exporter chatter
    import onnx

    graph = onnx.load(str(out / "model.onnx")).graph
    assert [d.dim_param or d.dim_value for d in graph.output[0].type.tensor_type.shape.dim] == \
        ["batch", "time", len(meta["tags"])]
    tagger = nlp_lstm.load(run_dir / "model", device="cpu")
    session = ort.InferenceSession(str(out / "model.onnx"))
    rng = random.Random(11)
    rows = [make_sentence(rng) for _ in range(37)]  # another batch size and other lengths than the export's
    sentences = [[w for w, _, _ in row] for row in rows]
    pos = [[p for _, p, _ in row] for row in rows]
    inputs = list(example_inputs(tagger, sentences))
    # the POS column, encoded as tagger.json says
    pos_ids = {p: i for i, p in enumerate(meta["vocab"]["features"]["pos"])}
    inputs[3] = torch.tensor([[pos_ids.get(p, 1) for p in row] + [0] * (inputs[0].size(1) - len(row)) for row in pos])
    emissions = session.run(None, {name: t.numpy() for name, t in zip(meta["inputs"], inputs)})[0]
    from nlp_lstm.data.tagging_corpus import collate

    with torch.no_grad():
        batch = collate([tagger._encode(s, {"pos": p}) for s, p in zip(sentences, pos)])
        expected = tagger.model(batch).numpy()
    lengths = inputs[2].numpy()
    for b, n in enumerate(lengths):
        np.testing.assert_allclose(emissions[b, :n], expected[b, :n], atol=1e-4, rtol=0)
    conll = "".join("\n".join(f"{w} {p}" for w, p in zip(s, ps)) + "\n\n" for s, ps in zip(sentences, pos))
    tagged = run_cli(["tag", str(run_dir / "model"), "-", "--input", "conll", "--precision", "fp32"], stdin=conll)
    assert tagged.returncode == 0, tagged.stderr
    cli_tags = [[line.split("\t")[1] for line in block.split("\n")] for block in tagged.stdout.strip("\n").split("\n\n")]
    exported_tags = [[meta["tags"][t] for t in viterbi(emissions[b], int(n), meta["crf"])] for b, n in enumerate(lengths)]
    from nlp_lstm.data.tag_schemes import convert

    assert [convert(t, meta["scheme"], meta["corpus_scheme"]) for t in exported_tags] == cli_tags


def test_a_tagger_with_a_feature_lm_is_refused_in_one_line(tmp_path, trained_lm):
    corpus = tagging_corpus(tmp_path / "corpus")
    run_dir = tmp_path / "run"
    run_train(run_dir, conll_overrides(corpus) + TINY_TAGGER + [
        f"model.lm_features={trained_lm['run_dir'] / 'model'}", "trainer.max_steps=2", "logger.tensorboard=false"],
        tmp_path / "data")
    proc = run_cli(["export", str(run_dir / "model"), str(tmp_path / "out")])
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "feature LM" in proc.stderr
    assert not (tmp_path / "out").exists()
