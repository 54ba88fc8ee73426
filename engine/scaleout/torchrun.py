"""The engine over several processes: start torchrun for a run, supervise it, and report.

`supervise` is the body of the run's engine process (engine.runs.supervisor; its pid is in
status.json): it starts
`python -m torch.distributed.run ... -m engine.runs.worker`, turns SIGTERM into a graceful stop that
every rank agrees on, and when a training process dies (kill -9, out of memory) it ends the run as
`failed` with a hint, since the dead process could not say so itself.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from engine.config import RunConfig
from engine.rundir.runs import LOG_FILE, STOP_FILE, write_status
from engine.scaleout.distributed import nproc_of, threads_per_process

JOIN_DIR = "joined"
WORKER_MODULE = "engine.runs.worker"
# processes started before the engine's folders (engine.worker) are still ours
WORKER_MODULES = (WORKER_MODULE, "engine.worker")


def world_of(cfg: RunConfig) -> int:
    """Processes over all machines for a config (nproc x nnodes)."""
    return nproc_of(cfg) * cfg.distributed.nnodes


def free_port() -> int:
    """A TCP port free on localhost right now (for a one-machine rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def torchrun_command(
    cfg: RunConfig, worker_args: list[str], *, node_rank: int = 0, port: int | None = None
) -> list[str]:
    """The torchrun command line: static rendezvous on machine 0, so machine 0 holds rank 0."""
    d = cfg.distributed
    if d.nnodes > 1:
        rendezvous = [
            "torch.distributed.run",
            f"--nnodes={d.nnodes}",
            f"--node_rank={node_rank}",
            "--rdzv_backend=static",
            f"--master_addr={d.master_addr}",
            f"--master_port={port or d.master_port}",
        ]
    else:  # the same static rendezvous, its port on 127.0.0.1 only (engine.scaleout.torchrun_local)
        rendezvous = [
            "engine.scaleout.torchrun_local",
            "--nnodes=1",
            "--rdzv_backend=loopback",
            f"--rdzv_endpoint=127.0.0.1:{port or d.master_port}",
        ]
    return [
        sys.executable,
        "-m",
        *rendezvous,
        f"--nproc_per_node={nproc_of(cfg)}",
        f"--max_restarts={d.max_restarts}",
        "--monitor_interval=1",
        "-m",
        WORKER_MODULE,
        *worker_args,
    ]


def torchrun_env(cfg: RunConfig) -> dict[str, str]:
    """The environment of torchrun and its processes: threads, gloo interface, store."""
    env = dict(os.environ)
    nproc = nproc_of(cfg)
    threads = threads_per_process(cfg.training.threads, nproc)
    # torchrun would set 1 thread per process otherwise; the worker pins them to its own cores.
    env["OMP_NUM_THREADS"] = str(threads)
    # Elastic restarts fail with gloo on the rendezvous' shared TCP store (torch 2.13).
    env["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] = "1"
    if cfg.distributed.gloo_socket_ifname:
        env["GLOO_SOCKET_IFNAME"] = cfg.distributed.gloo_socket_ifname
    elif cfg.distributed.nnodes == 1:
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # one machine: keep the traffic on loopback
    root = str(Path(__file__).resolve().parents[2])  # the folder that holds `engine`
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def root_cause(log_text: str) -> tuple[int | None, str]:
    """(rank, how it ended) of the first failure torchrun reports in its summary."""
    at = log_text.rfind("Root Cause")
    if at < 0:
        return None, ""
    tail = log_text[at:]
    found = re.search(r"rank\s*:\s*(\d+)", tail)
    code = re.search(r"exitcode\s*:\s*(-?\d+)", tail)
    how = ""
    if code:
        n = int(code.group(1))
        how = f"killed by {signal.Signals(-n).name}" if n < 0 else f"exit code {n}"
    return (int(found.group(1)) if found else None), how


def report_failure(run_dir: Path, returncode: int) -> None:
    """After torchrun failed: a `failed` event with the dead rank and a hint, unless one was said."""
    from engine.rundir.events import EventWriter, Failed, read_events

    events = read_events(run_dir)
    last_start = max((i for i, e in enumerate(events) if e.type == "started"), default=-1)
    final = next(
        (
            e
            for e in reversed(events[last_start + 1 :])
            if e.type in ("finished", "stopped", "failed")
        ),
        None,
    )
    if final is not None and not getattr(final, "message", "").startswith("lost contact"):
        return
    try:
        text = (run_dir / LOG_FILE).read_text(encoding="utf-8", errors="replace")[-20000:]
    except OSError:
        text = ""
    dead, how = root_cause(text)
    who = f"training process rank {dead}" if dead is not None else "a training process"
    EventWriter(run_dir).emit(
        Failed(
            message=f"{who} died ({how or f'torchrun exit code {returncode}'})",
            hint=_resume_hint(run_dir)
            + f"; set max_restarts to restart by itself; details in {run_dir / LOG_FILE}",
        )
    )


def _resume_hint(run_dir: Path) -> str:
    from engine.rundir.runs import last_checkpoint

    found = last_checkpoint(run_dir)
    if found is None:
        return "no checkpoint was saved yet: resume starts over"
    return f"'finetune-tui resume {run_dir.name}' continues from {found.name}"


def _die_with_parent() -> None:
    """In torchrun's process: get SIGTERM when the supervisor dies (kill -9 of the engine pid).

    torchrun then stops its processes, which save and stop as on a stop request, instead of
    training on unseen while the run looks crashed (and a resume starts a second copy).
    """
    import contextlib
    import ctypes

    with contextlib.suppress(OSError, AttributeError):  # not Linux/glibc
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def supervise(run_dir: Path, worker_args: list[str], cfg: RunConfig, node_rank: int = 0) -> int:
    """Run torchrun to the end; SIGTERM/SIGINT become a graceful stop. Returns torchrun's code.

    On machine 0 the stop is the run's request file. A joining machine has no such file, so it
    sends SIGTERM to its processes (their handlers stop, agreed with every rank at the step's
    end); its torchrun gets a session of its own so that a lost SSH terminal (SIGHUP) or a
    Ctrl-C reaches only this supervisor.
    """
    port = free_port() if cfg.distributed.nnodes == 1 else None
    cmd = torchrun_command(cfg, worker_args, node_rank=node_rank, port=port)
    stop_file = run_dir / STOP_FILE
    proc: subprocess.Popen | None = None

    def ask_stop(signum: int, _frame: object) -> None:
        if node_rank == 0:
            stop_file.write_text(str(time.time()), encoding="utf-8")
        elif proc is not None:
            for child in _workers(proc.pid):
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, ask_stop)
    signal.signal(signal.SIGINT, ask_stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    print(" ".join(cmd), flush=True)
    proc = subprocess.Popen(
        cmd,
        env=torchrun_env(cfg),
        stdin=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,
        start_new_session=node_rank > 0,
    )
    code = proc.wait()
    if node_rank == 0 and code != 0:
        report_failure(run_dir, code)
        write_status(run_dir, state="failed")
    return code


def _workers(agent_pid: int) -> list:
    """The training processes under a torchrun agent."""
    import psutil

    try:
        children = psutil.Process(agent_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    out = []
    for child in children:
        try:
            line = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if any(m in line for m in WORKER_MODULES) and "--nproc_per_node" not in line:
            out.append(child)
    return out
