"""Other machines join a run on machine 0: `finetune-tui join HOST:PORT --node_rank N --nnodes M`.

A joining machine needs no config: after the processes meet, rank 0 sends the run id, its
config.toml and whether it resumes (as bytes, never pickled). Each joining machine keeps its own
copy of the run under `<runs root>/joined/<run id>` (tokenized cache, checkpoints when the
machines share no filesystem), out of its run list, so a resume finds its checkpoints again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from engine.config import RunConfig
from engine.core.errors import UserError
from engine.rundir.runs import CONFIG_FILE

JOINED_DIR = "joined"


def parse_address(address: str) -> tuple[str, int]:
    """HOST:PORT of machine 0 (PORT defaults to 29500)."""
    host, _, port = address.strip().rpartition(":") if ":" in address else (address, "", "29500")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 1024 <= int(port) <= 65535:
        raise UserError(
            f"'{address}' is not HOST:PORT",
            where="join",
            hint="give machine 0's address and master_port, e.g. 10.0.0.5:29500",
        )
    return host, int(port)


def join_config(
    address: str, node_rank: int, nnodes: int, nproc: str, **extra: object
) -> RunConfig:
    """The scale-out settings a joining machine needs (the rest comes from machine 0)."""
    host, port = parse_address(address)
    cfg = RunConfig()
    d = cfg.distributed
    d.master_addr, d.master_port, d.node_rank, d.nnodes, d.nproc = (
        host,
        port,
        node_rank,
        nnodes,
        nproc,
    )
    for name, value in extra.items():
        if value is not None:
            cfg.set(name, value)
    cfg.validate()
    if node_rank < 1:
        raise UserError(
            "node_rank 0 is the machine that runs the run",
            where="join --node_rank",
            hint=f"give each joining machine its own number in 1..{nnodes - 1}",
        )
    return cfg


def run_join(cfg: RunConfig, root: Path, *, detach: bool = False) -> int:
    """Start torchrun for this machine's share of the run (foreground, or detached)."""
    from engine.scaleout.torchrun import supervise

    folder = root / JOINED_DIR
    folder.mkdir(parents=True, exist_ok=True)
    d = cfg.distributed
    if detach:
        args = [sys.executable, "-m", "engine.scaleout.join", str(root), cfg.to_toml()]
        log = folder / f"join-{d.master_addr}-{d.master_port}-node{d.node_rank}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=str(folder),
            )
        print(f"joined in the background (pid {proc.pid}); its output goes to {log}")
        return 0
    return supervise(folder, ["--join", str(root)], cfg, node_rank=d.node_rank)


def agree_on_run(run_dir: Path | None, join_root: Path | None, resume: bool) -> tuple[Path, bool]:
    """Every process learns rank 0's run (id, config, resume); joiners get a local copy of it."""
    from engine.scaleout import distributed as dist

    message = None
    if dist.is_main() and run_dir is not None:
        message = json.dumps(
            {
                "run_id": run_dir.name,
                "config": (run_dir / CONFIG_FILE).read_text(encoding="utf-8"),
                "resume": resume,
            }
        )
    info = json.loads(dist.broadcast_text(message))
    if join_root is not None:
        run_dir = join_root / JOINED_DIR / info["run_id"]
        if dist.local_rank() == 0:
            run_dir.mkdir(parents=True, exist_ok=True)
            tmp = run_dir / f".{CONFIG_FILE}.{os.getpid()}"
            tmp.write_text(info["config"], encoding="utf-8")
            tmp.replace(run_dir / CONFIG_FILE)
    dist.barrier()  # every rank, so the collectives that follow stay paired
    assert run_dir is not None
    return run_dir, bool(info["resume"])


def main(argv: list[str] | None = None) -> int:
    """Detached join: `python -m engine.scaleout.join ROOT CONFIG_TOML`."""
    args = list(sys.argv[1:] if argv is None else argv)
    root, text = Path(args[0]), args[1]
    import signal

    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    return run_join(RunConfig.from_toml(text), root)


if __name__ == "__main__":
    sys.exit(main())
