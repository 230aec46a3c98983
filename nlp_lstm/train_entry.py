"""The training entry point behind both `python train.py` and `nlp-lstm-train`."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from nlp_lstm.compose import CONFIG_DIR, compose, compose_config, register_configs, validate
from nlp_lstm.config import Config, TaggerModelConfig, TaggingDataConfig
from nlp_lstm.device import resolve_device
from nlp_lstm.errors import ConfigError, NlpLstmError
from nlp_lstm.fileio import check_writable_dir
from nlp_lstm.inference import load
from nlp_lstm.tasks.language_modeling import LanguageModelingTask
from nlp_lstm.tasks.tagging import TaggingTask
from nlp_lstm.train_help import help_text
from nlp_lstm.training.checkpoint import (
    check_same_run,
    mark_run_started,
    read_run_marker,
    read_run_overrides,
    run_started,
)
from nlp_lstm.training.distributed import SINGLE, DistInfo, broadcast_object, init_from_env, rank_device, shutdown
from nlp_lstm.training.precision_choice import training_precision
from nlp_lstm.training.trainer import Trainer, TrainingInterrupted

log = logging.getLogger("nlp_lstm")


def configure_torch(cfg: Config) -> None:
    # torch's default is one intra-op thread per physical core, which suits RNN training
    # (hyper-threads share a core's matrix units); trainer.num_threads overrides it.
    if cfg.trainer.num_threads is not None:
        torch.set_num_threads(cfg.trainer.num_threads)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    if cfg.trainer.deterministic:
        make_deterministic()


def make_deterministic() -> None:
    """trainer.deterministic: the same run twice gives the same weights. On CPU every op
    this project calls is bitwise repeatable. On CUDA: cuBLAS with a fixed workspace (read
    when its first handle is made, so set here, before any CUDA work), cuDNN's
    deterministic algorithms, and PyTorch's deterministic implementations of scatter/
    index/embedding backward; an op with none warns once instead of failing the run."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def task_class(task_name: str):
    return LanguageModelingTask if task_name == "lm" else TaggingTask


def build_task(cfg: Config, device: torch.device, dist: DistInfo = SINGLE):
    """The task object for `task.name`, after checking the groups fit together."""
    is_tagger, is_tagging_data = isinstance(cfg.model, TaggerModelConfig), isinstance(cfg.data, TaggingDataConfig)
    if cfg.task.name == "lm":
        if is_tagging_data:
            raise NlpLstmError(f"config data={cfg.data.name}: a tagging corpus; task=lm needs a text corpus")
        if is_tagger:
            raise NlpLstmError(
                "config model: a tagger model; task=lm needs a language model (model=small, medium, awd)"
            )
    else:
        if not is_tagger:
            raise NlpLstmError("config model: task=tagging needs a tagger model (model=bilstm_crf)")
        if not is_tagging_data:
            raise NlpLstmError(
                f"config data={cfg.data.name}: task=tagging needs a tagging corpus "
                "(conll2000, ud_ewt, wnut17, conll, conllu)"
            )
    return task_class(cfg.task.name)(cfg, device, dist=dist)


def run(cfg: DictConfig, overrides: Optional[List[str]] = None) -> Dict[str, Any]:
    """Validate, build, train; returns the final metrics. `overrides`: the command line's,
    kept in the run dir so that a bare `trainer.resume=true hydra.run.dir=RUN` resumes it."""
    config = validate(cfg)
    dist = init_from_env(config.trainer.device)
    try:
        # Under torchrun every rank composes its own config; rank 0's run dir is the run's.
        run_dir = Path(broadcast_object(config.paths.output_dir, dist))
        run_config = OmegaConf.to_container(cfg, resolve=True)
        run_config["paths"]["output_dir"] = str(run_dir)
        if dist.is_main:
            check_writable_dir(run_dir, "run dir")
            check_writable_dir(config.paths.data_dir, "data dir (paths.data_dir)")
            check_run_dir(run_dir, config.trainer.resume, run_config)
            if not config.trainer.resume:
                mark_run_started(run_dir, run_config, overrides)
        configure_torch(config)
        device = resolve_device(rank_device(config.trainer.device, dist), "config trainer.device")
        task = build_task(config, device, dist)
        if config.trainer.precision == "auto":  # timed on the model (speed_choices logs the answer)
            config.trainer.precision = training_precision(task, device, dist)
        if dist.enabled:  # same initial weights everywhere (DDP broadcasts them); own dropout masks per rank
            torch.manual_seed(config.seed + dist.rank)

        trainer = Trainer(config, task, run_dir, device, run_config=run_config, dist=dist)
        return trainer.fit()
    finally:
        shutdown(dist)


def check_run_dir(run_dir: Path, resume: bool, run_config: Dict[str, Any]) -> None:
    """Before any data is read: a new run never overwrites one that a dir already holds, and a
    resumed one trains what it started with."""
    if not resume and run_started(run_dir):
        raise ConfigError(
            f"run dir {run_dir} already holds a run: continue it with trainer.resume=true "
            f"hydra.run.dir={run_dir}, or start over in another hydra.run.dir (or delete that dir)"
        )
    if resume and run_started(run_dir):
        check_same_run(read_run_marker(run_dir), run_config)


def _override_key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


def _resume_request(argv: List[str]) -> Optional[Path]:
    """The run dir of `trainer.resume=true hydra.run.dir=RUN`, else None."""
    values = {_override_key(a): a.split("=", 1)[1] for a in argv if "=" in a and not a.startswith("-")}
    if values.get("trainer.resume", "").lower() != "true" or "hydra.run.dir" not in values:
        return None
    return Path(values["hydra.run.dir"])


def with_saved_overrides(argv: List[str], run_dir: Optional[Path] = None) -> List[str]:
    """A resume's command line: the run's own overrides (kept in its run marker), then the
    ones given now, which win. That a given one may change (budgets, logging) is checked
    against the run's config once composed, before any data is read. `run_dir`: the run dir
    when the command line does not name it (the Python API)."""
    if run_dir is not None and _resume_request([*argv, f"hydra.run.dir={run_dir}"]) is None:
        return argv
    run_dir = run_dir if run_dir is not None else _resume_request(argv)
    if run_dir is None or not run_started(run_dir):
        return argv
    saved = read_run_overrides(run_dir)
    if saved is None:  # a run from before overrides were kept: the command line must repeat them
        return argv
    given = {_override_key(a) for a in argv if "=" in a and not a.startswith("-")}
    kept = [o for o in saved if _override_key(o) not in given]
    if kept:
        log.info(f"resuming {run_dir} with its own overrides: {' '.join(kept)}")
    return kept + argv


@dataclass
class TrainResult:
    """What `nlp_lstm.train` returns: the run dir, its `metrics.json`, the objective a sweep
    would read, and the trained model package (loaded on first use)."""

    run_dir: Path
    metrics: Dict[str, Any]
    objective: Dict[str, Any]
    device: str = "auto"
    _model: Any = field(default=None, repr=False)

    @property
    def model(self):
        if self._model is None:
            self._model = load(self.run_dir / "model", self.device)
        return self._model


def train(overrides: Sequence[str] = (), run_dir: Optional[os.PathLike] = None) -> TrainResult:
    """Train as `python train.py OVERRIDES` would (the same groups, presets and checks), from
    Python: into `run_dir` (default `outputs/<date>/<time>`, as the command line), logging to
    its train.log (and to stderr where nothing else handles the logs). Errors raise
    nlp_lstm exceptions carrying the command line's one-line messages."""
    overrides = [str(o) for o in overrides]
    hydra_keys = [o for o in overrides if _override_key(o).startswith("hydra")]
    if hydra_keys:
        raise ConfigError(
            f"overrides {' '.join(hydra_keys)}: Hydra's own settings are the command line's; "
            "give nlp_lstm.train(run_dir=...) for the run dir"
        )
    run_dir = Path(run_dir) if run_dir is not None else Path("outputs") / time.strftime("%Y-%m-%d/%H-%M-%S")
    check_sweeper_installed(overrides)
    overrides = with_saved_overrides(overrides, run_dir)
    cfg = compose(overrides, run_dir)
    with _logging_to(run_dir / "train.log"):
        result = run(cfg, overrides=[o for o in overrides if _override_key(o) != "trainer.resume"])
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    return TrainResult(run_dir, metrics, result["objective"], device=str(cfg.trainer.device))


@contextlib.contextmanager
def _logging_to(path: Path):
    """The project's log lines into `path` (as Hydra writes train.log), and to stderr when no
    handler of the caller's would show them."""
    logger = logging.getLogger("nlp_lstm")
    path.parent.mkdir(parents=True, exist_ok=True)
    handlers = [logging.FileHandler(path, encoding="utf-8")]
    if not logger.handlers and not logging.getLogger().handlers:
        handlers.append(logging.StreamHandler(sys.stderr))
    formatter = logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    level = logger.level
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()
        logger.setLevel(level)


def _program() -> str:
    """How this run was started, for the commands the messages print."""
    name = Path(sys.argv[0]).name
    return (
        "python train.py"
        if name == "train.py"
        else ("nlp-lstm-train" if name == "nlp-lstm-train" else f"python {sys.argv[0]}")
    )


def _resume_hint(run_dir: str) -> str:
    return f"{_program()} trainer.resume=true hydra.run.dir={run_dir}"


def _sweeper_direction() -> Optional[str]:
    """The direction an optimising sweeper (Optuna) was given, in a multirun; else None."""
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN or "direction" not in hydra_cfg.sweeper:
        return None
    direction = hydra_cfg.sweeper.direction
    return str(getattr(direction, "name", direction)).lower()


def check_sweep_direction(task_name: str, direction: Optional[str]) -> None:
    """A sweep that maximises perplexity or minimises F1 would run for hours to pick the
    worst model: refuse it before the first trial trains."""
    if direction is None:
        return
    wanted = {"min": "minimize", "max": "maximize"}[task_class(task_name).monitor_mode]
    if direction != wanted:
        raise ConfigError(
            f"config hydra.sweeper.direction={direction}: task={task_name} returns its best valid "
            f"{'perplexity' if task_name == 'lm' else 'F1 (accuracy without spans)'}, "
            f"which a sweep must {wanted}"
        )


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def hydra_main(cfg: DictConfig) -> float:
    """One run; returns its objective (the best model's valid perplexity for an LM, F1 or
    accuracy for a tagger) for sweepers such as Optuna's."""
    direction = _sweeper_direction()
    try:
        check_sweep_direction(cfg.task.name, direction)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    try:
        result = run(
            cfg, overrides=[o for o in HydraConfig.get().overrides.task if _override_key(o) != "trainer.resume"]
        )
    except TrainingInterrupted as exc:
        print(f"interrupted: {exc}. Resume with: {_resume_hint(cfg.paths.output_dir)}", file=sys.stderr)
        sys.exit(130)
    except NlpLstmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if direction is not None:
            # In an Optuna sweep one failed trial (a diverged learning rate, say) is recorded
            # as failed and the study goes on, within hydra.sweeper.max_failure_rate.
            raise
        sys.exit(2)
    return float(result["objective"]["value"])


def check_sweeper_installed(overrides: List[str]) -> None:
    """hparams_search presets use Hydra's Optuna sweeper, an optional extra."""
    if not any(o.lstrip("+").startswith("hparams_search=") and not o.endswith("=null") for o in overrides):
        return
    try:
        import hydra_plugins.hydra_optuna_sweeper  # noqa: F401
    except ImportError:
        raise ConfigError(
            "config hparams_search: needs Hydra's Optuna sweeper plugin, not installed here: "
            'pip install -e ".[sweep]" (hydra-optuna-sweeper)'
        ) from None


def _precheck_overrides(argv: List[str]) -> None:
    """Compose the command line's overrides once before Hydra does, so that a typo in a key,
    a wrong type or an unknown group option is one `error:` line and exit 2 rather than
    Hydra's multi-line report. Runs, sweeps and Hydra's own flags are left to Hydra."""
    overrides, args = [], iter(argv)
    for arg in args:
        if arg in ("--config-dir", "-cd") or arg.startswith("--config-dir="):
            # a user's own config directory: searched as Hydra searches it
            directory = arg.partition("=")[2] if "=" in arg else next(args, "")
            overrides.append(f"hydra.searchpath=[file://{Path(directory).resolve()}]")
        elif arg.startswith("-"):
            return  # --multirun, --cfg, --help ...: Hydra's business
        elif not arg.startswith(("hydra.", "hydra/", "+hydra", "~hydra")):
            overrides.append(arg)
    try:
        check_sweeper_installed(overrides)
        compose_config(overrides, output_dir=tempfile.gettempdir())
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


def _config_dirs(argv: List[str]) -> List[Path]:
    """The packaged configs, then any --config-dir the command line names."""
    dirs, args = [Path(CONFIG_DIR)], iter(argv)
    for arg in args:
        if arg in ("--config-dir", "-cd"):
            dirs.append(Path(next(args, ".")))
        elif arg.startswith("--config-dir="):
            dirs.append(Path(arg.partition("=")[2]))
    return dirs


def main() -> None:
    if any(arg in ("--help", "-h") for arg in sys.argv[1:]):
        print(help_text(_config_dirs(sys.argv[1:])))
        return
    register_configs()
    try:
        sys.argv[1:] = with_saved_overrides(sys.argv[1:])
    except NlpLstmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    _precheck_overrides(sys.argv[1:])
    hydra_main()


if __name__ == "__main__":
    main()
