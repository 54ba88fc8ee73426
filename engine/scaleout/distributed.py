"""Inside a training process under torchrun: ranks, agreement across ranks, cores, the batch split."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.core.errors import UserError

# One process per this many cores for nproc = "auto": on 2..15 cores one process with every core
# wins (bench/scale.py measured 1 x 2 against 2 x 1 here); on big machines one process cannot keep
# many threads busy on LoRA's small matrices, so several processes of 8 threads share the cores.
CORES_PER_AUTO_PROCESS = 8
SHARED_CHECK_FILE = ".shared-check"


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def world_size() -> int:
    """How many training processes take part (1 outside torchrun)."""
    return _env_int("WORLD_SIZE", 1)


def rank() -> int:
    """This process's global rank (0 outside torchrun)."""
    return _env_int("RANK", 0)


def local_rank() -> int:
    """This process's rank on its machine."""
    return _env_int("LOCAL_RANK", 0)


def local_world_size() -> int:
    """How many training processes run on this machine."""
    return _env_int("LOCAL_WORLD_SIZE", 1)


def node_rank() -> int:
    """This machine's number (torchrun's GROUP_RANK)."""
    return _env_int("GROUP_RANK", 0)


def is_main() -> bool:
    """True for the process that writes events, status and the adapter (global rank 0)."""
    return rank() == 0


def restart_count() -> int:
    """How often torchrun has restarted the processes of this run (0 on the first start)."""
    return _env_int("TORCHELASTIC_RESTART_COUNT", 0)


def restarts_left() -> int:
    """How many more automatic restarts torchrun allows."""
    return max(0, _env_int("TORCHELASTIC_MAX_RESTARTS", 0) - restart_count())


def resolve_nproc(
    value: str | int, cores: int | None = None, global_batch: int = 0, nodes: int | None = None
) -> int:
    """The process count on this machine for a config's nproc ('auto' or a number).

    'auto' takes one process per CORES_PER_AUTO_PROCESS usable cores (physical cores, capped by
    a cgroup quota), at least one per NUMA node, a multiple of the nodes where it can be (each
    process then stays on one node's memory), lowered to a count that divides the global batch
    (12 on 64 cores: 6 processes, not 8, which could not share 12 examples).
    """
    text = str(value).strip().lower()
    if text == "auto":
        from engine.core.topology import machine_topology

        if cores is None or nodes is None:
            topo = machine_topology()
            cores = cores or topo.usable
            nodes = nodes or len(topo.nodes)
        return auto_nproc(cores, nodes, global_batch)
    return max(1, int(text))


def auto_nproc(cores: int, nodes: int = 1, global_batch: int = 0) -> int:
    """Pure rule behind nproc = auto (see resolve_nproc)."""
    most = max(1, cores // CORES_PER_AUTO_PROCESS)
    if nodes > 1 and cores >= 2 * nodes:
        most = max(most, nodes)
    options = [n for n in range(1, most + 1) if global_batch <= 0 or global_batch % n == 0]
    spread = [n for n in options if n % max(1, nodes) == 0]
    return max(spread or options)


def nproc_of(cfg: Any) -> int:
    """Processes on this machine for a run's config."""
    global_batch = cfg.batch_size_for() * cfg.training.grad_accum
    return resolve_nproc(cfg.distributed.nproc, global_batch=global_batch)


def threads_per_process(requested: int, nproc: int, cores: int | None = None) -> int:
    """Torch threads of one process: the setting, else this process's share of the cores
    (engine.core.topology: physical cores, the quota, within one NUMA node where it can)."""
    if requested > 0:
        return requested
    if cores is not None:
        return max(1, cores // max(1, nproc))
    from engine.core.topology import machine_topology

    return machine_topology().per_process(nproc)


def pin_to_cores(local: int, nproc: int, threads: int) -> list[int]:
    """Pin this process to its own `threads` cores (disjoint per local rank) when they fit.

    engine.core.topology picks them: one CPU per physical core, inside one NUMA node when
    the processes split evenly over the nodes, so no two threads share a core's vector
    units and no process spans two sockets.
    """
    from engine.core.topology import machine_topology

    mine = machine_topology().process_cpus(local, nproc, threads)
    if not mine:
        return []
    try:
        os.sched_setaffinity(0, mine)
    except (OSError, AttributeError):
        return []
    return mine


def split_batch(batch_size: int, grad_accum: int, world: int) -> tuple[int, int]:
    """(per-process batch, grad_accum) so that batch x accum x world = the config's global batch.

    Keeps the per-process batch when it can and recomputes grad_accum; otherwise halves (etc.)
    the per-process batch. Refuses a world size that cannot divide the global batch.
    """
    total = batch_size * grad_accum
    if world <= 1:
        return batch_size, grad_accum
    if total % world:
        raise UserError(
            f"{world} processes cannot share a global batch of {total} "
            f"(batch_size {batch_size} x grad_accum {grad_accum}) evenly",
            where="distributed.nproc",
            hint=f"use a world size that divides {total}, or a batch_size x grad_accum that "
            f"{world} divides (e.g. batch_size {world * max(1, batch_size // world)})",
            field="distributed.nproc",
        )
    share = total // world
    for per in range(min(batch_size, share), 0, -1):
        if share % per == 0:
            return per, share // per
    return 1, share  # pragma: no cover - per = 1 always divides


@dataclass
class Scale:
    """This process's place in the run: world size, threads, and the global batch's split."""

    world: int = 1
    nproc_per_node: int = 1
    threads: int = 1
    batch_size: int = 1
    grad_accum: int = 1
    main: bool = True

    @classmethod
    def of(cls, cfg: Any) -> Scale:
        """Work it out from the config and torchrun's environment; pins the process's cores."""
        t = cfg.training
        world, local = world_size(), local_world_size()
        threads = threads_per_process(t.threads, local)
        if world > 1:
            pin_to_cores(local_rank(), local, threads)
        batch, accum = split_batch(cfg.batch_size_for(world=world), t.grad_accum, world)
        return cls(world, local, threads, batch, accum, is_main())

    @property
    def nnodes(self) -> int:
        """Machines taking part (the same processes on each)."""
        return max(1, self.world // max(1, self.nproc_per_node))

    def arguments(self, run_dir: Path) -> dict[str, Any]:
        """TrainingArguments for this split (gloo; checkpoints on each machine without sharing)."""
        if self.world <= 1:
            return {
                "per_device_train_batch_size": self.batch_size,
                "gradient_accumulation_steps": self.grad_accum,
            }
        return {
            "per_device_train_batch_size": self.batch_size,
            "gradient_accumulation_steps": self.grad_accum,
            "ddp_backend": "gloo",  # only here: a backend makes a single process init a group
            "save_on_each_node": not shared_run_dir(run_dir),
        }

    def started_fields(self) -> dict[str, Any]:
        """The `started` event's scale-out fields."""
        return {
            "world_size": self.world,
            "nnodes": self.nnodes,
            "nproc_per_node": self.nproc_per_node,
            "batch_size": self.batch_size,
            "grad_accum": self.grad_accum,
        }

    def describe(self) -> str:
        """A clause for the run's first log line ('' for one process)."""
        if self.world <= 1:
            return ""
        return (
            f"; {self.world} processes ({self.nnodes} machines x {self.nproc_per_node}) x "
            f"batch {self.batch_size} x grad_accum {self.grad_accum}"
        )


def lost_contact(exc: BaseException) -> bool:
    """True for the gloo errors a process gets when a peer process dies."""
    text = f"{type(exc).__name__} {exc}".lower()
    return any(w in text for w in ("gloo", "connection", "distbackend", "peer", "socket"))


def agreed_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint every process has (each machine may keep its own copies)."""
    from engine.rundir.runs import CHECKPOINTS_DIR, last_checkpoint

    mine = last_checkpoint(run_dir)
    step = min_rank(int(mine.name.split("-")[-1]) if mine else -1)
    if step < 0:
        return None
    path = run_dir / CHECKPOINTS_DIR / f"checkpoint-{step}"
    if any_rank(not (path / "trainer_state.json").is_file())[0]:
        raise UserError(
            f"not every machine has checkpoint-{step}",
            where=str(run_dir / CHECKPOINTS_DIR),
            hint="copy that checkpoint folder to the machines that lack it, or start over",
        )
    return path


# -- collectives (gloo) --------------------------------------------------------------------------
def init_process_group() -> bool:
    """Join the torchrun job's gloo group (no-op for one process); True when distributed."""
    if world_size() <= 1:
        return False
    import datetime

    import torch.distributed as dist

    if dist.is_initialized():
        return True
    timeout = datetime.timedelta(minutes=30)
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        # Static rendezvous hands every attempt the same store, so after a restart gloo would
        # read the dead processes' addresses (connectFullMesh: connection refused). A key
        # prefix per attempt gives each restart a clean slate.
        store = dist.PrefixStore(
            f"finetune-tui/attempt-{restart_count()}",
            dist.TCPStore(
                os.environ["MASTER_ADDR"],
                int(os.environ["MASTER_PORT"]),
                world_size(),
                is_master=False,
                timeout=timeout,
            ),
        )
        dist.init_process_group(
            "gloo", store=store, rank=rank(), world_size=world_size(), timeout=timeout
        )
    else:
        dist.init_process_group("gloo", timeout=timeout)
    return True


def _active() -> bool:
    if world_size() <= 1:
        return False
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def any_rank(*flags: bool) -> list[bool]:
    """Each flag OR-ed over every rank (one small all-reduce), so all ranks decide alike."""
    if not _active():
        return list(flags)
    import torch
    import torch.distributed as dist

    t = torch.tensor([1 if f else 0 for f in flags], dtype=torch.int32)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def sum_ranks(*values: float) -> list[float]:
    """Each value summed over every rank."""
    if not _active():
        return list(values)
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def min_rank(value: int) -> int:
    """The smallest of `value` over every rank."""
    if not _active():
        return value
    import torch
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def broadcast_text(text: str | None) -> str:
    """Rank 0's text on every rank (as bytes in a tensor: nothing is unpickled)."""
    if not _active():
        return text or ""
    import torch
    import torch.distributed as dist

    data = (text or "").encode("utf-8") if is_main() else b""
    size = torch.tensor([len(data)], dtype=torch.int64)
    dist.broadcast(size, src=0)
    buf = (
        torch.frombuffer(bytearray(data), dtype=torch.uint8)
        if is_main() and data
        else torch.zeros(int(size.item()), dtype=torch.uint8)
    )
    if int(size.item()):
        dist.broadcast(buf, src=0)
    return bytes(buf.tolist()).decode("utf-8")


def barrier() -> None:
    """Wait for every rank."""
    if _active():
        import torch.distributed as dist

        dist.barrier()


@contextmanager
def in_turn() -> Iterator[None]:
    """Rank 0 first, then the first process of every other machine, then the rest.

    For work that writes a cache into the run directory: the later ones find it (same machine
    or a shared filesystem) instead of writing the same files at once.
    """
    if not _active():
        yield
        return
    group = 0 if rank() == 0 else (1 if local_rank() == 0 else 2)
    for turn in range(3):
        if turn == group:
            yield
        if turn < 2:
            barrier()


def shared_run_dir(run_dir: Path) -> bool:
    """True when every machine sees rank 0's run directory (a token rank 0 writes, others read)."""
    if not _active():
        return True
    token = secrets.token_hex(8) if is_main() else None
    if is_main():
        (run_dir / SHARED_CHECK_FILE).write_text(token or "", encoding="utf-8")
    token = broadcast_text(token)
    try:
        seen = (run_dir / SHARED_CHECK_FILE).read_text(encoding="utf-8") == token
    except OSError:
        seen = False
    return not any_rank(not seen)[0]
