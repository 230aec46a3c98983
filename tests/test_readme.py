"""The README is the front door: its install and test commands are the ones CI runs."""

import re

from helpers.paths import ROOT


def _ci_commands():
    """{"install": command, "test": command}: each the line after a `# README: <name>` comment."""
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    return {
        re.sub(r"^# README: ", "", lines[i]): lines[i + 1].strip()
        for i in range(len(lines) - 1)
        if lines[i].startswith("# README: ")
    }


def test_ci_runs_the_readme_install_and_test_commands():
    readme = (ROOT / "README.md").read_text()
    commands = _ci_commands()
    assert set(commands) == {"install", "test"}
    for command in commands.values():
        assert f"\n{command}\n" in readme, command


def test_readme_names_every_preset():
    readme = (ROOT / "README.md").read_text()
    for preset in (ROOT / "conf" / "experiment").glob("*.yaml"):
        assert f"`{preset.stem}`" in readme, preset.stem
