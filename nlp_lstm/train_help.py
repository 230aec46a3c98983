"""`nlp-lstm-train --help`: the config groups, their options and the presets, read from the
config files themselves (Hydra's own help lists the schemas registered beside them too, such
as `model_schema`, which are not options a user picks)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Dict, List

from omegaconf import OmegaConf

USAGE = """\
Train a language model or a sequence tagger from the Hydra configs (python train.py is the same).

usage: nlp-lstm-train [GROUP=OPTION ...] [KEY=VALUE ...] [--config-dir DIR]

examples:
  nlp-lstm-train                                    the default word LM on WikiText-2, 10 minutes
  nlp-lstm-train experiment=conll2000_chunk         a preset (below)
  nlp-lstm-train task=tagging data=conll data.train=train.txt data.valid=dev.txt data.tag_column=3
  nlp-lstm-train data=text data.train=mine.txt      your own text: 10% held out as valid, no test split
  nlp-lstm-train trainer.max_time=3600 model.cell=gru
  nlp-lstm-train trainer.resume=true hydra.run.dir=RUN    continue an interrupted run
"""

FOOTER = """\
more:
  --cfg job            print the composed config (with your overrides) and exit
  --config-dir DIR     search DIR for your own configs too (DIR/experiment/mine.yaml -> experiment=mine)
  -m KEY=A,B           a sweep over the values (one run each); hparams_search=lm_optuna for Optuna
  --hydra-help         Hydra's own command-line flags
Every key of the composed config can be overridden; the README lists them by group."""


def description(path: Path) -> str:
    """A config file's header comment as one line (the caller clips it to the terminal)."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if not text.startswith("@package"):
            lines.append(text)
    return " ".join(lines)


def group_options(config_dir: Path) -> Dict[str, List[str]]:
    return {
        group.name: sorted(p.stem for p in group.glob("*.yaml"))
        for group in sorted(config_dir.iterdir())
        if group.is_dir() and any(group.glob("*.yaml"))
    }


def default_choices(config_dir: Path) -> Dict[str, str]:
    """group -> the option config.yaml picks (`${task}`: the task's own)."""
    choices = {}
    for entry in OmegaConf.to_container(OmegaConf.load(config_dir / "config.yaml")).get("defaults", []):
        if isinstance(entry, dict):
            ((group, option),) = entry.items()
            choices[group] = "the task's" if str(option) == "${task}" else str(option)
    return choices


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def help_text(config_dirs: List[Path]) -> str:
    width = max(80, min(shutil.get_terminal_size((100, 24)).columns, 140))
    options: Dict[str, List[str]] = {}
    presets: Dict[str, Path] = {}
    for config_dir in config_dirs:
        for group, names in group_options(config_dir).items():
            options.setdefault(group, [])
            options[group] += [n for n in names if n not in options[group]]
        for path in sorted((config_dir / "experiment").glob("*.yaml")):
            presets.setdefault(path.stem, path)
    choices = default_choices(config_dirs[0])
    out = [USAGE, "presets (experiment=NAME):"]
    name_width = max(len(n) for n in presets) + 2
    for name, path in sorted(presets.items()):
        out.append(_clip(f"  {name:<{name_width}}{description(path)}", width))
    out += ["", "config groups (GROUP=OPTION; [the default]):"]
    group_width = max(len(g) for g in options) + 3
    for group, names in options.items():
        if group == "experiment":
            continue
        default = choices.get(group)
        listed = ", ".join(f"[{n}]" if n == default else n for n in names)
        if default == "the task's":
            listed += "   [the task's: lm or tagging]"
        elif default in (None, "None", "null"):
            listed += "   [none]"
        out.append(f"  {group + ':':<{group_width}}{listed}")
    return "\n".join(out + ["", FOOTER])
