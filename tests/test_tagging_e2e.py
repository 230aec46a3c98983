"""Tagging end to end through `python train.py task=tagging ...` on corpora the tests write."""

import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import nlp_lstm
from helpers.runs import run_cli, run_train
from helpers.tagging import TINY_TAGGER, conll_overrides, tagging_corpus
from nlp_lstm.training.checkpoint import load_checkpoint


def test_chunker_learns_and_reports_conlleval_metrics(trained_tagger):
    run_dir = trained_tagger["run_dir"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    for block in ("best_valid", "test"):
        assert {"acc", "precision", "recall", "f1", "strict_f1", "loss"} <= set(metrics[block])
    assert metrics["best_valid"]["f1"] > 90  # the toy grammar is easy
    assert metrics["train"]["sentences_per_sec"] > 0 and metrics["train"]["tokens_per_sec"] > 0
    # the predictions file is conlleval's format: word gold predicted
    lines = (run_dir / "predictions" / "test.conll").read_text().split("\n")
    assert lines[0].count(" ") == 2
    assert any(line.startswith("list B-LST ") for line in lines)  # the unseen label, scored as an error

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    assert {"train/loss", "valid/f1", "valid/acc", "train/lr", "train/sentences_per_sec"} <= scalars
    # per-type F1 is a bar chart per evaluation, not a curve per type; HParams holds the
    # headline numbers only (no one-point chart per type)
    assert not [t for t in scalars if t.startswith("valid/f1_")]
    assert {t for t in scalars if t.startswith("valid_best/")} == {
        "valid_best/f1",
        "valid_best/acc",
        "valid_best/loss",
        "valid_best/test_f1",
        "valid_best/test_acc",
        "valid_best/test_loss",
    }
    assert acc.Scalars("valid_best/test_f1")[0].value == pytest.approx(metrics["test"]["f1"])
    assert acc.Scalars("valid_best/f1")[0].value == pytest.approx(metrics["best_valid"]["f1"])
    # Time Series sorts groups by name and opens the first two: they must be the curves
    groups = sorted({t.split("/")[0] for t in scalars | set(acc.Tags()["images"])})
    assert groups[:2] == ["train", "valid"]
    assert acc.Tags()["histograms"] == []  # opt-in (logger.histogram_every_n_steps)
    from tensorboard.plugins.hparams import plugin_data_pb2

    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        acc.PluginTagToContent("hparams")["_hparams_/experiment"]
    ).experiment
    columns = {h.name for h in experiment.hparam_infos}
    assert {"model.hidden_size", "model.head", "model.char_features", "optim", "lr"} <= columns
    assert not columns & {"model.softmax", "model.tie_weights", "model.adaptive_cutoffs"}  # LM-only keys
    images = acc.Tags()["images"]
    assert {"valid_figures/confusion_matrix", "valid_figures/f1_per_type", "weights/crf_transitions"} <= set(images)
    # one figure per evaluation, decoded as a real PNG of a readable size (labels need room)
    assert len(acc.Images("valid_figures/f1_per_type")) == len(metrics["history"])
    figure = acc.Images("valid_figures/confusion_matrix")[-1]
    assert figure.encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n" and figure.width >= 400 and figure.height >= 400
    # the confusion table in TEXT: preformatted (indented), a row per gold tag, counts that add up
    table = acc.Tensors("valid/confusion_matrix/text_summary")[-1].tensor_proto.string_val[0].decode()
    rows = [line.split() for line in table.split("\n")[2:]]
    labels = table.split("\n")[0].split()[3:]
    assert table.startswith("    gold \\ predicted") and [r[0] for r in rows] == labels
    assert sum(int(c) for r in rows for c in r[1:]) == sum(
        len(s.split("\n")) for s in trained_tagger["corpus"]["valid"].read_text().strip().split("\n\n")
    )


def test_loaded_tagger_api(trained_tagger):
    tagger = nlp_lstm.load(trained_tagger["run_dir"] / "model", device="cpu")
    result = tagger.tag(["the old cat saw a dog .", ["Alice", "likes", "Bob", "."]])
    assert [t["token"] for t in result[0]] == ["the", "old", "cat", "saw", "a", "dog", "."]
    assert [t["tag"] for t in result[0]] == ["B-NP", "I-NP", "I-NP", "B-VP", "B-NP", "I-NP", "O"]
    assert result[0][2]["start"] == 8 and result[0][2]["end"] == 11
    assert result[1][0]["start"] is None
    best = tagger.nbest(["the", "cat", "saw", "Bob"], 3)
    assert len(best) == 3 and best[0][1] >= best[1][1] >= best[2][1]
    assert best[0][0] == [t["tag"] for t in tagger.tag([["the", "cat", "saw", "Bob"]])[0]]  # 1-best = Viterbi
    marginals = tagger.marginals(["the", "cat"])
    assert len(marginals) == 2 and sum(marginals[0].values()) == pytest.approx(1.0, abs=1e-4)
    long_sentence = ["the", "cat"] * 500
    assert len(tagger.tag([long_sentence])[0]) == 1000  # never dropped or truncated


def test_tag_cli_formats(trained_tagger):
    model = str(trained_tagger["run_dir"] / "model")
    conll = run_cli(["tag", model, "--format", "conll"], stdin="The cat sat on the mat .\n")
    assert conll.returncode == 0, conll.stderr
    lines = conll.stdout.strip().split("\n")
    assert lines[0] == "# line = 1"  # which input line the sentence came from
    assert [line.split("\t")[0] for line in lines[1:]] == ["The", "cat", "sat", "on", "the", "mat", "."]
    jsonl = run_cli(["tag", model, "--format", "jsonl", "--nbest", "2", "--marginals"], stdin="a dog found Paris .\n")
    record = json.loads(jsonl.stdout)
    assert record["tokens"][1] == {"token": "dog", "tag": record["tokens"][1]["tag"], "start": 2, "end": 5}
    assert len(record["nbest"]) == 2 and len(record["marginals"]) == 5
    text = run_cli(["tag", model, str(trained_tagger["corpus"]["valid"]), "--format", "text", "--input", "conll"])
    assert text.returncode == 0, text.stderr
    assert text.stdout.split("\n")[0].split(" ")[0] in (
        "the/B-NP",
        "a/B-NP",
        "this/B-NP",
        "every/B-NP",
        "Paris/B-NP",
        "London/B-NP",
        "Alice/B-NP",
        "Bob/B-NP",
        "Google/B-NP",
    )
    bad = run_cli(["tag", model, "--nbest", "2"], stdin="a dog\n")
    assert bad.returncode == 2 and "--format jsonl" in bad.stderr


def test_evaluate_cli_matches_training(trained_tagger, tmp_path):
    model = str(trained_tagger["run_dir"] / "model")
    proc = run_cli(["evaluate", model, "--split", "test", "--predictions", str(tmp_path / "p.conll")])
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    metrics = json.loads((trained_tagger["run_dir"] / "metrics.json").read_text())
    assert result["f1"] == pytest.approx(metrics["test"]["f1"])
    assert (tmp_path / "p.conll").read_text() == (trained_tagger["run_dir"] / "predictions" / "test.conll").read_text()


def test_feature_columns_are_read_from_conll_input(tmp_path):
    corpus = tagging_corpus(tmp_path / "corpus")
    run_dir = tmp_path / "run"
    run_train(
        run_dir,
        conll_overrides(corpus, pos_feature=True)
        + TINY_TAGGER
        + ["trainer.max_epochs=2", "trainer.max_time=null", "logger.tensorboard=false"],
        tmp_path / "data",
    )
    model = str(run_dir / "model")
    raw = run_cli(["tag", model], stdin="the cat saw Bob .\n")
    assert raw.returncode == 2
    assert raw.stderr.strip().splitlines() == [
        "input: stdin read as text (lines of running text, not columns); pass --input to choose",
        "error: this model also reads input column(s) pos (data.feature_columns={'pos': 1}): give CoNLL input that "
        "has them",
    ]
    conll = run_cli(["tag", model, "-", "--input", "conll"], stdin="the DT\ncat NN\nsaw VBD\n\nBob NNP\n")
    assert conll.returncode == 0, conll.stderr
    assert [line.split("\t")[0] for line in conll.stdout.split("\n") if line and not line.startswith("# line = ")] == [
        "the",
        "cat",
        "saw",
        "Bob",
    ]
    assert [line for line in conll.stdout.split("\n") if line.startswith("#")] == ["# line = 1", "# line = 5"]
    short = run_cli(["tag", model, "-", "--input", "conll"], stdin="the\n")
    assert short.returncode == 2 and "stdin:1: 1 column(s); the model reads columns {'pos': 1}" in short.stderr
    evaluated = run_cli(["evaluate", model, "--split", "test"])
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["f1"] == pytest.approx(
        json.loads((run_dir / "metrics.json").read_text())["test"]["f1"]
    )


def test_pos_tagging_from_conllu_with_softmax_head(tmp_path):
    from test_conll_readers import CONLLU

    files = {}
    for split in ("train", "dev", "test"):
        files[split] = tmp_path / f"{split}.conllu"
        files[split].write_text(CONLLU * 20, encoding="utf-8")
    run_dir = tmp_path / "run"
    run_train(
        run_dir,
        [
            "task=tagging",
            "data=conllu",
            f"data.train={files['train']}",
            f"data.valid={files['dev']}",
            f"data.test={files['test']}",
            "model.head=softmax",
            "trainer.max_epochs=3",
            "trainer.max_time=null",
            *TINY_TAGGER,
        ],
        tmp_path / "data",
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert "acc" in metrics["test"] and "f1" not in metrics["test"]
    # Any labelled CoNLL-U file scores as training did; the report is a table plus JSON.
    proc = run_cli(
        [
            "evaluate",
            str(run_dir / "model"),
            str(files["test"]),
            "--input",
            "conllu",
            "--json",
            str(tmp_path / "report.json"),
        ]
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["acc"] == pytest.approx(metrics["test"]["acc"])
    assert (
        set(report["per_tag"]) >= {"AUX", "PUNCT"}
        and len(report["confusion"]["matrix"]) == len(report["confusion"]["labels"]) + 1
    )
    assert proc.stdout.startswith(f"{files['test']}: ") and "precision  recall      F1  support" in proc.stdout


def test_tag_scheme_mismatch_is_a_one_line_error(tmp_path):
    corpus = tagging_corpus(tmp_path / "corpus")
    corpus["train"].write_text("a DT S-NP\n", encoding="utf-8")
    proc = run_train(tmp_path / "run", conll_overrides(corpus) + TINY_TAGGER, tmp_path / "data", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {corpus['train']}:1: tag 'S-NP' (token 1) does not fit data.tag_scheme=iob2"
    )


def test_no_dev_split_holds_out_part_of_train(tmp_path):
    corpus = tagging_corpus(tmp_path / "corpus")
    run_dir = tmp_path / "run"
    overrides = [o for o in conll_overrides(corpus) if not o.startswith("data.valid")]
    run_train(run_dir, overrides + TINY_TAGGER + ["trainer.max_steps=3"], tmp_path / "data")
    log = (run_dir / "train.log").read_text()
    assert "30 train sentences (data.dev_fraction=0.1, seed 12345) are held out as valid" in log


def test_tagging_resume_is_exact(tmp_path):
    from helpers.resume import straight_and_split

    corpus = tagging_corpus(tmp_path / "corpus")
    common = (
        conll_overrides(corpus)
        + TINY_TAGGER
        + ["trainer.max_epochs=null", "trainer.max_time=null", "logger.tensorboard=false", "optim.schedule=none"]
    )
    a = straight_and_split(tmp_path, common, total=30, first=12)  # weights and state equal, bitwise
    assert a["trainer"]["epoch"] >= 1


def test_tagger_with_frozen_bidirectional_lm_features(tmp_path):
    """ELMo-style: a bidirectional word LM of this project feeds the tagger; the LM is
    frozen, and copied into the tagger's package so the package stands alone."""
    import shutil

    import torch

    from helpers.corpora import TINY_MODEL, text_data_overrides
    from nlp_lstm.data.conll import read_conll

    corpus = tagging_corpus(tmp_path / "corpus")
    text = {}
    for split in ("train", "valid", "test"):
        text[split] = tmp_path / f"{split}.lm.txt"
        text[split].write_text("\n".join(" ".join(s.words) for s in read_conll(corpus[split], 0, 2)) + "\n")
    lm_run = tmp_path / "lm"
    run_train(
        lm_run,
        text_data_overrides(text)
        + TINY_MODEL
        + ["model.bidirectional=true", "trainer.max_steps=10", "logger.tensorboard=false"],
        tmp_path / "data",
    )
    lm_package = tmp_path / "lm_package"
    shutil.copytree(lm_run / "model", lm_package)
    run_dir = tmp_path / "tagger"
    run_train(
        run_dir,
        conll_overrides(corpus)
        + TINY_TAGGER
        + [
            f"model.lm_features={lm_package}",
            "trainer.max_epochs=2",
            "trainer.max_time=null",
            "logger.tensorboard=false",
        ],
        tmp_path / "data",
    )
    lm_weights = torch.load(lm_package / "weights.pt", weights_only=True)
    tagger_weights = torch.load(run_dir / "model" / "weights.pt", weights_only=True)
    for name, tensor in lm_weights.items():
        assert torch.equal(tagger_weights[f"lm.{name}"], tensor), name  # frozen
    shutil.rmtree(lm_package)
    tagger = nlp_lstm.load(run_dir / "model", device="cpu")
    assert len(tagger.tag(["the cat saw Bob ."])[0]) == 5
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"]["f1"] > 0


def test_lm_features_need_a_word_lm(tmp_path):
    corpus = tagging_corpus(tmp_path / "corpus")
    proc = run_train(
        tmp_path / "run",
        conll_overrides(corpus) + TINY_TAGGER + [f"model.lm_features={tmp_path / 'nothing'}"],
        tmp_path / "data",
        check=False,
    )
    assert proc.returncode == 2
    assert f"config model.lm_features='{tmp_path / 'nothing'}': " in proc.stderr
    assert "no such model directory" in proc.stderr


def test_tagger_trained_with_language_modelling_cost(tmp_path):
    corpus = tagging_corpus(tmp_path / "corpus")
    run_dir = tmp_path / "run"
    run_train(
        run_dir,
        conll_overrides(corpus)
        + TINY_TAGGER
        + ["model.lm_loss_weight=0.1", "model.lm_loss_vocab=20", "trainer.max_epochs=6", "trainer.max_time=null"],
        tmp_path / "data",
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["best_valid"]["f1"] > 90
    # the checkpoint keeps the auxiliary heads (to resume); the package leaves them out
    assert any(k.startswith("neighbour_words.") for k in load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"])
    tagger = nlp_lstm.load(run_dir / "model", device="cpu")
    assert tagger.model.neighbour_words is None
    assert [t["tag"] for t in tagger.tag(["the old cat saw a dog ."])[0]] == [
        "B-NP",
        "I-NP",
        "I-NP",
        "B-VP",
        "B-NP",
        "I-NP",
        "O",
    ]


def test_a_loaded_tagger_and_lm_say_what_they_are(trained_tagger, trained_lm):
    tagger = nlp_lstm.load(trained_tagger["run_dir"] / "model", device="cpu")
    shown = repr(tagger)
    assert shown.startswith(f"Tagger({len(tagger.labels)} labels in iob2 [O, B-")
    assert "crf head" in shown and f"{len(tagger.vocabs.words):,} words" in shown
    assert "inputs: words, characters (cnn)" in shown and "fp32 on cpu" in shown
    assert f"{sum(p.numel() for p in tagger.model.parameters()):,} parameters" in shown
    lm = nlp_lstm.load(trained_lm["run_dir"] / "model", device="cpu")
    assert repr(lm).startswith("LanguageModel(2 x 24 LSTM, word vocabulary of ")
    assert f"{lm.tokenizer.vocab_size:,}" in repr(lm)
