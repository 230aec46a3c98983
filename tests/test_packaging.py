"""nlp_lstm as a stranger installs it: a wheel (or an sdist) in a fresh virtual environment,
run from a directory that holds nothing of the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest
import tomllib
from setuptools import find_packages

from helpers.corpora import TINY_MODEL, make_lines, write_lines
from helpers.paths import ROOT

SOURCE = ["pyproject.toml", "README.md", "nlp_lstm", "conf"]


def _source_copy(tmp_path: Path) -> Path:
    """The files a build reads, copied, so building leaves no build/ or egg-info behind in
    the checkout."""
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCE:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(ROOT / name, src / name)
    return src


def _build(what: str, source: Path, out: Path) -> Path:
    """A wheel (`pip wheel`) or an sdist (setuptools' build_meta, as `python -m build` calls it)."""
    out.mkdir()
    if what == "wheel":
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "-q",
                "--no-deps",
                "--no-build-isolation",
                "-w",
                str(out),
                str(source),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    else:
        subprocess.run(
            [sys.executable, "-c", f"from setuptools import build_meta as b; b.build_sdist({str(out)!r})"],
            cwd=source,
            check=True,
            capture_output=True,
            text=True,
        )
    (built,) = out.iterdir()
    return built


def _fresh_venv(tmp_path: Path, package: Path) -> Path:
    """A new virtual environment with `package` installed in it. Its dependencies (torch,
    Hydra, ...) are reached through a .pth line to this interpreter's site-packages, which
    adds the folder only: this checkout's editable install is not active there."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            str(package),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(purelib, "outer-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def _run(venv: Path, args, cwd: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NLP_LSTM_DATA_DIR")}
    return subprocess.run(
        [str(venv / "bin" / args[0]), *args[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_the_package_list_names_every_subpackage():
    """pyproject lists the packages (find cannot also map conf/): a new subpackage missing
    from the list would be missing from every wheel."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set(find_packages(str(ROOT), include=["nlp_lstm*"]))
    assert listed == found | {"nlp_lstm.conf"}


def test_a_wheel_in_a_fresh_venv_trains_from_an_empty_directory(tmp_path):
    wheel = _build("wheel", _source_copy(tmp_path), tmp_path / "dist")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {n.removeprefix("nlp_lstm/conf/") for n in names if n.startswith("nlp_lstm/conf/")}
    assert shipped == {str(p.relative_to(ROOT / "conf")) for p in (ROOT / "conf").rglob("*.yaml")}
    venv = _fresh_venv(tmp_path, wheel)
    work = tmp_path / "anywhere"
    work.mkdir()

    where = _run(venv, ["python", "-c", "import nlp_lstm; print(nlp_lstm.__file__)"], work)
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout

    helped = _run(venv, ["nlp-lstm-train", "--help"], work)
    assert helped.returncode == 0, helped.stderr
    assert "conll2000_chunk" in helped.stdout and "tokenizer:" in helped.stdout
    assert "schema" not in helped.stdout and "Traceback" not in helped.stderr

    cli = _run(venv, ["python", "-m", "nlp_lstm", "--help"], work)
    assert cli.returncode == 0 and "tag" in cli.stdout and "score" in cli.stdout, cli.stderr

    corpus = {
        split: write_lines(work / f"{split}.txt", make_lines(120, seed))
        for seed, split in enumerate(["train", "valid", "test"], start=1)
    }
    trained = _run(
        venv,
        [
            "nlp-lstm-train",
            "data=text",
            *(f"data.{s}={p.name}" for s, p in corpus.items()),
            *TINY_MODEL,
            "trainer.max_epochs=1",
            "trainer.max_time=null",
            "hydra.run.dir=run",
        ],
        work,
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert (work / "run" / "model" / "package.json").is_file()
    assert (work / "run" / "metrics.json").is_file()


def test_an_sdist_carries_the_configs_and_installs_them(tmp_path):
    sdist = _build("sdist", _source_copy(tmp_path), tmp_path / "dist")
    with tarfile.open(sdist) as tar:
        members = tar.getnames()
    assert any(m.endswith("/conf/config.yaml") for m in members)
    assert any(m.endswith("/conf/experiment/conll2000_chunk.yaml") for m in members)
    # pip builds an sdist into a wheel before installing it; done here with this
    # interpreter's setuptools, the fresh venv having none.
    venv = _fresh_venv(tmp_path, _build("wheel", sdist, tmp_path / "from-sdist"))
    work = tmp_path / "anywhere"
    work.mkdir()
    composed = _run(venv, ["nlp-lstm-train", "experiment=conll2000_chunk", "--cfg", "job"], work)
    assert composed.returncode == 0, composed.stderr[-2000:]
    assert "conll2000" in composed.stdout


@pytest.mark.parametrize("argv", [["--help"], ["-h"], ["experiment=wt2_small", "--help"]])
def test_train_help_lists_groups_options_and_presets_not_schemas(argv, capsys, monkeypatch):
    from nlp_lstm import train_entry

    monkeypatch.setattr(sys, "argv", ["nlp-lstm-train", *argv])
    train_entry.main()
    out = capsys.readouterr().out
    for preset in (ROOT / "conf" / "experiment").glob("*.yaml"):
        assert f"  {preset.stem} " in out
    for group in ("data", "model", "optim", "tokenizer", "trainer", "task", "logger"):
        assert f"\n  {group}:" in out
    assert "bilstm_crf" in out and "[word]" in out and "[tensorboard]" in out
    assert "_schema" not in out


def test_train_help_lists_a_users_own_config_dir(tmp_path, capsys, monkeypatch):
    from nlp_lstm import train_entry

    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "mine.yaml").write_text("# @package _global_\n# My own chunker.\nseed: 3\n")
    monkeypatch.setattr(sys, "argv", ["nlp-lstm-train", "--config-dir", str(tmp_path), "--help"])
    train_entry.main()
    out = capsys.readouterr().out
    assert "  mine" in out and "My own chunker." in out
