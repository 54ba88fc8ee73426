"""The Trainer callback that turns training into events and obeys stop requests."""

from __future__ import annotations

import math
import os
import signal
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from engine.rundir.events import Checkpoint, Eval, EventWriter, Failed, Log, Phase, Step
from engine.rundir.runs import STOP_FILE
from engine.scaleout import distributed


class Throughput:
    """Counts the samples and real tokens the training loader has handed out.

    `padded` counts the tokens training steps ran on, padding included (the thread probe's
    measure of a step's work); the Trainer adds to it.
    """

    def __init__(self) -> None:
        self.samples = 0
        self.tokens = 0
        self.padded = 0

    def add(self, tokens: int) -> None:
        """Count one example of `tokens` tokens."""
        self.samples += 1
        self.tokens += tokens


class EventsCallback(TrainerCallback):
    """Writes step / eval / checkpoint events; stops gracefully on a request file or SIGTERM."""

    def __init__(
        self,
        writer: EventWriter,
        run_dir: Path,
        counter: Throughput,
        detail: dict[str, Any],
        checkpoint_minutes: float = 0.0,
        elapsed_offset: float = 0.0,
    ) -> None:
        self.writer = writer
        self.run_dir = run_dir
        self.stop_path = run_dir / STOP_FILE
        self.counter = counter
        self.detail = detail
        self.checkpoint_s = checkpoint_minutes * 60
        self.elapsed_offset = elapsed_offset
        self.stop_reason = ""
        self.t0 = time.monotonic()
        self.start_step = 0
        self.last_log = (self.t0, 0, 0)
        self.last_save = self.t0
        self.evaluating = False
        self.training_done = False
        self.saved_step = -1
        self.rebalancer: Any = None
        self.probe: Any = None  # engine.training.thread_probe.ProbeRunner while threads are timed
        self.threads_cap: int | None = None  # the cached best count: the Rebalancer stays below
        self.last_eval: tuple[int, dict[str, Any]] | None = None  # (step, metrics) of the latest

    def install_signal_handlers(self) -> None:
        """SIGTERM / SIGINT ask for a graceful stop; a second SIGINT exits at once."""

        def handler(signum: int, _frame: Any) -> None:
            if signum == signal.SIGINT and self.stop_reason.startswith("signal"):
                self.force_exit()
            self.stop_reason = f"signal {signal.Signals(signum).name}"

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def force_exit(self) -> None:
        """Leave now (a second Ctrl-C): say so in the events and status, keep the checkpoints."""
        from engine.rundir.runs import write_status

        event = Failed(
            message="interrupted twice: exited without saving",
            hint="resume continues from the last checkpoint",
        )
        # Straight to the file: the writer's lock may be held by the code we interrupted.
        try:
            fd = os.open(self.writer.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (event.to_json() + "\n").encode("utf-8"))
            finally:
                os.close(fd)
            write_status(self.run_dir, state="failed", message=event.message)
        except OSError:
            pass
        os.write(2, b"interrupted twice: exiting without saving\n")
        os._exit(130)

    @property
    def stop_requested(self) -> bool:
        """True once a stop was asked for (file or signal)."""
        if not self.stop_reason and self.stop_path.exists():
            self.stop_reason = "stop requested"
        return bool(self.stop_reason)

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: D102
        self.t0 = time.monotonic()
        self.start_step = state.global_step
        self.counter.samples = self.counter.tokens = 0
        self.last_log = (self.t0, 0, 0)
        self.last_save = self.t0
        self.writer.emit(Phase(name="training"))
        self._start_rebalancer()
        if self.probe is not None:
            if self.rebalancer is not None:
                self.rebalancer.paused = True  # the probe sets the counts until it is done
            self.probe.begin()

    def _start_rebalancer(self) -> None:
        """Follow the other engines under the runs root (engine.training.cores) while training."""
        import torch

        from engine.config import RunConfig
        from engine.core.errors import UserError
        from engine.training.cores import Rebalancer

        if distributed.world_size() > 1:
            return  # torchrun's processes keep the cores they were pinned to
        try:
            requested = RunConfig.load(self.run_dir / "config.toml").training.threads
        except UserError:
            return
        self.rebalancer = Rebalancer(self.run_dir, requested, torch.get_num_threads())
        self.rebalancer.cap = self.threads_cap

    def on_step_end(self, args, state, control, **kwargs):  # noqa: D102
        due = bool(self.checkpoint_s) and time.monotonic() - self.last_save >= self.checkpoint_s
        # Under torchrun every rank must take the same branch (a stop file seen by one machine,
        # a clock one rank reads a little later): agree, or the others wait in a collective.
        stop, due = distributed.any_rank(self.stop_requested, due)
        if stop and not self.stop_reason:
            self.stop_reason = "stop requested"
        if state.global_step >= state.max_steps or stop:
            control.should_log = True  # the last step always gets its row, whatever logging_steps
        if stop:
            control.should_training_stop = True
            control.should_save = True
            control.should_evaluate = False  # a stop saves at once; evaluation can wait
        elif due:
            control.should_save = True
        if self.probe is not None and (chosen := self.probe.step_end()) is not None:
            self.probe = None
            if self.rebalancer is not None:
                self.rebalancer.settle(chosen.threads)
        if self.rebalancer is not None and (note := self.rebalancer.check()):
            self.writer.emit(Log(message=note))
        return control

    def on_epoch_end(self, args, state, control, **kwargs):  # noqa: D102
        if self.stop_requested:
            # A stop mid-epoch ends the epoch early: no end-of-epoch evaluation before saving,
            # and no second checkpoint of the step just saved.
            control.should_evaluate = False
            if self.saved_step == state.global_step:
                control.should_save = False
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: D102
        logs = logs or {}
        if "loss" not in logs:
            return
        now = time.monotonic()
        t_prev, samples_prev, tokens_prev = self.last_log
        dt = max(now - t_prev, 1e-9)
        # Every rank logs at the same steps, so the counts can be summed over the world.
        samples, tokens = distributed.sum_ranks(
            self.counter.samples - samples_prev, self.counter.tokens - tokens_prev
        )
        self.last_log = (now, self.counter.samples, self.counter.tokens)
        done = state.global_step - self.start_step
        session = now - self.t0
        eta = (state.max_steps - state.global_step) * session / done if done > 0 else None
        grad_norm = logs.get("grad_norm")
        # a task's training figures (engine.tasks.preference.forward: pair margins since the last log)
        figures = getattr(kwargs.get("model"), "finetune_tui_step_metrics", None)
        self.writer.emit(
            Step(
                step=state.global_step,
                total_steps=state.max_steps,
                epoch=round(float(state.epoch or 0.0), 4),
                loss=_finite(logs.get("loss")),
                learning_rate=_finite(logs.get("learning_rate")),
                grad_norm=_finite(grad_norm),
                samples_per_s=round(samples / dt, 2) if samples else None,
                tokens_per_s=round(tokens / dt, 1) if tokens else None,
                elapsed_s=round(self.elapsed_offset + session, 2),
                eta_s=round(eta, 1) if eta is not None else None,
                world_size=distributed.world_size(),
                nnodes=max(1, distributed.world_size() // distributed.local_world_size()),
                metrics=figures() if callable(figures) else {},
            )
        )

    def on_train_end(self, args, state, control, **kwargs):  # noqa: D102
        self.training_done = True

    def on_prediction_step(self, args, state, control, **kwargs):  # noqa: D102
        if not self.evaluating and not self.training_done:
            self.evaluating = True
            self.writer.emit(Phase(name="evaluating"))

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):  # noqa: D102
        self.evaluating = False
        if self.probe is not None:
            self.probe.reset_clock()  # an evaluation is no training step
        if self.training_done:
            return  # the final score of the kept (best) model goes into `finished`, not a new row
        metrics = dict(metrics or {})
        clean = {
            k.removeprefix("eval_"): v
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and k not in ("epoch",)
        }
        clean.update({k: v for k, v in self.detail.items() if k not in clean})
        self.last_eval = (state.global_step, clean)
        self.writer.emit(
            Eval(step=state.global_step, epoch=round(float(state.epoch or 0.0), 4), metrics=clean)
        )
        if not self.training_done and state.global_step < state.max_steps:
            self.writer.emit(Phase(name="training"))
        # Time spent evaluating is not training throughput.
        self.last_log = (time.monotonic(), self.counter.samples, self.counter.tokens)

    def on_save(self, args, state, control, **kwargs):  # noqa: D102
        self.last_save = time.monotonic()
        if self.probe is not None:
            self.probe.reset_clock()
        self.saved_step = state.global_step
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        reason = "stop" if self.stop_reason else "scheduled"
        self.writer.emit(Checkpoint(step=state.global_step, path=str(path), reason=reason))


def _finite(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None
