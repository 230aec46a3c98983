"""A run's config, composed with Hydra as `python train.py OVERRIDES` composes it (the same
files, the same schemas), and every composition problem as one line that names the key or
option and what would be right."""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import List

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from nlp_lstm.config import (
    Config,
    DataConfig,
    LMTaskConfig,
    LoggerConfig,
    ModelConfig,
    OptimConfig,
    TaggerModelConfig,
    TaggingDataConfig,
    TaggingTaskConfig,
    TokenizerConfig,
    TrainerConfig,
)
from nlp_lstm.errors import ConfigError, NlpLstmError


def find_config_dir() -> str:
    """The Hydra configs: the copy a wheel or sdist installs as `nlp_lstm/conf`, else the
    top-level conf/ of the source tree this package was imported from (a checkout, editable
    install or not), which is the one source both come from."""
    package = Path(__file__).resolve().parent  # nlp_lstm/
    for candidate in (package / "conf", package.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise NlpLstmError(
        f"no training configs found (looked for {package / 'conf'} and {package.parent / 'conf'}): "
        "reinstall nlp-lstm (pip install nlp-lstm, or pip install -e . in a checkout)"
    )


CONFIG_DIR = find_config_dir()


def compose(overrides: List[str], output_dir: os.PathLike) -> DictConfig:
    """The config that `python train.py OVERRIDES` would train, via Hydra's compose API
    (same files, same schemas), with `output_dir` as the run dir (Hydra's own
    `hydra.run.dir` only exists under `@hydra.main`); any composition problem is one
    ConfigError line."""
    register_configs()
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3", job_name="compose"):
            cfg = hydra_compose("config", overrides=list(overrides) + [f"paths.output_dir={output_dir}"])
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException, ValueError, TypeError) as exc:
        # (Hydra raises a bare ValueError for some bad overrides, e.g. `data=0`.)
        raise ConfigError(_composition_error(overrides, exc)) from None
    return cfg


def compose_config(overrides: List[str], output_dir: os.PathLike) -> Config:
    """compose(), validated: the dataclasses a run is built from."""
    return validate(compose(overrides, output_dir))


def _composition_error(overrides: List[str], exc: Exception) -> str:
    """One line for a composition failure, naming the key or option and what would be right:
    the key a misspelt one is close to, the options of a group, the type a value must have."""
    text, cause = str(exc), exc.__cause__
    key = getattr(cause, "full_key", None) or next(iter(re.findall(r"full_key: (\S+)", text)), None)
    value = next((o.split("=", 1)[1] for o in overrides if o.lstrip("+~").split("=", 1)[0] == key), None)
    if key and ("not in" in str(cause) or "Could not override" in text):  # a key the schema lacks
        parent, _, leaf = key.rpartition(".")
        fields = sorted(getattr(getattr(cause, "object_type", None), "__dataclass_fields__", {}))
        close = difflib.get_close_matches(leaf, fields, n=1)
        hint = (
            f"did you mean {parent + '.' if parent else ''}{close[0]}?"
            if close
            else f"known keys: {', '.join(fields)}"
            if fields
            # a map of your own entries (feature taggers, feature columns): Hydra adds a
            # new entry only with `+`
            else f"a new entry: add it with +{key}={value}"
            if value is not None and parent
            else "no such key"
        )
        return f"config {key}: no such key in {parent or 'the config'} ({hint})"
    if key and cause is not None and "could not be converted" in str(cause):  # a value of the wrong type
        wanted = re.search(r"converted to (\w+)", str(cause)).group(1)
        return (
            f"config {key}={value}: not a valid {wanted.lower()}"
            if value is not None
            else f"config {key}: {_first_line(cause)}"
        )
    missing = re.search(r"Could not find '([^'/]+)/([^']+)'", text)
    if missing:  # an option a group does not have
        group, option = missing.groups()
        options = [
            o.strip()
            for o in text.split(f"Available options in '{group}':", 1)[-1].split("Config search path")[0].split("\n")
            if o.strip() and not o.strip().endswith("_schema")
        ]
        close = difflib.get_close_matches(option, options, n=1)
        return (
            f"config {group}={option}: no such option ({'did you mean ' + close[0] + '? ' if close else ''}"
            f"options: {', '.join(options)})"
        )
    group_missing = re.search(r"Could not override '([^']+)'\.\s*No match in the defaults list", text)
    if group_missing:
        return f"config {group_missing.group(1)}: no such config group or key"
    where = re.match(r"In '([^']+)'", text)
    if key:
        reason = next((line.strip() for line in text.splitlines()[1:] if line.strip()), "invalid key")
        return f"config {key}: {reason}" + (f" (in {where.group(1)})" if where else "")
    named = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") in text] or overrides[:1] * (len(overrides) == 1)
    return f"config {' '.join(named) or 'overrides'}: {_first_line(exc)}"


def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def register_configs() -> None:
    """Register the schemas that conf/*.yaml extend (`defaults: [<group>_schema]`)."""
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    cs.store(group="task", name="lm_schema", node=LMTaskConfig)
    cs.store(group="task", name="tagging_schema", node=TaggingTaskConfig)
    cs.store(group="data", name="data_schema", node=DataConfig)
    cs.store(group="data", name="tagging_data_schema", node=TaggingDataConfig)
    cs.store(group="tokenizer", name="tokenizer_schema", node=TokenizerConfig)
    cs.store(group="model", name="model_schema", node=ModelConfig)
    cs.store(group="model", name="tagger_schema", node=TaggerModelConfig)
    cs.store(group="optim", name="optim_schema", node=OptimConfig)
    cs.store(group="trainer", name="trainer_schema", node=TrainerConfig)
    cs.store(group="logger", name="logger_schema", node=LoggerConfig)


def check_known_keys(node: DictConfig, prefix: str = "") -> None:
    """Every key of a schema-typed node must be one of its schema's fields.

    Struct mode already refuses a misspelt key set without `+`; a key added with `+`, `++`
    or by a user's own config file bypasses it (Hydra opens the node to add it) and
    `to_object` would drop it silently, training something other than what was asked.
    """
    schema = OmegaConf.get_type(node)
    fields = getattr(schema, "__dataclass_fields__", None)
    for key in node.keys():
        name = f"{prefix}{key}"
        if fields is not None and key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"did you mean {prefix}{close[0]}?" if close else f"known keys: {', '.join(sorted(fields))}"
            raise ConfigError(f"config {name}: no such key in {prefix.rstrip('.') or 'the config'} ({hint})")
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            check_known_keys(child, f"{name}.")


def validate(cfg: DictConfig) -> Config:
    """Build the dataclasses (running every `__post_init__` check) from a composed config."""
    check_known_keys(cfg)
    try:
        return OmegaConf.to_object(cfg)
    except OmegaConfBaseException as exc:
        # e.g. a MISSING value: name the key in one line.
        key = getattr(exc, "full_key", None) or "?"
        raise ConfigError(f"config {key}: {str(exc).splitlines()[0]}") from None
