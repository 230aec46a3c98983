"""`python train.py` and `nlp-lstm` as a user runs them, and the trainer as train.py builds it.

`train_py`, `run_train` and `run_cli` run in this process by default: the entry point a new
process would run (`nlp_lstm.train_entry.main`, `nlp_lstm.cli.main`), given what a new
process would have (its command line, environment and working directory, an empty stdin,
stdout and stderr of its own, Python's default warning filters, no logging handlers), and
with every global the run changes put back afterwards (torch's threads, flags, default dtype
and random state, Python's and numpy's random state, logging, SIGINT/SIGTERM handlers, the
environment, the working directory, Hydra's global state; the RNN ops' dispatch caches, which
torch's ONNX exporter leaves stale, start empty as in a new process). Each returns what
`subprocess.run(..., capture_output=True, text=True)` returns (a CompletedProcess: returncode
as the process would exit with, stdout, stderr), so a test reads it either way.

`process=True` (or the `*_process` functions) runs a real `python` instead: for the tests where
the process itself is under test (console scripts, signals, the exit status the OS sees).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import random
import signal
import subprocess
import sys
import traceback
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from helpers.paths import ROOT

TRAIN_PY = ROOT / "train.py"


# --- python train.py --------------------------------------------------------------------------


def train_py(
    argv: Sequence[str],
    data_dir: Optional[Path] = None,
    timeout: int = 300,
    process: bool = False,
    env: Optional[Dict[str, str]] = None,
) -> subprocess.CompletedProcess:
    """`python train.py ARGV` (any command line: a run, a sweep, --help) from the checkout,
    with NLP_LSTM_DATA_DIR=data_dir."""
    env = {**(env or {}), **({"NLP_LSTM_DATA_DIR": str(data_dir)} if data_dir is not None else {})}
    if process:
        return subprocess.run(
            [sys.executable, str(TRAIN_PY), *argv],
            cwd=ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    from nlp_lstm.train_entry import main

    return in_process(main, [str(TRAIN_PY), *argv], env=env, timeout=timeout)


def run_train(
    run_dir: Path, overrides: List[str], data_dir: Path, timeout: int = 300, check: bool = True, process: bool = False
) -> subprocess.CompletedProcess:
    """`python train.py hydra.run.dir=RUN_DIR OVERRIDES` as a user would run it; with `check`,
    a failed run fails the test with the end of its stderr."""
    proc = train_py([f"hydra.run.dir={run_dir}", *overrides], data_dir, timeout=timeout, process=process)
    if check and proc.returncode != 0:
        raise AssertionError(f"train.py failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def run_train_process(
    run_dir: Path, overrides: List[str], data_dir: Path, timeout: int = 300, check: bool = True
) -> subprocess.CompletedProcess:
    """run_train in a new `python` process."""
    return run_train(run_dir, overrides, data_dir, timeout=timeout, check=check, process=True)


# --- nlp-lstm -------------------------------------------------------------------------------------


def run_cli(
    args: List[str],
    stdin: Optional[str] = None,
    timeout: int = 120,
    process: bool = False,
    env: Optional[Dict[str, str]] = None,
) -> subprocess.CompletedProcess:
    """`python -m nlp_lstm.cli ARGS` (the `nlp-lstm` command) from the checkout, `stdin` its
    input (none: empty), `env` added to the environment."""
    if process:
        return subprocess.run(
            [sys.executable, "-m", "nlp_lstm.cli", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            input=stdin,
            timeout=timeout,
            env={**os.environ, **(env or {})},
        )
    from nlp_lstm import cli

    program = Path(cli.__file__)  # what `python -m nlp_lstm.cli` runs: a package's __main__.py
    program = program.with_name("__main__.py") if program.name == "__init__.py" else program
    return in_process(lambda: cli.main(list(args)), [str(program), *args], env=env, stdin=stdin, timeout=timeout)


def run_cli_process(
    args: List[str], stdin: Optional[str] = None, timeout: int = 120, env: Optional[Dict[str, str]] = None
) -> subprocess.CompletedProcess:
    """run_cli in a new `python` process."""
    return run_cli(args, stdin=stdin, timeout=timeout, process=True, env=env)


# --- the trainer, driven step by step -----------------------------------------------------------


def step_trainer(tmp_path: Path, overrides: List[str], device: str = "cpu"):
    """(Trainer, task) built in process as train.py builds them, the task at its first
    epoch: for tests that drive `Trainer.train_step` themselves."""
    import torch

    from nlp_lstm.train_entry import build_task, compose_config
    from nlp_lstm.training.trainer import Trainer

    config = compose_config(overrides + ["trainer.progress_bar=false", f"trainer.device={device}"], tmp_path / "run")
    task = build_task(config, torch.device(device))
    task.start_epoch(0)
    return Trainer(config, task, tmp_path / "run", torch.device(device)), task


# --- a process's worth of state, in this process --------------------------------------------------


class _Timeout(BaseException):
    """Raised by the alarm: a BaseException, so that no `except Exception` of the run (Hydra
    reports those and exits 1) takes it for the run's own failure."""


def in_process(
    entry: Callable[[], object],
    argv: List[str],
    env: Optional[Dict[str, str]] = None,
    stdin: Optional[str] = None,
    timeout: Optional[float] = None,
    cwd: Path = ROOT,
) -> subprocess.CompletedProcess:
    """`entry()` as the body of a process started as `python ARGV` in `cwd` (sys.argv = argv,
    `env` added to the environment): its return value or SystemExit is the exit
    status as Python gives it (None 0, an int itself, anything else printed to stderr and
    1), an uncaught exception is its traceback on stderr and status 1. Raises
    subprocess.TimeoutExpired after `timeout` seconds, as subprocess.run does."""
    out, err = _Output("strict"), _Output("backslashreplace")
    saved = _SavedState()
    try:
        os.chdir(cwd)
        os.environ.update(env or {})
        sys.argv = list(argv)
        sys.stdin = io.TextIOWrapper(io.BytesIO((stdin or "").encode("utf-8")), encoding="utf-8", newline="\n")
        sys.stdout, sys.stderr = out.text, err.text
        with _process_warnings(), _process_logging(), _alarm(timeout):
            try:
                status = entry()
            except SystemExit as exc:
                status = exc.code
            except _Timeout:
                raise
            except Exception:
                traceback.print_exc()
                status = 1
            code = _exit_status(status)
    except _Timeout:
        raise subprocess.TimeoutExpired(argv, timeout, out.value(), err.value()) from None
    finally:
        saved.restore()
    return subprocess.CompletedProcess([sys.executable, *argv], code, out.value(), err.value())


def _exit_status(status) -> int:
    """What `sys.exit(status)` makes the process's exit status."""
    if status is None:
        return 0
    if isinstance(status, int):
        return status & 0xFF
    print(status, file=sys.stderr)
    return 1


class _Output:
    """A process's stdout or stderr: UTF-8 text over bytes (not a terminal, as a pipe),
    read back as `subprocess.run(text=True)` reads a pipe (newlines translated)."""

    def __init__(self, errors: str):
        self.text = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors=errors, newline="\n", write_through=True)

    def value(self) -> str:
        self.text.flush()
        data = self.text.buffer.getvalue().decode("utf-8")
        return data.replace("\r\n", "\n").replace("\r", "\n")


@contextlib.contextmanager
def _process_warnings():
    """The warning filters of a new `python` and warnings shown on (this run's) stderr, not
    collected by pytest."""

    def show(message, category, filename, lineno, file=None, line=None):
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    with warnings.catch_warnings():
        warnings.resetwarnings()
        for action, category, module in (
            ("default", DeprecationWarning, "__main__"),
            ("ignore", DeprecationWarning, ""),
            ("ignore", PendingDeprecationWarning, ""),
            ("ignore", ImportWarning, ""),
            ("ignore", ResourceWarning, ""),
        ):
            warnings.filterwarnings(action, category=category, module=module, append=True)
        warnings.showwarning = show
        yield


@contextlib.contextmanager
def _process_logging():
    """Logging as a new process has it (no handlers: WARNING and above to stderr through
    logging's last resort), and afterwards as it was: every logger's handlers, level,
    propagation and disabling, the handlers the run added closed (so that its log files are
    complete when the test reads them). Loggers the run created (first imports of a library)
    are left as the library set them up."""
    manager = logging.root.manager
    loggers = [logging.root] + [lg for lg in list(manager.loggerDict.values()) if isinstance(lg, logging.Logger)]
    saved = {lg: (list(lg.handlers), lg.level, lg.propagate, lg.disabled) for lg in loggers}
    disabled_level = manager.disable
    logging.root.handlers = []  # pytest's capturing handlers: a new process has none
    logging.root.setLevel(logging.WARNING)
    logging.disable(logging.NOTSET)
    try:
        yield
    finally:
        for logger, (handlers, level, propagate, disabled) in saved.items():
            for handler in logger.handlers:
                if handler not in handlers:
                    with contextlib.suppress(Exception):
                        handler.flush()
                        handler.close()
            logger.handlers = handlers
            logger.setLevel(level)
            logger.propagate, logger.disabled = propagate, disabled
        logging.disable(disabled_level)
        manager._clear_cache()


@contextlib.contextmanager
def _alarm(seconds: Optional[float]):
    if not seconds:
        yield
        return

    def expire(signum, frame):
        raise _Timeout()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class _SavedState:
    """The process-wide state a training run or a command may change, to put back."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        import numpy as np
        import torch
        from hydra.core.global_hydra import GlobalHydra

        self.cwd = os.getcwd()
        self.argv = list(sys.argv)
        self.environ = dict(os.environ)
        self.streams = (sys.stdin, sys.stdout, sys.stderr)
        self.signals = {sig: signal.getsignal(sig) for sig in self.SIGNALS}
        self.hydra_initialized = GlobalHydra.instance().is_initialized()
        self.random = random.getstate()
        self.numpy_random = np.random.get_state()
        self.torch_random = torch.random.get_rng_state()
        self.threads = torch.get_num_threads()
        self.deterministic = (
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
        )
        self.cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
        self.dtype = torch.get_default_dtype()
        self.grad = torch.is_grad_enabled()

    def restore(self):
        import numpy as np
        import torch
        from hydra.core.global_hydra import GlobalHydra

        sys.stdin, sys.stdout, sys.stderr = self.streams
        sys.argv = self.argv
        os.chdir(self.cwd)
        for key in set(os.environ) - set(self.environ):
            del os.environ[key]
        for key, value in self.environ.items():
            if os.environ.get(key) != value:
                os.environ[key] = value
        for sig, handler in self.signals.items():
            if handler is not None:
                signal.signal(sig, handler)
        if GlobalHydra.instance().is_initialized() and not self.hydra_initialized:
            GlobalHydra.instance().clear()
        random.setstate(self.random)
        np.random.set_state(self.numpy_random)
        torch.random.set_rng_state(self.torch_random)
        torch.set_num_threads(self.threads)
        torch.use_deterministic_algorithms(self.deterministic[0], warn_only=self.deterministic[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = self.cudnn
        torch.set_default_dtype(self.dtype)
        torch.set_grad_enabled(self.grad)
