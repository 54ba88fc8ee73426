"""What this CPU can do: native bf16, the cores this process may use, free memory."""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path

from engine.core.errors import UserError

BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags from /proc/cpuinfo (empty where unavailable)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16() -> bool:
    """True when the CPU has native bf16 matmul (AMX or AVX512-BF16) and torch may use it."""
    return any(flag in cpu_flags() for flag in BF16_FLAGS) and not isa_capped_below_avx512()


def isa_capped_below_avx512() -> bool:
    """True when ATEN_CPU_CAPABILITY or ONEDNN_MAX_CPU_ISA keep torch's kernels below AVX512.

    Then bf16 matmuls are emulated (~2 GFLOP/s against fp32's hundreds) even where the CPU's
    flags list AVX512-BF16 or AMX, so `precision auto` must not pick bf16.
    """
    aten = os.environ.get("ATEN_CPU_CAPABILITY", "").strip().lower()
    onednn = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    return aten in ("default", "avx2") or (
        bool(onednn) and onednn != "ALL" and not onednn.startswith(("AVX512", "AVX10", "AMX"))
    )


def bf16_kind() -> str:
    """Which native bf16 the CPU has ('AMX', 'AVX512-BF16' or '')."""
    flags = cpu_flags()
    if "amx_bf16" in flags:
        return "AMX"
    if "avx512_bf16" in flags:
        return "AVX512-BF16"
    return ""


def resolve_precision(requested: str, base: str = "auto") -> str:
    """Map auto/bf16/fp32 to what will really run; fp16 is refused with the reason.

    `base` is the base_precision setting: a bf16 base trains in bf16 and an fp32 base in fp32
    when precision is auto; a bf16 base on a CPU without native bf16 is refused.
    """
    if base == "bf16" and not native_bf16():
        raise UserError(
            "this CPU has no native bf16 (AMX or AVX512-BF16): a bf16 base would train ~100x "
            "slower than fp32",
            where="model.base_precision",
            hint="use base_precision int8 (a quarter of fp32's memory) or auto",
            field="model.base_precision",
        )
    if requested == "fp16":
        raise UserError(
            "fp16 does not train on a CPU: accelerate silently runs fp32, and fp16 weights "
            "train without loss scaling and do not learn",
            where="training.precision",
            hint="use auto (bf16 where the CPU has it, else fp32)",
            field="training.precision",
        )
    if requested == "auto":
        if base in ("bf16", "fp32"):
            return base
        return "bf16" if native_bf16() else "fp32"
    return requested


def pad_multiple(precision: str) -> int | None:
    """What dynamic padding rounds a batch's length up to, by precision (None: not rounded).

    fp32 steps cost what their padded tokens cost, so rounding short texts up to multiples of 8
    cost 14-25% of the speed (SST-2, bench/speed.py). bf16 ran as fast either way, and rounding
    keeps the shapes few: oneDNN's per-shape bf16 kernels took peak RSS from 0.9 to 1.4 GB on
    exact lengths.
    """
    return 8 if precision == "bf16" else None


def describe_auto_precision() -> str:
    """What 'auto' resolves to on this CPU, for the form and the CLI."""
    kind = bf16_kind()
    return f"bf16 (native {kind})" if kind else "fp32 (no native bf16 on this CPU)"


def available_cores() -> int:
    """Threads to plan with: one per physical core this process may use, capped by a cgroup quota.

    engine.core.topology reads the affinity mask, the quota, SMT siblings and NUMA nodes.
    """
    from engine.core.topology import machine_topology

    return machine_topology().usable


_ENGINE_THREADS: int | None = None


def set_engine_threads(threads: int | None) -> None:
    """Record the share of cores this engine claimed (engine.training.cores); None forgets it."""
    global _ENGINE_THREADS
    _ENGINE_THREADS = threads


def resolve_threads(requested: int) -> int:
    """The torch thread count to use: the engine's claimed share, else asked, else all cores."""
    if _ENGINE_THREADS is not None:
        return _ENGINE_THREADS
    return requested if requested > 0 else available_cores()


def free_memory_bytes() -> int:
    """Memory available to start new work, in bytes."""
    import psutil

    return int(psutil.virtual_memory().available)


FAST_MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's maximum on 64-bit
LEAN_MMAP_THRESHOLD = 1024 * 1024
LARGE_MODEL_MMAP_THRESHOLD = 4 * 1024 * 1024
_mmap_threshold = FAST_MMAP_THRESHOLD  # the one this process set last
LEAN_NOTE = "memory_mode lean: freed blocks from 1 MB up go back to the system at once"


def tune_allocator(mode: str = "fast") -> None:
    """Set glibc's heap for a training run: `fast` keeps a step's freed blocks for reuse, `lean`
    returns every block from 1 MB up at once.

    Dynamic padding gives tensors of many sizes. glibc's default (a sliding mmap threshold)
    let MiniLM training grow from 0.6 to 1.5 GB in 100 steps; a small trim threshold fixed that
    but sent every activation through mmap/munmap, so each step page-faulted its memory afresh
    (a third of a step in the kernel). `fast`: a fixed, high mmap threshold and a trim threshold
    of 64 MB keep freed blocks for reuse while capping what is held (about 1 GB over a full
    epoch). But a decoder step with checkpointed layers leaves its 1-4 MB hidden-state blocks
    scattered through that heap: DPO at the SmolLM2-135M shape held 1.6 GB of heap with 0.7 GB in
    use. `lean` (1 MB) peaked at 1.44 GB against fast's 1.77 GB (both with use_huge_pages), at
    1.3x the step time (bench/preference.py, side ours-lean).
    """
    import ctypes
    import ctypes.util

    global _mmap_threshold
    name = ctypes.util.find_library("c")
    if not name:
        return
    threshold = LEAN_MMAP_THRESHOLD if mode == "lean" else FAST_MMAP_THRESHOLD  # auto starts fast
    _mmap_threshold = threshold
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt(-3, threshold)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 64 * 1024 * 1024)  # M_TRIM_THRESHOLD
        libc.mallopt(-8, 2)  # M_ARENA_MAX
    except (OSError, AttributeError):  # not glibc
        pass


def mmap_large_blocks(threshold: int = LARGE_MODEL_MMAP_THRESHOLD) -> None:
    """Serve blocks from `threshold` up with mmap, so freeing them returns them at once.

    For a 3B-8B model one layer's temporaries (dequantised weights, fp32 activations of 4-32 MB)
    fragment the heap under tune_allocator's 32 MB threshold: the Llama-3.2-3B shape in int8 grew
    by ~150 MB per layer in the forward pass (6 layers: peak 4.24 GB; 3.10 GB at 4 MB). The page
    faults this costs are small next to such a model's matmuls. Never raises a lower threshold.
    """
    import contextlib
    import ctypes
    import ctypes.util

    global _mmap_threshold
    name = ctypes.util.find_library("c")
    if name and threshold < _mmap_threshold:
        _mmap_threshold = threshold
        with contextlib.suppress(OSError, AttributeError):  # not glibc
            ctypes.CDLL(name).mallopt(-3, threshold)  # M_MMAP_THRESHOLD


def use_huge_pages() -> None:
    """Ask torch for transparent huge pages on its blocks from 2 MB up (unless the user chose).

    Must run before torch allocates anything (torch reads THP_MEM_ALLOC_ENABLE once). A block
    served by mmap then faults in 2 MB pages, not 4 KB ones, so returning blocks at once costs
    little, and the heap packs better: DPO at the SmolLM2-135M shape peaked at 1.78 GB against
    2.35 GB, 64 s against 70 s for 64 pairs (fp32, 1 thread); with a 1 MB mmap threshold the
    page faults cost +13% of a step against +36% without (a forward and backward in a loop).
    """
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")


# How long a waiting OpenMP thread spins before it sleeps, on a machine other programs leave idle
# (libgomp's GOMP_SPINCOUNT; measured below).
SPIN_COUNT = 10_000
# Other programs busier than this (in cores) when a run starts: its waiting threads sleep.
SPIN_IF_OUTSIDE_BELOW = 0.5
# Set beside the OpenMP variables when they are ours, not the user's: the processes we start
# (the TUI's engines, torchrun's) inherit them and must still tell them apart.
WAIT_POLICY_MARK = "FINETUNE_TUI_OMP_DEFAULT"
_WAIT_POLICY_OURS = False  # True while OMP_WAIT_POLICY is the one sleep_waiting_threads set
_WAIT_NOTE: str | None = None  # what settle_wait_policy chose (it decides once per process)


def sleep_waiting_threads() -> None:
    """Make OpenMP threads sleep, not spin, while they wait (unless the user set a policy).

    Must run before torch loads its OpenMP runtime. On a machine where other processes want the
    cores too (a shared server, the TUI's own work, several runs), a spinning thread holds a core
    its partner needs to reach the barrier both wait at: MiniLM training with 2 threads ran 4-13x
    slower than with sleeping waits on a 2-core machine at load 11-19 (bench/speed.py, `plain`
    vs `plain-passive`). The user's own OMP_WAIT_POLICY (or GOMP_SPINCOUNT) wins. A training
    engine then picks its own policy from the machine's load (settle_wait_policy).
    """
    global _WAIT_POLICY_OURS
    if os.environ.get(WAIT_POLICY_MARK) == "1":  # a parent of ours (the TUI, the CLI) set it
        _WAIT_POLICY_OURS = True
    elif "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        os.environ[WAIT_POLICY_MARK] = "1"
        _WAIT_POLICY_OURS = True


def wait_policy_for(outside: float) -> tuple[dict[str, str], str]:
    """Pure rule: the OpenMP environment for a run that starts while other programs keep
    `outside` cores busy, and the log line that says why.

    Sleeping waits cost every small op a wake-up: on idle cores MiniLM trained at 195 samples/s
    on 2 threads with them against 290 with a short spin (GOMP_SPINCOUNT 10,000; 300,000, libgomp's
    default, 293), so 2 threads lost to 1. Under 6 busy programs on 2 cores the short spin cost
    20-30% against sleeping (28 against 35 samples/s), the default spin 4x (8.5).
    """
    if outside < SPIN_IF_OUTSIDE_BELOW:
        return (
            {"GOMP_SPINCOUNT": str(SPIN_COUNT)},
            f"waiting threads spin briefly (GOMP_SPINCOUNT={SPIN_COUNT}): the cores are idle",
        )
    return (
        {"OMP_WAIT_POLICY": "PASSIVE"},
        f"waiting threads sleep: other programs keep {outside:.1f} core(s) busy",
    )


def settle_wait_policy(outside: float) -> str:
    """Set the OpenMP wait policy for this process before torch loads; the log line, or ''.

    Decided once: libgomp reads its environment when torch first loads it. Nothing changes
    when the user set a policy, or when torch is already loaded (the policy is fixed by then).
    """
    global _WAIT_NOTE
    if _WAIT_NOTE is not None:
        return _WAIT_NOTE
    if not _WAIT_POLICY_OURS or "torch" in sys.modules:
        _WAIT_NOTE = ""
        return _WAIT_NOTE
    env, _WAIT_NOTE = wait_policy_for(outside)
    os.environ.pop("OMP_WAIT_POLICY", None)
    os.environ.pop("GOMP_SPINCOUNT", None)
    os.environ.update(env)
    return _WAIT_NOTE
