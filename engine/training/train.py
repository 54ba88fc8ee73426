"""One training run in this process: task data -> model -> Trainer on CPU -> adapter, as events."""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from engine.config import RunConfig
from engine.core.errors import UserError
from engine.core.words import plural
from engine.rundir.events import (
    Event,
    EventWriter,
    Failed,
    Finished,
    Log,
    Phase,
    QuietWriter,
    Started,
    Stopped,
    read_events,
)
from engine.rundir.runs import (
    CONFIG_FILE,
    LOG_FILE,
    STOP_FILE,
    adapter_dir,
    last_checkpoint,
    write_status,
)
from engine.training.trainer_setup import (
    CountingDataset,
    build_trainer,
    quiet_libraries,
    total_steps,
    training_arguments,
)


def run_training(
    run_dir: str | Path, *, resume: bool = False, listeners: Sequence[Callable[[Event], None]] = ()
) -> int:
    """Train the run in `run_dir`; returns 0 done/stopped, 2 user error or full disk, 1 bug.

    Before anything is written the engine takes the run's lock (one engine per run) and, on a
    resume, refuses a finished run or an unreadable config with a UserError that changes nothing.
    """
    from engine.rundir.lock import acquire_run_lock
    from engine.scaleout import distributed as dist

    run_dir = Path(run_dir).resolve()
    dist.init_process_group()  # under torchrun (several processes): join the gloo group
    resume = resume or dist.restart_count() > 0  # torchrun restarted us: continue, not redo
    if not dist.is_main():  # rank 0 holds the lock and makes the checks for the whole run
        return _run_locked(run_dir, resume, listeners)
    lock = acquire_run_lock(run_dir)  # raises UserError when another engine has the run
    try:
        if resume and dist.restart_count() == 0:
            _check_resume(run_dir)
        return _run_locked(run_dir, resume, listeners)
    finally:
        from engine.core.hardware import set_engine_threads

        set_engine_threads(None)
        lock.release()


def _check_resume(run_dir: Path) -> None:
    """A resume that cannot go anywhere is refused before it writes a thing."""
    from engine.models.checks import check_run
    from engine.rundir.runs import check_not_finished

    check_not_finished(run_dir)  # liveness needs no check: we hold the run's lock
    cfg = RunConfig.load(run_dir / CONFIG_FILE).validate()
    check_run(cfg, run_dir)


def _run_locked(run_dir: Path, resume: bool, listeners: Sequence[Callable[[Event], None]]) -> int:
    from engine.rundir import diskfull
    from engine.scaleout import distributed as dist

    multi, main = dist.world_size() > 1, dist.is_main()
    # Only rank 0 writes events and status; the others tell in-process listeners only.
    writer = EventWriter(run_dir) if main else QuietWriter(run_dir)
    writer.listeners.extend(listeners)
    if main:  # experiment trackers (report_to) follow rank 0's events
        from engine.training.trackers import TrackerHub

        writer.listeners.append(TrackerHub(run_dir, writer))
    reserve = diskfull.Reserve(run_dir)
    try:
        import psutil

        if main:
            reserve.make()
            if multi:  # the status pid stays the torchrun supervisor's (engine.scaleout.torchrun)
                write_status(run_dir, state="running")
            else:
                write_status(
                    run_dir,
                    pid=os.getpid(),
                    pid_start=psutil.Process().create_time(),
                    state="running",
                )
            (run_dir / STOP_FILE).unlink(missing_ok=True)
        if not multi:  # torchrun's processes are pinned to their own cores instead
            _claim_threads(run_dir, writer)
        if not resume and main:
            from engine.models.checks import check_run

            check_run(RunConfig.load(run_dir / CONFIG_FILE).validate(), run_dir)
        outcome = _train(run_dir, writer, resume)
        if main:  # done: no engine works on the run (under torchrun: once the supervisor ends)
            write_status(run_dir, state=outcome, **({} if multi else {"pid": None}))  # type: ignore[arg-type]
        return 0
    except UserError as exc:
        _fail(
            run_dir,
            writer,
            Failed(
                message=exc.message, hint=exc.hint, where=exc.where or exc.field, user_error=True
            ),
        )
        return 2
    except KeyboardInterrupt:  # Ctrl-C before training began (the callback handles it after)
        _fail(run_dir, writer, Failed(message="interrupted", hint="resume starts it again"))
        raise
    except MemoryError:
        _fail(
            run_dir, writer, Failed(message="out of memory", hint="lower batch_size or max_length")
        )
        return 1
    except Exception as exc:
        full = diskfull.disk_full_failure(exc, run_dir)
        if full is not None:  # a full disk is no bug: one clear message, no traceback
            reserve.release()  # room for the failed event and the status
            diskfull.drop_incomplete_checkpoints(run_dir)
            _fail(run_dir, writer, full)
            return 2
        if multi:  # every rank shares engine.log through torchrun's output
            print(f"rank {dist.rank()}: {traceback.format_exc()}", file=sys.stderr, flush=True)
        else:
            try:  # an internal error: keep the traceback in engine.log
                with open(run_dir / LOG_FILE, "a", encoding="utf-8") as fh:
                    fh.write(traceback.format_exc())
            except OSError:
                pass
        if multi and dist.lost_contact(exc):
            # Another process died first (kill -9, out of memory): say so, or wait for the restart.
            if dist.restarts_left():
                writer.emit(Log(level="warning", message="a training process died: restarting"))
                return 1
            _fail(
                run_dir,
                writer,
                Failed(
                    message=f"lost contact with another training process ({type(exc).__name__})",
                    hint=f"resume continues from the last checkpoint; see {run_dir / LOG_FILE}",
                ),
            )
            return 1
        _fail(
            run_dir,
            writer,
            Failed(
                message=f"{type(exc).__name__}: {exc}",
                hint=f"the full traceback is in {run_dir / LOG_FILE}",
            ),
        )
        return 1
    finally:
        reserve.release()


def _claim_threads(run_dir: Path, writer: EventWriter) -> None:
    """Take this engine's share of the cores (engine.training.cores) and say so when it is not all."""
    from engine.training.cores import claim_threads

    try:
        requested = RunConfig.load(run_dir / CONFIG_FILE).training.threads
    except UserError:
        return  # _train reports the config
    plan, wait_note = claim_threads(requested, run_dir)
    if plan.note:
        writer.emit(Log(level="warning", message=plan.note))
    if wait_note:
        writer.emit(Log(level="info", message=wait_note))


def _fail(run_dir: Path, writer: EventWriter, event: Failed) -> None:
    """Record a failure without ever raising: the event if it can be written, the status always."""
    from engine.scaleout import distributed as dist

    try:
        writer.emit(event)
    except OSError:  # the disk is full even now: tell the listeners (the CLI's printer) anyway
        for listener in writer.listeners:
            listener(event)
    if not dist.is_main():
        return
    with contextlib.suppress(OSError):
        write_status(
            run_dir,
            in_place_fallback=True,
            state="failed",
            message=event.message,
            hint=event.hint,
            # Under torchrun the supervisor is still the engine until torchrun ends.
            **({"pid": None} if dist.world_size() <= 1 else {}),
        )


def _train(run_dir: Path, writer: EventWriter, resume: bool) -> str:
    from engine.core.hardware import LEAN_NOTE, resolve_precision, resolve_threads, tune_allocator
    from engine.scaleout import distributed as dist
    from engine.tasks import get_task

    cfg = RunConfig.load(run_dir / CONFIG_FILE).validate()
    tune_allocator(cfg.training.memory_mode)
    if cfg.training.memory_mode == "lean":
        writer.emit(Log(level="info", message=LEAN_NOTE))
    task = get_task(cfg.task)
    precision = resolve_precision(cfg.training.precision, cfg.model.base_precision)
    checkpoint = dist.agreed_checkpoint(run_dir) if resume else None
    if resume and checkpoint is None:
        writer.emit(Log(level="warning", message="no checkpoint to resume from: starting over"))

    writer.emit(Phase(name="loading data"))
    with dist.in_turn():  # one process writes the caches, the others then read them
        data = task.prepare_data(cfg, run_dir)
    # world size and threads per process (the batch's split is redone once the batch is known)
    scale = dist.Scale.of(cfg)
    if scale.world <= 1:
        scale.threads = resolve_threads(cfg.training.threads)
    threads = scale.threads

    writer.emit(Phase(name="loading model"))
    import torch

    torch.set_num_threads(threads)
    quiet_libraries()
    from transformers import set_seed

    set_seed(cfg.training.seed)
    loaded = task.load_model(cfg, data, precision)
    for note in loaded.notes:
        writer.emit(Log(message=note))
    if cfg.training.batch_size == 0:  # auto: for the rows and the chosen max_length
        cfg = cfg.with_batch_size(data.train_size, dist.world_size(), loaded.max_length)
        writer.emit(Log(message=f"batch_size auto: {cfg.training.batch_size}"))
        scale = dist.Scale.of(cfg)
        scale.threads = threads

    writer.emit(Phase(name="tokenizing"))
    with dist.in_turn():
        encoded = task.encode(cfg, data, loaded.tokenizer, run_dir)
    if encoded.cache_hit:
        writer.emit(Log(message="reused the cached tokenization"))
    for note in encoded.notes:
        writer.emit(Log(message=note))
    session = _Session(cfg, task, data, loaded, encoded, precision, threads, checkpoint, scale)
    return session.run(run_dir, writer)


class _Session:
    """One engine's pass over a run: the Trainer, its callbacks, the final save and events."""

    def __init__(
        self,
        cfg: RunConfig,
        task: Any,
        data: Any,
        loaded: Any,
        encoded: Any,
        precision: str,
        threads: int,
        checkpoint: Path | None,
        scale: Any = None,
    ) -> None:
        from engine.scaleout.distributed import Scale

        self.scale = scale or Scale.of(cfg)
        self.cfg, self.task, self.data, self.loaded = cfg, task, data, loaded
        self.encoded, self.precision, self.threads = encoded, precision, threads
        self.checkpoint = checkpoint
        self.has_eval = encoded.eval is not None and len(encoded.eval) > 0

    def _trainer(self, run_dir: Path, writer: EventWriter) -> tuple[Any, Any, Any]:
        from engine.training.callback import EventsCallback, Throughput

        cfg, t_cfg = self.cfg, self.cfg.training
        counter = Throughput()
        train_data = CountingDataset(self.encoded.train, counter)
        hooks = self.task.metric_hooks(cfg, self.data, self.loaded.tokenizer)
        args = training_arguments(
            cfg, run_dir, self.precision, self.has_eval, **self.scale.arguments(run_dir)
        )
        offset = _previous_elapsed(run_dir, _step_of(self.checkpoint)) if self.checkpoint else 0.0
        callback = EventsCallback(
            writer, run_dir, counter, hooks.detail, t_cfg.checkpoint_minutes, offset
        )
        callback.install_signal_handlers()
        callbacks: list[Any] = [callback]
        callbacks += self.task.callbacks(cfg, self.data, self.loaded, writer)
        if t_cfg.early_stopping_patience and self.has_eval:
            from transformers import EarlyStoppingCallback

            callbacks.append(EarlyStoppingCallback(t_cfg.early_stopping_patience))
        trainer = build_trainer(
            self.loaded.model,
            args,
            train_data,
            self.encoded.eval if self.has_eval else None,
            self.task.collator(cfg, self.loaded.tokenizer),
            self.loaded.tokenizer,
            hooks,
            callbacks,
        )
        trainer.token_meter = counter
        return trainer, callback, hooks

    def _choose_threads(self, run_dir: Path, writer: EventWriter, callback: Any) -> list[str]:
        """threads = 0 on one process: the cached count for this shape and machine, or a probe.

        engine.training.thread_probe times the first steps at a few counts; the choice and why
        go to the log (and the monitor) and into the runs root's cache for the next run.
        Returns the lines to log once the run has started.
        """
        if self.cfg.training.threads > 0 or self.scale.world > 1:
            return []  # asked for, or torchrun's share of pinned cores
        import torch

        from engine.core.topology import machine_topology
        from engine.training import thread_probe as tp

        share = self.threads
        lengths = getattr(self.encoded.train, "lengths", None)
        mean = float(self.cfg.model.max_length)
        if callable(lengths):
            found = lengths()
            count = len(found)
            mean = float(found.mean()) if hasattr(found, "mean") else sum(found) / max(1, count)
        key = tp.probe_key(
            tp.model_shape(self.loaded.model),
            self.cfg.task,
            self.precision,
            self.scale.batch_size,
            mean,
            tp.machine_key(),
        )
        cache = tp.ProbeCache(run_dir.parent)
        cached = cache.get(key)
        if cached is not None:
            self._use_threads(run_dir, min(cached.threads, share))
            callback.threads_cap = cached.threads
            if cached.threads > share:  # other engines run: the cached count waits for them
                return [f"{plural(share, 'thread')}, this engine's share ({cached.message()})"]
            return [cached.message()]
        topo = machine_topology()
        logical = topo.usable_logical if share >= topo.usable else 0
        node = max(topo.node_physical()) if len(topo.nodes) > 1 else 0
        probe = tp.ThreadProbe(tp.candidate_counts(share, logical, node))
        steps = total_steps(len(self.encoded.train), self.cfg, self.scale)
        if len(probe.counts) < 2 or steps < tp.MIN_RUN_PROBES * probe.length:
            return []  # nothing to choose from, or too short a run to pay for a probe

        def finish(result: Any) -> None:
            self.threads = result.threads
            if result.worth_storing:
                cache.put(key, result, run_dir.name)
            writer.emit(Log(message=result.message()))

        callback.probe = tp.ProbeRunner(probe, callback.counter, torch.set_num_threads, finish)
        counts = " / ".join(str(c) for c in probe.counts)
        return [f"threads: timing the first {probe.length} steps at {counts} to pick the count"]

    def _use_threads(self, run_dir: Path, threads: int) -> None:
        """Run at `threads` from now on and tell the other engines (the status file)."""
        import torch

        from engine.training.cores import record_threads

        if threads != self.threads:
            torch.set_num_threads(threads)
            record_threads(run_dir, threads)
            self.threads = threads

    def _started(self, run_dir: Path, n_train: int) -> Started:
        trainable, total = self.loaded.model.get_nb_trainable_parameters()
        return Started(
            run_id=run_dir.name,
            model=self.loaded.name,
            task=self.cfg.task,
            config=self.cfg.to_dict(),
            train_size=n_train,
            eval_size=len(self.encoded.eval) if self.has_eval else 0,
            precision=self.precision,
            threads=self.threads,
            total_steps=total_steps(n_train, self.cfg, self.scale),
            trainable_params=int(trainable),
            total_params=int(total),
            resumed_from_step=_step_of(self.checkpoint),
            pid=os.getpid(),
            **self.task.started_fields(self.data),
            **self.scale.started_fields(),
        )

    def _describe(self) -> str:
        loaded = self.loaded
        saved = ", ".join(loaded.modules_to_save) or "no extra modules"
        return (
            f"{self.task.describe_data(self.data)}; LoRA on {', '.join(loaded.target_modules)} "
            f"({loaded.lora_layers}); "
            f"training {saved}; {self.precision}, {plural(self.threads, 'thread')}, "
            f"{loaded.attention} attention{self.scale.describe()}"
        )

    def run(self, run_dir: Path, writer: EventWriter) -> str:
        """Train, evaluate the kept model, save the adapter; returns the final state."""
        trainer, callback, hooks = self._trainer(run_dir, writer)
        thread_lines = self._choose_threads(run_dir, writer, callback)
        writer.emit(self._started(run_dir, len(self.encoded.train)))
        writer.emit(Log(message=self._describe()))
        for line in thread_lines:
            writer.emit(Log(message=line))
        t0 = time.monotonic()
        ckpt = self.checkpoint
        trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
        state = trainer.state
        stopped = callback.stop_requested and state.global_step < state.max_steps
        patience = self.cfg.training.early_stopping_patience
        if not stopped and state.global_step < state.max_steps and patience:
            writer.emit(
                Log(
                    message=(
                        f"stopped early at step {state.global_step}: "
                        f"{self.cfg.best_metric} did not improve for "
                        f"{patience} evaluations"
                    )
                )
            )
        metrics: dict[str, Any] = {}
        if self.has_eval and not stopped:
            metrics = self._final_metrics(trainer, callback, hooks, writer)
        writer.emit(Phase(name="saving"))
        from engine.rundir.adapters import save_adapter

        out = adapter_dir(run_dir, self.cfg)
        if self.scale.main:  # the other processes hold the same weights
            save_adapter(self.loaded, out, self.cfg, metrics, self.task, self.data, run_dir=run_dir)
        if stopped:
            writer.emit(
                Stopped(
                    step=state.global_step,
                    output_dir=str(out),
                    reason=callback.stop_reason,
                    checkpoint=str(last_checkpoint(run_dir) or ""),
                )
            )
            if self.scale.main:
                (run_dir / STOP_FILE).unlink(missing_ok=True)
            return "stopped"
        elapsed = round(callback.elapsed_offset + time.monotonic() - t0, 2)
        writer.emit(
            Finished(
                step=state.global_step, output_dir=str(out), metrics=metrics, elapsed_s=elapsed
            )
        )
        return "finished"

    def _final_metrics(
        self, trainer: Any, callback: Any, hooks: Any, writer: EventWriter
    ) -> dict[str, Any]:
        """The kept model's scores: the last evaluation's when that is the kept model, else anew."""
        state = trainer.state
        best = state.best_model_checkpoint
        keep_best = trainer.args.load_best_model_at_end
        kept_step = _step_of(Path(best)) if keep_best and best else state.global_step
        if callback.last_eval is not None and callback.last_eval[0] == kept_step:
            return dict(callback.last_eval[1])
        kept = "best checkpoint" if keep_best else "final model"
        writer.emit(Phase(name="evaluating", detail=kept))
        raw = trainer.evaluate()
        metrics = {
            k.removeprefix("eval_"): v
            for k, v in raw.items()
            if isinstance(v, (int, float)) and k != "epoch"
        }
        metrics.update(hooks.detail)
        return metrics


def _step_of(checkpoint: Path | None) -> int:
    return int(checkpoint.name.split("-")[-1]) if checkpoint else 0


def _previous_elapsed(run_dir: Path, step: int) -> float:
    """Training time up to the resumed checkpoint (not up to steps the killed engine lost)."""
    from engine.rundir.events import elapsed_at_step

    return elapsed_at_step(read_events(run_dir), step)
