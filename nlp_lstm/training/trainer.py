"""The generic training loop: optimiser, schedule, budgets, evaluation, checkpoints.

One loop serves every task through the TrainingTask contract. Reading order: `fit` sets up
(or restores) the state, `_train_until_done` runs steps until a budget ends, `_evaluate`
tracks the best model, `_finish` scores the best model on valid and test.

The loop drives; the jobs it drives have modules of their own: what it counts (state.py),
the progress lines and bar (progress.py), the optimiser update (optimizer_step.py),
non-finite steps (nonfinite.py), iterate averaging (averaging.py), the best model
(best_model.py), what the run reports (report.py) and stop signals (stop_signals.py).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
from torch.optim.swa_utils import AveragedModel

from nlp_lstm.device import autocast_context
from nlp_lstm.errors import NlpLstmError
from nlp_lstm.fileio import recover_directory
from nlp_lstm.training import averaging
from nlp_lstm.training.best_model import BestModel
from nlp_lstm.training.checkpoint import (
    check_same_run,
    load_checkpoint,
    read_run_marker,
    rng_state,
    run_started,
    save_checkpoint,
    set_rng_state,
)
from nlp_lstm.training.distributed import SINGLE, DistInfo, any_rank, data_parallel_step, gather_objects, rank_share
from nlp_lstm.training.monitor import Monitor
from nlp_lstm.training.nonfinite import NonfiniteSteps, grad_norm_of, stop_or_warn, without_skipped
from nlp_lstm.training.optim import build_optimizer, build_scheduler, schedule_back
from nlp_lstm.training.optimizer_step import step_optimizer
from nlp_lstm.training.precision_choice import resumed_precision
from nlp_lstm.training.progress import LogWindow, bar_postfix, epoch_bar, progress_line, progress_log, terminal_logging
from nlp_lstm.training.report import best_model_numbers, chart_layout, completed_metrics, run_result, train_summary
from nlp_lstm.training.state import TrainerState
from nlp_lstm.training.stop_signals import StopSignals
from nlp_lstm.training.task import TrainingTask

log = logging.getLogger("nlp_lstm")


class TrainingInterrupted(NlpLstmError):
    """SIGINT/SIGTERM: a checkpoint was written and the run can be resumed."""


class Trainer:
    def __init__(
        self,
        cfg,
        task: TrainingTask,
        run_dir: Path,
        device: torch.device,
        run_config: Optional[Dict[str, Any]] = None,
        dist: DistInfo = SINGLE,
    ) -> None:
        self.cfg, self.tcfg, self.task, self.dist = cfg, cfg.trainer, task, dist
        self.run_dir, self.device = Path(run_dir), device
        self.model = task.model
        self.run_config = run_config or {}
        self.checkpoint_path = self.run_dir / "checkpoints" / "last.pt"
        self.model_dir = self.run_dir / "model"
        self.optimizer = build_optimizer(cfg.optim, self.model.parameters())
        self._trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.ddp = data_parallel_step(task, device) if dist.enabled else None
        total = self.tcfg.max_steps or (self.tcfg.max_epochs * task.steps_per_epoch() if self.tcfg.max_epochs else None)
        self.scheduler, self.schedule_when = build_scheduler(cfg.optim, self.optimizer, total, task.monitor_mode)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.tcfg.precision == "fp16")
        # Iterate average: NT-ASGD's once triggered, or from optim.average_from_epoch.
        self.averaged: Optional[AveragedModel] = None
        self.best_model = BestModel(task, self.model_dir, writes=dist.is_main)
        self.state = TrainerState(precision=self.tcfg.precision)
        self.signals = StopSignals()
        self.nonfinite = NonfiniteSteps(device)

    # ------------------------------------------------------------------ state
    def _payload(self) -> Dict[str, Any]:
        self.read_step_flags()
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "scaler": self.scaler.state_dict(),
            "averaged": self.averaged.state_dict() if self.averaged else None,
            "best_model": self.best_model.weights,
            "trainer": self.state.to_dict(),
            "task": self.task.state_dict(),
            "config": self.run_config,
        }

    def save_checkpoint(self) -> None:
        payload = self._payload()
        if self.dist.enabled:  # each rank's data position, carried state and RNG (collective)
            payload["task"] = gather_objects(payload["task"], self.dist)
            payload["rng"] = gather_objects(rng_state(), self.dist)
        if self.dist.is_main:
            save_checkpoint(self.checkpoint_path, payload)

    def _restore(self) -> None:
        payload = load_checkpoint(self.checkpoint_path)
        check_same_run(payload.get("config", {}), self.run_config)
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        if self.scheduler and payload["scheduler"]:
            self.scheduler.load_state_dict(payload["scheduler"])
        self.scaler.load_state_dict(payload["scaler"])
        self.averaged = averaging.restored(self.model, payload["averaged"])
        self.best_model.restore(payload, self.device)
        self.state = TrainerState.from_dict(payload["trainer"])
        self.state.stop_reason = None  # the budgets may have been raised for this resume
        self.tcfg.precision = self.state.precision = resumed_precision(self.state, self.run_config, self.tcfg.precision)
        self.nonfinite = NonfiniteSteps(self.device, run=self.state.nonfinite_in_a_row)
        task_state, rng = rank_share(payload["task"], payload["rng"], self.dist, self.checkpoint_path)
        self.task.load_state_dict(task_state)
        set_rng_state(rng)
        log.info(f"resumed from {self.checkpoint_path} at epoch {self.state.epoch} step {self.state.step}")

    # ------------------------------------------------------------------ loop
    def _remove_stale_temporaries(self) -> None:
        """Temporary files of writes that a kill -9 interrupted (never complete, never read)."""
        for folder in (self.checkpoint_path.parent, self.run_dir):
            for stale in folder.glob(".*.tmp"):
                if stale.is_file():
                    stale.unlink(missing_ok=True)
        recover_directory(self.model_dir)

    def fit(self) -> Dict[str, Any]:
        if self.dist.is_main:
            self._remove_stale_temporaries()
        if self.tcfg.resume and not self.checkpoint_path.exists() and run_started(self.run_dir):
            # Killed before its first checkpoint: a requeued job passes the same command.
            check_same_run(read_run_marker(self.run_dir), self.run_config)
            log.warning(
                f"{self.checkpoint_path}: no checkpoint yet (the run stopped before its first one): "
                "starting the run from the beginning"
            )
        elif self.tcfg.resume:
            self._restore()
            finished = self._already_finished()
            if finished is not None:
                return finished
        self.monitor = Monitor(
            self.run_dir,
            self.cfg.logger.tensorboard,
            purge_step=self.state.step + 1 if self.tcfg.resume else None,
            writes=self.dist.is_main,
        )
        self._params = sum(p.numel() for p in self.model.parameters())
        log.info(f"model: {self._params:,} parameters on {self.device}")
        if not self.task.has_split("test"):
            log.info("no test split (data.test unset): the run ends without a test evaluation")
        if not self.tcfg.resume:  # a resumed run keeps the layout and data facts it wrote at step 0
            self.monitor.layout(chart_layout(self.task.headline_keys, self.task.unit))
            for name, values in self.task.data_summary().items():
                # facts, not curves: a table in TEXT (a one-point chart would open Time Series)
                self.monitor.table(f"data/{name}", ["", "value"], [[k, v] for k, v in values.items()], 0)
        self._show_bar = self.tcfg.progress_bar and sys.stderr.isatty() and self.dist.is_main
        try:
            with self.signals.handled(), terminal_logging(self._show_bar):
                self._train_until_done()
                if self.signals.received:
                    self._interrupt()
                return self._finish()
        finally:
            self.monitor.close()

    def _already_finished(self) -> Optional[Dict[str, Any]]:
        """A completed run resumed with no budget raised: nothing to train, score or write
        again; its result is the one it reported."""
        metrics = completed_metrics(self.run_dir)
        reason = self.state.budget_reached(self.tcfg)
        if metrics is None or reason is None:
            return None
        log.info(
            f"{self.run_dir}: the run is complete ({reason} reached at step {self.state.step}); "
            f"raise trainer.max_steps, max_epochs or max_time to train it further"
        )
        return run_result(self.task, metrics["best_valid"], metrics.get("test"), metrics["train"])

    def _interrupt(self) -> None:
        self.save_checkpoint()
        self._write_metrics(status="interrupted")
        self.monitor.flush()
        raise TrainingInterrupted(
            f"{self.signals.received} at step {self.state.step}: checkpoint saved to {self.checkpoint_path}"
        )

    def _train_until_done(self) -> None:
        s, t = self.state, self.tcfg
        window = LogWindow()
        last_checkpoint = time.monotonic()
        bar = None
        loop_start, wall_at_start = time.perf_counter(), s.wall_time
        while True:
            s.wall_time = wall_at_start + time.perf_counter() - loop_start
            reason, checkpoint_due = self._stop_reason(
                checkpoint_due=time.monotonic() - last_checkpoint >= t.checkpoint_every_minutes * 60
            )
            if reason:
                if reason != "signal":
                    s.stop_reason = reason
                break
            if not s.in_epoch:
                self.task.start_epoch(s.epoch)
                s.in_epoch = True
            if bar is None:
                bar = epoch_bar(s.epoch, self.task.steps_per_epoch(), self.task.steps_done_in_epoch(), self._show_bar)
            step_start = time.perf_counter()
            batch = self.task.next_batch()
            if batch is None:
                bar.close()
                bar = None
                self._end_epoch()
                last_checkpoint = time.monotonic()
                continue
            out, grad_norm = self.train_step(batch)
            if self.schedule_when == "step":
                self.scheduler.step()  # on a skipped step too: read_step_flags puts it back
            s.step += 1
            s.train_units += out.units
            s.train_tokens += out.tokens or out.units
            s.train_time += time.perf_counter() - step_start
            window.add(out)
            bar.update(1)
            if s.step % t.log_every_n_steps == 0:
                self._log_train(window, grad_norm, bar)
                window = LogWindow()
            if self.cfg.logger.histogram_every_n_steps and s.step % self.cfg.logger.histogram_every_n_steps == 0:
                self.monitor.histograms(self.model, s.step)
            if t.val_check_interval and s.step % t.val_check_interval == 0:
                self._evaluate()
            if checkpoint_due:
                self.save_checkpoint()
                last_checkpoint = time.monotonic()
        if bar is not None:
            bar.close()

    def _stop_reason(self, checkpoint_due: bool) -> Tuple[Optional[str], bool]:
        """Why the loop stops before its next step (a budget, or "signal"; None: it goes on),
        and whether a checkpoint is due; data-parallel ranks agree on both."""
        t = self.tcfg
        reason = self.state.budget_reached(t) or (self.signals.received and "signal")
        if self.dist.enabled:
            # Clocks and signals differ between ranks: all stop (and checkpoint) together.
            stop, checkpoint_due = any_rank([reason is not None, checkpoint_due], self.dist)
            if stop and reason is None:
                reason = "max_time" if t.max_time is not None and not self.signals.received else "signal"
                if reason == "signal":
                    self.signals.received = "a signal to another rank"
        return reason, checkpoint_due

    def _end_epoch(self) -> None:
        """After an epoch's last batch: the per-epoch schedule, averaging from an epoch on,
        then the epoch's evaluation and checkpoint."""
        s = self.state
        s.in_epoch = False
        s.epoch += 1
        if self.schedule_when == "epoch":
            self.scheduler.step()
        self.averaged = averaging.start_at_epoch(self.cfg.optim, self.averaged, self.model, s.epoch)
        self._evaluate()
        self.save_checkpoint()

    def train_step(self, batch):
        """One optimiser step on `batch`: forward, backward, clipping, update, averaging.

        Returns the task's StepOutput and the gradient norm (a tensor: no host sync here).
        """
        self.model.train()
        with autocast_context(self.device, self.tcfg.precision):
            if self.ddp is not None:
                self.ddp(batch)
                out = self.ddp.module.output
            else:
                out = self.task.training_step(batch)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(out.loss).backward()
        grad_norm = None
        if self.cfg.optim.clip_grad_norm:
            self.scaler.unscale_(self.optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(self._trainable, self.cfg.optim.clip_grad_norm)
        keep = None
        if self.tcfg.nonfinite != "off" and not self.scaler.is_enabled():
            # (fp16's GradScaler skips overflowing steps itself, as part of loss scaling.)
            norm = grad_norm if grad_norm is not None else grad_norm_of(self._trainable, out.loss)
            keep = self.nonfinite.check(out.loss, norm, self.state.step + 1)
            self.task.keep_step_state(keep)
            out = without_skipped(out, keep)
        step_optimizer(self.optimizer, self.scaler, keep, self.task.lr_scale(batch))
        if self.averaged is not None:
            averaging.update_average(self.averaged, self.model, keep)
        return out, grad_norm

    def read_step_flags(self) -> None:
        """Read the non-finite counters of the steps since the last read (one sync), count
        them and police them: trainer.nonfinite=stop, trainer.max_nonfinite_steps."""
        report = self.nonfinite.read()
        s = self.state
        s.nonfinite_in_a_row = report.run
        if not report.skipped:
            return
        s.skipped_steps += report.skipped
        if self.schedule_when == "step":
            schedule_back(self.scheduler, report.skipped)
        stop_or_warn(report, self.tcfg, s.skipped_steps)

    def _log_train(self, window: LogWindow, grad_norm, bar) -> None:
        s = self.state
        extras = window.mean_extras()  # e.g. train/activation_reg, train/temporal_activation_reg
        self.read_step_flags()
        mean = window.mean_loss()
        if not math.isfinite(mean):
            raise NlpLstmError(f"training loss is {mean} at step {s.step}: lower optim.lr or set optim.clip_grad_norm")
        metrics = self.task.running_metrics(mean)
        metrics["lr"] = self.optimizer.param_groups[0]["lr"]
        metrics["skipped_steps"] = s.skipped_steps
        metrics[f"{self.task.unit}_per_sec"] = window.units_per_sec()
        metrics.update(extras)
        if grad_norm is not None:
            metrics["grad_norm"] = float(grad_norm)
        self.monitor.scalars("train", metrics, s.step)
        bar.set_postfix(bar_postfix(metrics, self.task.unit, s.skipped_steps), refresh=False)
        progress_log.info(
            progress_line(s, metrics, self.task.unit, self.task.steps_done_in_epoch(), self.task.steps_per_epoch())
        )

    # ------------------------------------------------------------------ evaluation
    def _score_valid(self) -> Tuple[Dict[str, Any], bool]:
        """Validation metrics of the evaluation weights; weights that improve on the best
        become the best model and the model package."""
        s = self.state
        self.read_step_flags()
        with (
            averaging.evaluation_weights(self.model, self.averaged),
            autocast_context(self.device, self.tcfg.precision),
        ):
            metrics = self.task.evaluate("valid")
            improved = self.best_model.offer(metrics, s.best)
            self.task.on_evaluation(self.monitor, s.step)
        self.monitor.scalars("valid", self.task.charted(metrics), s.step)
        return metrics, improved

    def _record_valid(self, metrics: Dict[str, Any], improved: bool, where: str, **entry) -> None:
        s = self.state
        s.history.append(
            {
                "epoch": s.epoch,
                "step": s.step,
                "wall_time_s": round(s.wall_time, 2),
                "lr": self.optimizer.param_groups[0]["lr"],
                "valid": metrics,
                **entry,
            }
        )
        log.info(f"{where} valid: {self.task.describe(metrics)}" + ("  (best)" if improved else ""))

    def _evaluate(self) -> None:
        """A scheduled evaluation: it drives the plateau schedule, NT-ASGD and early stopping."""
        s = self.state
        if s.last_eval_step == s.step:
            return
        metrics, improved = self._score_valid()
        s.last_eval_step = s.step
        previous = [h["valid"]["loss"] for h in s.history]
        if self.schedule_when == "eval":
            self.scheduler.step(metrics[self.task.monitor_key])
        self.averaged = averaging.start_when_stalled(
            self.cfg.optim, self.averaged, self.model, previous, metrics["loss"], s.step
        )
        if improved:
            s.best, s.best_step, s.evals_since_best = metrics, s.step, 0
        else:
            s.evals_since_best += 1
        where = f"epoch {s.epoch + 1} step {s.step}" if s.in_epoch else f"end of epoch {s.epoch}"
        self._record_valid(metrics, improved, where)
        self._write_metrics(status="running")
        self.monitor.flush()

    def _final_evaluation(self) -> None:
        """Score the last weights when the run stopped between scheduled evaluations (a
        max_steps or max_time budget), so they can still be the best. Off the schedule: it
        steps no scheduler, starts no averaging and moves no early-stopping counter, and it
        runs after the checkpoint is saved, so a run resumed with a larger budget continues
        exactly as one that was never stopped."""
        s = self.state
        metrics, improved = self._score_valid()
        if improved:
            s.best, s.best_step = metrics, s.step
        self._record_valid(metrics, improved, f"end of training (step {s.step})", final=True)

    # ------------------------------------------------------------------ end of run
    def _write_metrics(self, status: str, **extra) -> None:
        s = self.state
        self.monitor.write_metrics(
            {
                "status": status,
                "best_valid": s.best,
                "best_step": s.best_step,
                **extra,
                "train": train_summary(s, self.task.unit, self.dist.world_size),
                "params": self._params,
                "history": s.history,
                **({"data": self.task.data_summary()} if self.task.data_summary() else {}),
            }
        )

    def _finish(self) -> Dict[str, Any]:
        s = self.state
        self.save_checkpoint()
        if s.step > s.last_eval_step:
            self._final_evaluation()
        self.best_model.load()
        best_valid = s.best  # scored on exactly these weights when they became the best
        with autocast_context(self.device, self.tcfg.precision):
            test = self.task.evaluate("test") if self.task.has_split("test") else None
        self.task.on_finish(self.monitor, s.step)
        self.monitor.hparams(self.task.hparams(), best_model_numbers(best_valid, test, self.task.headline_keys))
        self._write_metrics(status="completed", **({"test": test} if test is not None else {}))
        log.info(
            f"best valid: {self.task.describe(best_valid)}" + (f" | test: {self.task.describe(test)}" if test else "")
        )
        log.info(f"model package: {self.model_dir}")
        return run_result(self.task, best_valid, test, train_summary(s, self.task.unit, self.dist.world_size))
