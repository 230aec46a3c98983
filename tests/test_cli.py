"""`nlp-lstm` subcommands on a model trained by the session fixture."""

import json

import pytest

from helpers.runs import run_cli


def test_generate_is_reproducible_with_a_seed(trained_lm):
    model = str(trained_lm["run_dir"] / "model")
    args = [
        "generate",
        model,
        "--prompt",
        "the old man",
        "--max-tokens",
        "15",
        "--seed",
        "4",
        "--top-k",
        "5",
        "--device",
        "cpu",
    ]
    first, second = run_cli(args), run_cli(args)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout and first.stdout.startswith("the old man")
    greedy = run_cli(["generate", model, "--prompt", "zzz unknown", "--temperature", "0", "--max-tokens", "5"])
    assert greedy.returncode == 0 and greedy.stdout.strip()


def test_score_file_and_stdin_agree(trained_lm, tmp_path):
    model = str(trained_lm["run_dir"] / "model")
    text = "the cat sat on the mat .\na dog found the bridge today .\n"
    (tmp_path / "t.txt").write_text(text)
    from_file = run_cli(["score", model, str(tmp_path / "t.txt")])
    from_stdin = run_cli(["score", model, "-"], stdin=text)
    assert from_file.returncode == 0, from_file.stderr
    a, b = json.loads(from_file.stdout), json.loads(from_stdin.stdout)
    assert a["tokens"] == b["tokens"] == 16 and a["ppl"] == b["ppl"]


def test_evaluate_matches_training_metrics(trained_lm):
    proc = run_cli(["evaluate", str(trained_lm["run_dir"] / "model"), "--split", "test", "--batch-size", "3"])
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    metrics = json.loads((trained_lm["run_dir"] / "metrics.json").read_text())
    assert result["tokens"] == metrics["test"]["tokens"]
    assert abs(result["ppl"] - metrics["test"]["ppl"]) < 1e-3 * metrics["test"]["ppl"]


def test_errors_are_one_line_and_non_zero(trained_lm, tmp_path):
    model = str(trained_lm["run_dir"] / "model")
    cases = [
        (["generate", str(tmp_path / "missing")], "no such model directory"),
        (["generate", str(tmp_path)], "not a model package (missing package.json"),
        (["score", model, str(tmp_path / "nope.txt")], "nope.txt: no such text file"),
    ]
    (tmp_path / "empty.txt").write_text("")
    cases.append((["score", model, str(tmp_path / "empty.txt")], "empty.txt: text file is empty"))
    for args, message in cases:
        proc = run_cli(args)
        assert proc.returncode == 2, args
        assert proc.stderr.strip().splitlines() == [f"error: {proc.stderr.strip()[7:]}"]
        assert message in proc.stderr
    bad_flag = run_cli(["generate", model, "--top-p", "1.5"])
    assert bad_flag.returncode == 2 and "--top-p" in bad_flag.stderr


def test_package_of_another_format_version_is_refused(trained_lm, tmp_path):
    import shutil

    package = tmp_path / "model"
    shutil.copytree(trained_lm["run_dir"] / "model", package)
    meta = json.loads((package / "package.json").read_text())
    meta["format_version"] = 99
    (package / "package.json").write_text(json.dumps(meta))
    proc = run_cli(["generate", str(package)])
    assert proc.returncode == 2 and "package format version 99" in proc.stderr


def test_data_commands(tmp_path):
    listing = run_cli(["data", "list"])
    assert listing.returncode == 0 and "wikitext2" in listing.stdout and "ptb" in listing.stdout
    unknown = run_cli(["data", "fetch", "nocorpus", "--data-dir", str(tmp_path)])
    assert unknown.returncode == 2 and "unknown corpus 'nocorpus'" in unknown.stderr


def test_score_streams_a_file_and_gives_score_lines_numbers(trained_lm, tmp_path):
    """`nlp-lstm score` encodes the file in chunks to a memory-mapped id file: the numbers
    are those of scoring the lines in memory; the progress bar is on stderr when asked."""
    import nlp_lstm
    from helpers.corpora import make_lines

    lines = make_lines(21_000, 12)  # more than one encoding chunk (20,000 lines)
    (tmp_path / "big.txt").write_text("\n".join(lines) + "\n")
    model = trained_lm["run_dir"] / "model"
    proc = run_cli(["score", str(model), str(tmp_path / "big.txt"), "--progress", "on"], timeout=600)
    assert proc.returncode == 0, proc.stderr
    streamed = json.loads(proc.stdout)
    in_memory = nlp_lstm.load(model, device="cpu").score_lines(lines)
    assert streamed["tokens"] == in_memory["tokens"]
    assert streamed["ppl"] == pytest.approx(in_memory["ppl"], rel=1e-9)
    assert streamed["loss"] == pytest.approx(in_memory["loss"], rel=1e-9)
    assert "tokens" in proc.stderr and "scoring" in proc.stderr
