"""The CPUs this process may use: affinity, cgroup quota, physical cores vs SMT siblings, NUMA.

Everything is read below one root folder (`/` on a real machine), so tests build a fake
`/sys` and `/proc` in a temporary folder and check the rules against a 64-core, 2-socket
server with SMT, a container with `--cpus 2`, or a narrowed affinity mask.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

REAL_ROOT = Path("/")


def parse_cpu_list(text: str) -> list[int]:
    """CPU ids from a kernel list such as '0-3,8,10-11' (empty or bad text: none)."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                lo, hi = part.split("-", 1)
                cpus.extend(range(int(lo), int(hi) + 1))
            else:
                cpus.append(int(part))
        except ValueError:
            return []
    return cpus


@dataclass(frozen=True)
class CpuTopology:
    """The CPUs this process may run on, grouped into physical cores and NUMA nodes."""

    allowed: tuple[int, ...]  # logical CPUs in the affinity mask
    cores: tuple[tuple[int, ...], ...]  # physical cores among them: each its allowed siblings
    nodes: tuple[tuple[int, ...], ...]  # NUMA nodes that hold allowed CPUs: their allowed CPUs
    quota: float | None = None  # CPUs' worth of time the cgroup allows (None: no quota)
    model: str = ""  # CPU model name

    @property
    def logical(self) -> int:
        """Logical CPUs the affinity mask allows."""
        return len(self.allowed)

    @property
    def physical(self) -> int:
        """Physical cores among the allowed CPUs (SMT siblings count once)."""
        return len(self.cores)

    @property
    def quota_cores(self) -> int | None:
        """Whole CPUs the quota pays for (a 1.5-CPU quota runs 1 thread unthrottled)."""
        return None if self.quota is None else max(1, math.floor(self.quota + 1e-6))

    @property
    def usable(self) -> int:
        """Threads to plan with: one per physical core, capped by the cgroup quota.

        SMT siblings share one core's vector units, so a second thread on a sibling adds little
        to matmul-bound training; the thread probe may still try the logical count.
        """
        n = self.physical
        if self.quota_cores is not None:
            n = min(n, self.quota_cores)
        return max(1, n)

    @property
    def usable_logical(self) -> int:
        """Logical CPUs capped by the quota: the most threads worth trying."""
        n = self.logical
        if self.quota_cores is not None:
            n = min(n, self.quota_cores)
        return max(1, n)

    def pin_order(self) -> list[int]:
        """Allowed CPUs in the order processes should take them.

        One CPU per physical core first, node by node (so a process's cores share one NUMA
        node's memory), then the SMT siblings in the same order.
        """
        node_of = {cpu: i for i, node in enumerate(self.nodes) for cpu in node}
        cores = sorted(self.cores, key=lambda c: (node_of.get(c[0], 0), c[0]))
        first = [c[0] for c in cores]
        rest = [cpu for c in cores for cpu in c[1:]]
        return first + rest

    def node_cores(self) -> list[list[int]]:
        """Each NUMA node's allowed CPUs in pin order (physical cores first, then siblings)."""
        order = self.pin_order()
        return [[c for c in order if c in members] for members in map(set, self.nodes)]

    def node_physical(self) -> list[int]:
        """Physical cores of each NUMA node."""
        return [sum(1 for c in self.cores if c[0] in set(node)) for node in self.nodes]

    def per_process(self, nproc: int) -> int:
        """Threads for each of `nproc` processes: an even share of physical cores (and quota),
        within one NUMA node when the processes split evenly over the nodes."""
        nproc = max(1, nproc)
        threads = self.usable // nproc
        nodes = len(self.nodes)
        if nodes > 1 and nproc % nodes == 0:
            smallest = min(self.node_physical())
            threads = min(threads, smallest // (nproc // nodes))
        return max(1, threads)

    def process_cpus(self, local: int, nproc: int, threads: int) -> list[int]:
        """The CPUs local rank `local` of `nproc` pins to (empty: they do not fit, do not pin).

        Processes split evenly over NUMA nodes take their cores inside their node; otherwise
        they take consecutive cores of the pin order.
        """
        nodes = len(self.nodes)
        if nodes > 1 and nproc % nodes == 0:
            per_node = nproc // nodes
            mine = self.node_cores()[local // per_node]
            start = (local % per_node) * threads
            if start + threads <= len(mine):
                return sorted(mine[start : start + threads])
            return []
        order = self.pin_order()
        if threads * nproc > len(order):
            return []  # oversubscribed on purpose: let the kernel spread them
        return sorted(order[local * threads : (local + 1) * threads])

    def describe(self) -> str:
        """One line: what the process may use and what limits it."""
        parts = [f"{self.logical} CPUs allowed"]
        if self.physical != self.logical:
            parts.append(f"{self.physical} physical cores (SMT)")
        if len(self.nodes) > 1:
            parts.append(f"{len(self.nodes)} NUMA nodes")
        if self.quota is not None:
            parts.append(f"cgroup quota {self.quota:g} CPUs")
        return ", ".join(parts) + f": {self.usable} usable"


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _affinity(root: Path) -> list[int]:
    if root == REAL_ROOT:
        try:
            return sorted(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            return list(range(os.cpu_count() or 1))
    for line in _read(root / "proc/self/status").splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return parse_cpu_list(line.split(":", 1)[1])
    return parse_cpu_list(_read(root / "sys/devices/system/cpu/online")) or [0]


def _physical_cores(root: Path, allowed: list[int]) -> tuple[tuple[int, ...], ...]:
    """Allowed CPUs grouped by (package, core); a CPU without topology files is its own core."""
    groups: dict[tuple[int, str], list[int]] = {}
    for cpu in allowed:
        topo = root / f"sys/devices/system/cpu/cpu{cpu}/topology"
        siblings = _read(topo / "thread_siblings_list") or _read(topo / "core_cpus_list")
        listed = parse_cpu_list(siblings)
        key = (min(listed), "") if listed else (cpu, "alone")
        groups.setdefault(key, []).append(cpu)
    return tuple(tuple(sorted(g)) for _, g in sorted(groups.items()))


def _numa_nodes(root: Path, allowed: list[int]) -> tuple[tuple[int, ...], ...]:
    base = root / "sys/devices/system/node"
    mask = set(allowed)
    nodes = []
    try:
        names = sorted(
            (p for p in base.iterdir() if p.name.startswith("node") and p.name[4:].isdigit()),
            key=lambda p: int(p.name[4:]),
        )
    except OSError:
        names = []
    for node in names:
        cpus = tuple(c for c in parse_cpu_list(_read(node / "cpulist")) if c in mask)
        if cpus:
            nodes.append(cpus)
    return tuple(nodes) or (tuple(allowed),)


def _v2_quota(text: str) -> float | None:
    parts = text.split()
    if len(parts) >= 2 and parts[0] != "max":
        try:
            return int(parts[0]) / int(parts[1])
        except (ValueError, ZeroDivisionError):
            return None
    return None


def _v1_quota(folder: Path) -> float | None:
    try:
        quota = int(_read(folder / "cpu.cfs_quota_us"))
        period = int(_read(folder / "cpu.cfs_period_us"))
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _up_to(mount: Path, sub: str) -> list[Path]:
    """`mount/sub` and each parent folder up to `mount` itself."""
    folders = [mount]
    here = mount
    for name in [p for p in sub.strip("/").split("/") if p and p != ".."]:
        here = here / name
        folders.append(here)
    return folders


def cgroup_quota(root: Path = REAL_ROOT) -> float | None:
    """The tightest CPU quota over this process's cgroup and its parents (v2 and v1)."""
    found: list[float] = []
    v2_path, v1_path = "", ""
    for line in _read(root / "proc/self/cgroup").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            v2_path = parts[2]
        elif "cpu" in parts[1].split(","):
            v1_path = parts[2]
    cg = root / "sys/fs/cgroup"
    for folder in _up_to(cg, v2_path):
        if (q := _v2_quota(_read(folder / "cpu.max"))) is not None:
            found.append(q)
    for mount in (cg / "cpu", cg / "cpu,cpuacct", cg / "cpuacct,cpu"):
        for folder in _up_to(mount, v1_path):
            if (q := _v1_quota(folder)) is not None:
                found.append(q)
    return min(found) if found else None


def cpu_model(root: Path = REAL_ROOT) -> str:
    """The CPU's model name from /proc/cpuinfo ('' where unknown)."""
    for line in _read(root / "proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return ""


def read_topology(root: Path = REAL_ROOT) -> CpuTopology:
    """The topology below `root` (the real machine by default)."""
    allowed = _affinity(root)
    return CpuTopology(
        allowed=tuple(allowed),
        cores=_physical_cores(root, allowed),
        nodes=_numa_nodes(root, allowed),
        quota=cgroup_quota(root),
        model=cpu_model(root),
    )


def machine_topology() -> CpuTopology:
    """This machine's topology (read again only when the affinity mask changed)."""
    return _topology_for(tuple(_affinity(REAL_ROOT)))


@lru_cache(maxsize=4)
def _topology_for(allowed: tuple[int, ...]) -> CpuTopology:
    return read_topology(REAL_ROOT)
