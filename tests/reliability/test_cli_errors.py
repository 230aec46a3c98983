"""Every CLI command with a missing file, an empty file, a wrong model dir or a bad flag:
a non-zero exit and exactly one line on stderr that names the problem."""

import pytest

from helpers.runs import run_cli


def _assert_one_line_error(proc, *needles):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    (d / "empty.txt").write_text("")
    (d / "blank.txt").write_text("\n \n")
    (d / "latin1.txt").write_bytes(b"caf\xe9 au lait\n")
    (d / "not_a_package").mkdir()
    return d


def test_every_command_refuses_a_missing_or_wrong_model_dir(files):
    text = str(files / "blank.txt")
    for model, needle in (
        (str(files / "nowhere"), "no such model directory"),
        (str(files / "not_a_package"), "missing package.json"),
    ):
        for args in (["generate", model], ["score", model, text], ["evaluate", model], ["tag", model, "-"]):
            _assert_one_line_error(run_cli(args, stdin="The cat .\n"), model, needle)


def test_lm_commands_refuse_missing_empty_and_undecodable_files(trained_lm, files):
    model = str(trained_lm["run_dir"] / "model")
    for name, needle in (
        ("nope.txt", "no such text file"),
        ("empty.txt", "is empty"),
        ("blank.txt", "is empty"),
        ("latin1.txt", "latin1.txt:1: not valid UTF-8 (byte 0xe9)"),
    ):
        _assert_one_line_error(run_cli(["score", model, str(files / name)]), name, needle)


def test_a_language_model_is_not_a_tagger_and_a_missing_split_is_named(trained_lm, files):
    model = str(trained_lm["run_dir"] / "model")
    # a real `python -m nlp_lstm.cli` with stdin from a pipe: the exit status the OS sees
    _assert_one_line_error(run_cli(["tag", model, "-"], stdin="The cat .\n", process=True), model, "not a tagger")


@pytest.mark.parametrize(
    "args, needle",
    [
        (["generate"], "the following arguments are required: model"),
        (["generate", "M", "--top-p", "1.5"], "--top-p"),
        (["generate", "M", "--max-tokens", "0"], "--max-tokens"),
        (["generate", "M", "--temperature", "-1"], "--temperature"),
        (["score", "M", "F", "--batch-size", "zero"], "--batch-size"),
        (["tag", "M", "--format", "xml"], "--format"),
        (["evaluate", "M", "--split", "dev"], "--split"),
        (["bench", "--steps", "0"], "--steps"),
        (["data", "fetch"], "name"),
        (["frobnicate"], "frobnicate"),
        ([], "command"),
    ],
)
def test_bad_flags_are_one_line(args, needle):
    _assert_one_line_error(run_cli(args), needle)


def test_data_commands_name_an_unknown_corpus(tmp_path):
    for sub in ("fetch", "stats"):
        _assert_one_line_error(run_cli(["data", sub, "no_such_corpus", "--data-dir", str(tmp_path)]), "no_such_corpus")


def test_bench_with_a_bad_override_is_one_line():
    _assert_one_line_error(run_cli(["bench", "model.hidden_size=0", "--steps", "1"]), "model.hidden_size")


def test_an_edited_or_mixed_up_package_is_one_line(trained_lm, tmp_path):
    import json
    import shutil

    import torch

    source = trained_lm["run_dir"] / "model"
    no_configs, other_weights = tmp_path / "no_configs", tmp_path / "other_weights"
    shutil.copytree(source, no_configs)
    meta = json.loads((no_configs / "package.json").read_text())
    del meta["configs"]
    (no_configs / "package.json").write_text(json.dumps(meta))
    shutil.copytree(source, other_weights)
    weights = torch.load(other_weights / "weights.pt", weights_only=True)
    torch.save({k: v[:1] if v.dim() else v for k, v in weights.items()}, other_weights / "weights.pt")
    for model in (no_configs, other_weights):
        _assert_one_line_error(run_cli(["generate", str(model)]), str(model), "do not describe one model")


def test_evaluate_refuses_a_file_and_a_split_together(files, capsys):
    """`evaluate MODEL FILE --split test` used to score FILE and ignore --split."""
    from nlp_lstm.cli import main

    assert main(["evaluate", str(files / "nowhere"), str(files / "blank.txt"), "--split", "valid"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: evaluate: --split valid names a split")
    assert "give one of them" in lines[0]
