"""model.init_from: a run starts from a model package. An LM continues on new text with the
package's tokenizer and architecture; a tagger continues on new labelled data, keeping its
vocabularies and adding new words and tags with fresh rows. The result is again a package
that stands alone."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import nlp_lstm
from helpers.corpora import TINY_MODEL, make_lines, text_data_overrides, write_lines
from helpers.runs import run_train
from helpers.tagging import TINY_TAGGER, conll_overrides, tagging_corpus, untrained_package
from nlp_lstm.errors import ConfigError
from nlp_lstm.train_entry import build_task, compose_config


def new_text(directory):
    """Text in the same toy language plus words the package's tokenizer never saw."""
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, (n, seed) in {"train": (200, 7), "valid": (40, 8), "test": (40, 9)}.items():
        lines = [line + " zorblax quuxity" if line else line for line in make_lines(n, seed)]
        out[split] = write_lines(directory / f"{split}.txt", lines)
    return out


def test_an_lm_continues_on_new_text_with_its_tokenizer_and_weights(tmp_path, trained_lm):
    package = trained_lm["run_dir"] / "model"
    corpus = new_text(tmp_path / "new")
    # This run's model group says 2 x 32 GRU; the package's architecture wins.
    overrides = (
        text_data_overrides(corpus)
        + TINY_MODEL
        + [f"model.init_from={package}", "model.cell=gru", "model.hidden_size=32", "model.dropout_output=0.3"]
    )
    config = compose_config(overrides, tmp_path / "run")
    task = build_task(config, torch.device("cpu"))
    original = nlp_lstm.load(package, device="cpu")
    assert task.tokenizer.vocab.get_itos() == original.tokenizer.vocab.get_itos()
    assert task.tokenizer.encode_line("zorblax")[0] == original.tokenizer.unk_id  # unknown to the package
    assert config.model.cell == original.model.cfg.cell and config.model.hidden_size == original.model.cfg.hidden_size
    assert config.model.dropout_output == 0.3  # regularisation: this run's
    for name, tensor in original.model.state_dict().items():
        assert torch.equal(task.model.state_dict()[name], tensor), name
    # End to end: the new run's package is whole and scores the new text.
    run_dir = tmp_path / "run"
    run_train(run_dir, overrides + ["trainer.max_steps=5", "logger.tensorboard=false"], trained_lm["data_dir"])
    meta = json.loads((run_dir / "model" / "package.json").read_text())
    assert meta["configs"]["model"]["init_from"] == str(package)
    adapted = nlp_lstm.load(run_dir / "model", device="cpu")
    assert adapted.tokenizer.vocab.get_itos() == original.tokenizer.vocab.get_itos()
    changed = [n for n, t in original.model.state_dict().items() if not torch.equal(adapted.model.state_dict()[n], t)]
    assert changed  # it did train


def test_a_tagger_continues_on_new_data_with_new_words_and_new_tags(tmp_path):
    corpus = tagging_corpus(tmp_path / "corpus")
    first = tmp_path / "first"
    run_train(
        first,
        conll_overrides(corpus)
        + TINY_TAGGER
        + ["trainer.max_epochs=2", "trainer.max_time=null", "logger.tensorboard=false"],
        tmp_path / "data",
    )
    package = tmp_path / "package"
    shutil.copytree(first / "model", package)
    # New labelled data: a new word ("zeppelin") and a new chunk type (ADJP) never seen before.
    new = tmp_path / "new"
    new.mkdir()
    for split in ("train", "valid", "test"):
        text = corpus[split].read_text(encoding="utf-8").replace("\t", " ")
        text += "\nthe DT B-NP\nzeppelin NN I-NP\nseemed VBD B-VP\nvery RB B-ADJP\nhappy JJ I-ADJP\n. . O\n"
        (new / f"{split}.txt").write_text(text, encoding="utf-8")
    new_corpus = {s: new / f"{s}.txt" for s in ("train", "valid", "test")}
    overrides = conll_overrides(new_corpus) + TINY_TAGGER + [f"model.init_from={package}", "model.hidden_size=64"]
    config = compose_config(overrides, tmp_path / "second")
    task = build_task(config, torch.device("cpu"))
    old = nlp_lstm.load(package, device="cpu")
    old_words, old_tags = old.vocabs.words.get_itos(), old.vocabs.tags.get_itos()
    words, tags = task.vocabs.words.get_itos(), task.vocabs.tags.get_itos()
    assert words[: len(old_words)] == old_words and "zeppelin" in words[len(old_words) :]
    assert tags[: len(old_tags)] == old_tags and {"B-ADJP", "E-ADJP"} <= set(tags[len(old_tags) :])
    assert config.model.hidden_size == 16  # the package's
    state, old_state = task.model.state_dict(), old.model.state_dict()
    n_words, n_tags = len(old_words), len(old_tags)
    assert torch.equal(state["word_embedding.weight"][:n_words], old_state["word_embedding.weight"])
    assert torch.equal(state["emissions.weight"][:n_tags], old_state["emissions.weight"])
    assert torch.equal(state["crf.transitions"][:n_tags, :n_tags], old_state["crf.transitions"])
    # A new tag's transitions follow the scheme (IOBES): no E-ADJP straight after O.
    o, b_adjp, e_adjp = tags.index("O"), tags.index("B-ADJP"), tags.index("E-ADJP")
    assert not bool(task.model.crf.allowed[o, e_adjp]) and bool(task.model.crf.allowed[b_adjp, e_adjp])
    for name, tensor in old_state.items():
        if state[name].shape == tensor.shape:
            assert torch.equal(state[name], tensor), name
    # Trained and packaged: the package stands alone and predicts the new tag set.
    second = tmp_path / "second"
    run_train(
        second,
        overrides + ["trainer.max_epochs=1", "trainer.max_time=null", "logger.tensorboard=false"],
        tmp_path / "data",
    )
    shutil.rmtree(package)
    tagger = nlp_lstm.load(second / "model", device="cpu")
    assert "B-ADJP" in tagger.vocabs.tags.get_itos()
    assert len(tagger.tag(["the zeppelin seemed very happy ."])[0]) == 6
    meta = json.loads((second / "model" / "package.json").read_text())
    assert meta["info"]["init_from"]["path"] == str(package)


@pytest.mark.parametrize(
    "extra,message",
    [
        (["task=lm"], "a tagger package; task=lm needs a language model package"),
        (["model.word_vectors=whatever.txt"], "config model.word_vectors='whatever.txt': a run with model.init_from"),
    ],
)
def test_init_from_mismatches_are_one_line_errors(tmp_path, trained_lm, extra, message):
    corpus = tagging_corpus(tmp_path / "corpus")
    first = tmp_path / "first"
    run_train(
        first,
        conll_overrides(corpus) + TINY_TAGGER + ["trainer.max_steps=3", "logger.tensorboard=false"],
        tmp_path / "data",
    )
    if extra == ["task=lm"]:
        overrides = text_data_overrides(trained_lm["corpus"]) + TINY_MODEL + [f"model.init_from={first / 'model'}"]
    else:
        overrides = conll_overrides(corpus) + TINY_TAGGER + [f"model.init_from={first / 'model'}"] + extra
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_task(compose_config(overrides, tmp_path / "run"), torch.device("cpu"))
    proc = run_train(tmp_path / "run", overrides, tmp_path / "data", check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr


def test_a_tagger_with_mixed_feature_lm_layers_continues_without_repeating_the_key(tmp_path, text_corpus):
    lm = untrained_package(text_data_overrides(text_corpus) + TINY_MODEL, tmp_path / "lm_run", tmp_path / "lm")
    corpus = tagging_corpus(tmp_path / "corpus")
    package = untrained_package(
        conll_overrides(corpus) + TINY_TAGGER + [f"model.lm_features={lm}", "model.lm_features_layers=mix"],
        tmp_path / "first",
        tmp_path / "package",
    )
    config = compose_config(conll_overrides(corpus) + TINY_TAGGER + [f"model.init_from={package}"], tmp_path / "run")
    task = build_task(config, torch.device("cpu"))
    assert config.model.lm_features_layers == "mix" and task.model.lm_mix is not None
    original = nlp_lstm.load(package, device="cpu")
    for name, tensor in original.model.state_dict().items():
        assert torch.equal(task.model.state_dict()[name], tensor), name


def test_a_chained_tagger_continues_with_its_packaged_feature_tagger(tmp_path):
    corpus = tagging_corpus(tmp_path / "corpus")
    pos_overrides = [o for o in conll_overrides(corpus) if not o.startswith("data.tag_column")]
    pos = untrained_package(
        pos_overrides + ["data.tag_column=1", "data.tag_scheme=none"] + TINY_TAGGER,
        tmp_path / "pos_run",
        tmp_path / "pos",
    )
    chunker = conll_overrides(corpus, pos_feature=True) + TINY_TAGGER
    package = untrained_package(
        chunker + [f"+model.feature_taggers.pos={pos}"], tmp_path / "first", tmp_path / "package"
    )
    shutil.rmtree(pos)  # only the copy inside the package is left
    config = compose_config(chunker + [f"model.init_from={package}"], tmp_path / "run")
    task = build_task(config, torch.device("cpu"))
    assert set(task.feature_taggers) == {"pos"}
    task.export(tmp_path / "continued")
    continued = nlp_lstm.load(tmp_path / "continued", device="cpu")
    assert set(continued.feature_taggers) == {"pos"}
    assert len(continued.tag(["the cat saw Bob ."])[0]) == 5  # raw text: POS from the carried tagger


def test_every_model_key_is_either_carried_over_or_set_per_run():
    """What carries over is read from the package: every key it stores but those each run
    sets for itself (PER_RUN, listed in the README), so a new architecture key carries over
    without being named anywhere."""
    from dataclasses import asdict, fields

    from helpers.paths import ROOT
    from nlp_lstm.config import TaggerModelConfig
    from nlp_lstm.tasks.init_from import PER_RUN, merged_model_config

    keys = {f.name for f in fields(TaggerModelConfig)}
    assert set(PER_RUN) <= keys
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    paragraph = readme[readme.index("**Start from a trained package**") :].split("\n\n")[0]
    assert [k for k in PER_RUN if f"`{k}`" not in paragraph] == []
    package = asdict(
        TaggerModelConfig(
            emb_size=7,
            char_features="lstm",
            lm_features_layers="mix",
            head="softmax",
            lm_loss_weight=0.3,
            feature_taggers={"pos": "p"},
            word_dropout=0.2,
            dropout_input=0.4,
        )
    )
    merged = merged_model_config(TaggerModelConfig(), package)
    assert {k for k in keys if getattr(merged, k) != package[k]} == {"word_dropout", "dropout_input"}
