"""Thread counts from the CPUs the process may use and from timed steps, and the probe's cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.core.hardware import SPIN_COUNT, WAIT_POLICY_MARK, wait_policy_for
from engine.core.topology import parse_cpu_list, read_topology
from engine.rundir.events import Log, Started
from engine.rundir.runs import new_run_dir, read_status, write_status
from engine.scaleout.distributed import auto_nproc
from engine.training.cores import busy_cores, plan_threads
from engine.training.thread_probe import (
    PROBES_FILE,
    ProbeCache,
    ProbeResult,
    ProbeRunner,
    ThreadProbe,
    candidate_counts,
    probe_key,
)
from tests.fakeruns import make_fake_run
from tests.reliability_helpers import tiny_cfg, typed


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def fake_machine(
    root: Path,
    *,
    sockets: int = 1,
    cores_per_socket: int = 2,
    smt: bool = False,
    allowed: str = "",
    cgroup: str = "0::/\n",
) -> Path:
    """A fake /sys and /proc below `root`: CPUs numbered as Linux does (siblings after all cores)."""
    cores = sockets * cores_per_socket
    logical = cores * (2 if smt else 1)
    for cpu in range(logical):
        core = cpu % cores
        siblings = f"{core},{core + cores}" if smt else f"{core}"
        topo = root / f"sys/devices/system/cpu/cpu{cpu}/topology"
        _write(topo / "thread_siblings_list", siblings + "\n")
        _write(topo / "core_id", f"{core % cores_per_socket}\n")
        _write(topo / "physical_package_id", f"{core // cores_per_socket}\n")
    _write(root / "sys/devices/system/cpu/online", f"0-{logical - 1}\n")
    for node in range(sockets):
        lo, hi = node * cores_per_socket, (node + 1) * cores_per_socket - 1
        cpus = f"{lo}-{hi}" + (f",{lo + cores}-{hi + cores}" if smt else "")
        _write(root / f"sys/devices/system/node/node{node}/cpulist", cpus + "\n")
    _write(
        root / "proc/self/status",
        f"Name:\tpython\nCpus_allowed_list:\t{allowed or f'0-{logical - 1}'}\n",
    )
    _write(root / "proc/self/cgroup", cgroup)
    _write(root / "proc/cpuinfo", "processor\t: 0\nmodel name\t: AMD EPYC 7B13 64-Core Processor\n")
    return root


# -- the cores the process may use ----------------------------------------------------------------
def test_cpu_lists_parse_as_the_kernel_writes_them() -> None:
    assert parse_cpu_list("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]
    assert parse_cpu_list("") == []
    assert parse_cpu_list("zero") == []


def test_a_two_socket_smt_server_plans_one_thread_per_physical_core(tmp_path: Path) -> None:
    topo = read_topology(fake_machine(tmp_path, sockets=2, cores_per_socket=32, smt=True))
    assert (topo.logical, topo.physical, len(topo.nodes), topo.usable) == (128, 64, 2, 64)
    assert topo.model.startswith("AMD EPYC")
    order = topo.pin_order()
    # one CPU per physical core first, socket 0's cores before socket 1's; siblings last
    assert order[:32] == list(range(32)) and order[32:64] == list(range(32, 64))
    assert sorted(order[64:]) == list(range(64, 128))
    assert "64 physical cores (SMT)" in topo.describe() and "2 NUMA nodes" in topo.describe()


def test_processes_on_a_two_socket_server_pin_inside_one_node(tmp_path: Path) -> None:
    topo = read_topology(fake_machine(tmp_path, sockets=2, cores_per_socket=32, smt=True))
    assert topo.node_physical() == [32, 32]
    assert topo.per_process(1) == 64
    assert topo.per_process(8) == 8
    assert [topo.process_cpus(r, 8, 8) for r in (0, 3, 4, 7)] == [
        list(range(0, 8)),
        list(range(24, 32)),
        list(range(32, 40)),
        list(range(56, 64)),
    ]
    # 6 processes (a global batch of 12): 3 per socket of 10 threads; none spans the sockets
    assert topo.per_process(6) == 10
    assert topo.process_cpus(2, 6, 10) == list(range(20, 30))
    assert topo.process_cpus(3, 6, 10) == list(range(32, 42))
    # 3 processes cannot split over 2 sockets: consecutive physical cores, 21 each
    assert topo.per_process(3) == 21
    assert topo.process_cpus(2, 3, 21) == list(range(42, 63))
    assert topo.process_cpus(3, 8, 32) == []  # more threads than a node has CPUs: no pinning
    # one process: the probe times one socket's cores, all physical cores and the SMT count
    assert candidate_counts(topo.usable, topo.usable_logical, max(topo.node_physical())) == [
        32,
        64,
        128,
    ]


def test_nproc_auto_on_a_two_socket_server_keeps_processes_on_one_node() -> None:
    assert auto_nproc(64, nodes=2) == 8  # 8 processes of 8 threads, 4 per socket
    assert auto_nproc(64, nodes=2, global_batch=12) == 6  # 3 per socket share 12 examples
    assert auto_nproc(64, nodes=2, global_batch=9) == 3  # no even split divides 9: fewer
    assert auto_nproc(12, nodes=2) == 2  # one process per socket even below 16 cores
    assert auto_nproc(2, nodes=1) == 1


def test_a_container_quota_caps_the_cores_of_a_big_host(tmp_path: Path) -> None:
    root = fake_machine(tmp_path, sockets=2, cores_per_socket=32, smt=True)
    _write(root / "sys/fs/cgroup/cpu.max", "200000 100000\n")  # docker run --cpus 2
    topo = read_topology(root)
    assert topo.quota == 2.0 and topo.usable == 2 and topo.usable_logical == 2
    assert auto_nproc(topo.usable, len(topo.nodes)) == 1


def test_a_nested_cgroup_v2_quota_and_its_parent_take_the_tighter(tmp_path: Path) -> None:
    root = fake_machine(tmp_path, cores_per_socket=16, cgroup="0::/machine/job7\n")
    _write(root / "sys/fs/cgroup/machine/cpu.max", "800000 100000\n")
    _write(root / "sys/fs/cgroup/machine/job7/cpu.max", "max 100000\n")
    assert read_topology(root).usable == 8


def test_a_cgroup_v1_quota_of_one_and_a_half_cpus_runs_one_thread(tmp_path: Path) -> None:
    root = fake_machine(tmp_path, cores_per_socket=8, cgroup="4:cpu,cpuacct:/\n")
    _write(root / "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "150000\n")
    _write(root / "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n")
    topo = read_topology(root)
    assert topo.quota == 1.5 and topo.usable == 1


def test_the_affinity_mask_narrows_cores_and_counts_siblings_once(tmp_path: Path) -> None:
    big = dict(sockets=2, cores_per_socket=32, smt=True)
    four = read_topology(fake_machine(tmp_path / "a", allowed="0-3", **big))
    assert (four.logical, four.physical, four.usable) == (4, 4, 4)
    pair = read_topology(fake_machine(tmp_path / "b", allowed="5,69", **big))  # one core's siblings
    assert (pair.logical, pair.physical, pair.usable, pair.usable_logical) == (2, 1, 1, 2)
    across = read_topology(fake_machine(tmp_path / "c", allowed="30-33", **big))
    assert len(across.nodes) == 2 and across.usable == 4


def test_a_machine_without_topology_files_counts_each_cpu(tmp_path: Path) -> None:
    _write(tmp_path / "proc/self/status", "Cpus_allowed_list:\t0-5\n")
    topo = read_topology(tmp_path)
    assert (topo.logical, topo.physical, len(topo.nodes), topo.quota) == (6, 6, 1, None)


def test_a_lagging_load_average_does_not_decide_alone() -> None:
    # a run that ended seconds ago still holds the minute's average up: the cores are free now
    assert busy_cores(now=0.1, minute=1.9) == pytest.approx(0.1)
    # a half-second burst is not work that stays
    assert busy_cores(now=1.8, minute=0.2) == pytest.approx(0.2)
    assert busy_cores(now=1.8, minute=1.9) == pytest.approx(1.8)
    assert plan_threads(0, 2, [], busy_cores(0.1, 1.9)).threads == 2
    assert plan_threads(0, 2, [2], busy_cores(2.0, 2.0)).threads == 1  # a second engine: a share


@pytest.mark.parametrize(
    "env, native",
    [
        ({}, True),
        ({"ATEN_CPU_CAPABILITY": "avx2"}, False),
        ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, False),
        ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}, True),
        ({"ATEN_CPU_CAPABILITY": "avx512"}, True),
    ],
)
def test_an_isa_capped_below_avx512_has_no_native_bf16(
    env: dict[str, str], native: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.core import hardware

    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx512_bf16", "amx_bf16"}))
    for name in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert hardware.native_bf16() is native


# -- how waiting threads wait ------------------------------------------------------------------
def test_waiting_threads_spin_briefly_on_idle_cores_and_sleep_on_busy_ones() -> None:
    env, why = wait_policy_for(0.2)
    assert env == {"GOMP_SPINCOUNT": str(SPIN_COUNT)} and "idle" in why
    env, why = wait_policy_for(1.4)
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"} and "1.4 core(s) busy" in why


SETTLE = """
import json, os, sys
{before}
import engine
from engine.core.hardware import settle_wait_policy
first = settle_wait_policy({outside})
again = settle_wait_policy(0.0 if {outside} else 5.0)  # decided once
print(json.dumps([first, again, os.environ.get("OMP_WAIT_POLICY"), os.environ.get("GOMP_SPINCOUNT")]))
"""


def _settle(outside: float, before: str = "", **env: str) -> list:
    """settle_wait_policy in a fresh process (it acts before torch loads, once per process)."""
    import os
    import subprocess
    import sys

    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    clean.pop(WAIT_POLICY_MARK, None)
    code = SETTLE.format(before=before, outside=outside)
    done = subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_engine_settles_the_wait_policy_once_before_torch_loads() -> None:
    note, again, policy, spin = _settle(0.0)
    assert "spin briefly" in note and again == note and (policy, spin) == (None, str(SPIN_COUNT))
    note, _, policy, spin = _settle(1.5)
    assert "sleep" in note and (policy, spin) == ("PASSIVE", None)
    # the processes we start (the TUI's engines) inherit our default and may still settle it
    note, _, policy, spin = _settle(0.0, OMP_WAIT_POLICY="PASSIVE", **{WAIT_POLICY_MARK: "1"})
    assert "spin briefly" in note and (policy, spin) == (None, str(SPIN_COUNT))


def test_the_users_wait_policy_and_a_loaded_torch_are_left_alone() -> None:
    assert _settle(0.0, OMP_WAIT_POLICY="ACTIVE")[::2] == ["", "ACTIVE"]
    assert _settle(0.0, GOMP_SPINCOUNT="5")[::3] == ["", "5"]
    # torch has read its environment already: changing it now would only mislead the log
    note, _, _, spin = _settle(0.0, before="import torch")
    assert (note, spin) == ("", None)


# -- the probe ----------------------------------------------------------------------------------
def test_candidate_counts_by_share() -> None:
    assert candidate_counts(1) == [1]
    assert candidate_counts(2) == [1, 2]
    assert candidate_counts(4) == [1, 2, 4]
    assert candidate_counts(8) == [4, 8]
    assert candidate_counts(8, logical=16) == [4, 8, 16]


class FakeMeter:
    """Padded tokens the fake steps ran on."""

    padded = 0


def run_probe(
    counts: list[int], seconds_per_1k: dict[int, float], outside: float = 0.0
) -> tuple[ProbeResult, list]:
    """Drive a ProbeRunner with a fake clock: each step 1,000 tokens at the given speeds, while
    other programs keep `outside` cores busy."""
    clock = [0.0]
    meter = FakeMeter()
    current = [0]
    set_to: list[int] = []

    def set_threads(n: int) -> None:
        current[0] = n
        set_to.append(n)

    done: list[ProbeResult] = []
    runner = ProbeRunner(
        ThreadProbe(counts),
        meter,
        set_threads,
        done.append,
        clock=lambda: clock[0],
        cpu=lambda: (clock[0] * (outside + 1), clock[0]),  # (machine, ours) CPU-seconds
    )
    runner.begin()
    result = None
    while result is None:
        meter.padded += 1000
        clock[0] += seconds_per_1k[current[0]] * (5 if not set_to[1:] else 1)  # slow first step
        result = runner.step_end()
    assert done == [result] and set_to[-1] == result.threads
    return result, set_to


def test_the_probe_keeps_one_thread_where_one_is_faster() -> None:
    result, set_to = run_probe([1, 2], {1: 0.80, 2: 1.00})
    # warm-up at 2, then 1 2 | 2 1 | 1 2 | 2 1 | 1 2, then the choice
    assert set_to == [2, 1, 2, 2, 1, 1, 2, 2, 1, 1, 2, 1]
    assert result.threads == 1
    assert result.message() == "1 thread: 1.25x faster than 2 in 5 probe steps each"


def test_the_probe_takes_two_threads_where_they_pay() -> None:
    result, _ = run_probe([1, 2], {1: 1.18, 2: 1.00})
    assert result.message() == "2 threads: 1.18x faster than 1 in 5 probe steps each"
    assert result.worth_storing


def test_a_probe_other_programs_disturbed_is_used_but_not_stored() -> None:
    result, _ = run_probe([1, 2], {1: 0.9, 2: 1.00}, outside=1.2)
    assert result.threads == 1 and result.outside == pytest.approx(1.2)
    assert not result.worth_storing
    assert result.message().endswith("not cached: other programs kept 1.2 cores busy meanwhile")


def test_the_probe_prefers_fewer_threads_when_they_are_as_fast() -> None:
    result, _ = run_probe([1, 2, 4], {1: 2.0, 2: 1.01, 4: 1.00})
    assert result.threads == 2
    assert (
        "as fast as 4 (0.99x), 1.98x faster than 1" in result.why
        and "leaves cores free" in result.why
    )


def test_a_burst_of_load_in_one_step_does_not_decide() -> None:
    probe = ThreadProbe([1, 2], steps=5, warmup=0)
    for seconds in (1.0, 0.8, 0.8, 1.0, 1.0, 0.8, 0.8, 1.0, 1.0, 8.0):  # 2 is faster; one burst
        probe.record(seconds, 1000)
    assert probe.choice().threads == 2


def test_batches_of_other_lengths_do_not_decide() -> None:
    # a step = a fixed part + a part per token (MiniLM on AVX2: about 25 ms + 0.21 / 0.13 ms a
    # token at 1 / 2 threads). 1 thread draws the long batches, 2 the short ones: by median
    # tokens/s 1 thread looks 2x faster; on the same work 2 threads are 1.3x faster.
    def step(threads: int, tokens: int) -> float:
        return 0.025 + tokens * (0.00021 if threads == 1 else 0.00013)

    probe = ThreadProbe([1, 2], steps=5, warmup=0)
    long, short = [240, 228, 276, 204, 216], [48, 72, 60, 48, 84]
    for threads in probe.schedule:
        tokens = (long if threads == 1 else short).pop()
        burst = 8.0 if tokens == 84 else 1.0  # and one step meets someone else's work
        probe.record(step(threads, tokens) * burst, tokens)
    speeds = probe.speeds()
    assert probe.choice().threads == 2
    assert 1.2 < speeds[2] / speeds[1] < 1.45


def test_the_warm_up_step_is_not_timed() -> None:
    probe = ThreadProbe([1, 2], steps=1)
    probe.record(100.0, 10)  # the warm-up: kernels built, heap grown
    probe.record(1.0, 1000)
    probe.record(2.0, 1000)
    assert probe.done and probe.choice().threads == 1


# -- the cache ----------------------------------------------------------------------------------
SHAPE = {"model_type": "bert", "hidden_size": 384, "num_hidden_layers": 6}
MACHINE = {"cpu": "AMD EPYC 7B13", "cores": 2, "logical": 2, "isa": "", "onednn_isa": ""}


def test_the_cache_hits_the_same_shape_and_machine_and_misses_others(tmp_path: Path) -> None:
    cache = ProbeCache(tmp_path)
    key = probe_key(SHAPE, "classification", "fp32", 16, 13.0, MACHINE)
    assert cache.get(key) is None
    cache.put(key, ProbeResult(1, "1.25x faster than 2 in 5 probe steps each"), "20270101-run")
    hit = cache.get(probe_key(SHAPE, "classification", "fp32", 16, 14.0, MACHINE))  # same band
    assert hit is not None and hit.threads == 1 and hit.cached
    assert hit.message().startswith("1 thread: cached from run 20270101-run (")
    assert hit.message().endswith("): 1.25x faster than 2 in 5 probe steps each")
    misses = [
        probe_key({**SHAPE, "hidden_size": 768}, "classification", "fp32", 16, 13.0, MACHINE),
        probe_key(SHAPE, "causal-lm", "fp32", 16, 13.0, MACHINE),
        probe_key(SHAPE, "classification", "bf16", 16, 13.0, MACHINE),
        probe_key(SHAPE, "classification", "fp32", 64, 13.0, MACHINE),
        probe_key(SHAPE, "classification", "fp32", 16, 200.0, MACHINE),
        probe_key(SHAPE, "classification", "fp32", 16, 13.0, {**MACHINE, "cores": 64}),
        probe_key(SHAPE, "classification", "fp32", 16, 13.0, {**MACHINE, "cpu": "Xeon"}),
        probe_key(SHAPE, "classification", "fp32", 16, 13.0, {**MACHINE, "isa": "avx2"}),
    ]
    assert all(cache.get(k) is None for k in misses)


@pytest.mark.parametrize(
    "text", ["{not json", "[1, 2]", '{"k": "x"}', "", '{"k": {"threads": "two"}}']
)
def test_a_corrupt_cache_file_is_ignored_and_rewritten(tmp_path: Path, text: str) -> None:
    (tmp_path / PROBES_FILE).write_text(text)
    cache = ProbeCache(tmp_path)
    assert cache.get("k") is None
    cache.put("k", ProbeResult(2, "measured"), "run")
    assert cache.get("k").threads == 2


# -- a real run ---------------------------------------------------------------------------------
def test_a_tiny_run_logs_its_thread_choice_and_the_next_reuses_it(
    tiny_model: Path, runs_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from engine.training.train import run_training

    monkeypatch.setattr("engine.core.hardware.available_cores", lambda: 2)
    monkeypatch.setattr("engine.training.cores.cpu_readings", lambda: (0.0, 0.0))
    # the shared machine's other work must not keep the choice out of the cache here
    monkeypatch.setattr("engine.training.thread_probe.cpu_seconds", lambda: (0.0, 0.0))
    monkeypatch.setattr("engine.training.thread_probe.MIN_RUN_PROBES", 1)  # a short run probes
    before = torch.get_num_threads()
    try:
        first = new_run_dir(tiny_cfg(tiny_model, threads=0, max_steps=12), runs_root)
        assert run_training(first) == 0
        lines = [e.message for e in typed(first, Log)]
        assert any("timing the first 11 steps at 1 / 2" in m for m in lines), lines
        (choice,) = [m for m in lines if "probe steps each" in m]
        threads = int(choice.split()[0])
        assert threads in (1, 2) and "faster than" in choice
        assert read_status(first)["threads"] == threads
        # the monitor's log pane shows the same line
        from engine.rundir.events import read_events
        from tui.watcher import RunProgress

        shown = [line.text for line in RunProgress().apply(read_events(first))]
        assert choice in shown
        (stored,) = json.loads((runs_root / PROBES_FILE).read_text()).values()
        assert stored["threads"] == threads
        # tokens per second of padded batches (8 examples a step): the Trainer counted them
        assert all(v > 500 for v in stored["speeds"].values()), stored

        second = new_run_dir(tiny_cfg(tiny_model, threads=0, max_steps=12), runs_root)
        assert run_training(second) == 0
        (started,) = typed(second, Started)
        assert started.threads == threads
        lines = [e.message for e in typed(second, Log)]
        assert any(f"cached from run {first.name}" in m for m in lines), lines
        assert not any("timing the first" in m for m in lines)

        asked = new_run_dir(tiny_cfg(tiny_model, threads=1, max_steps=12), runs_root)
        assert run_training(asked) == 0
        assert not any("thread" in e.message and "cached" in e.message for e in typed(asked, Log))

        # a cached 2 while another engine holds a core: the run takes its share and says so
        stored_all = json.loads((runs_root / PROBES_FILE).read_text())
        for entry in stored_all.values():
            entry["threads"] = 2
        (runs_root / PROBES_FILE).write_text(json.dumps(stored_all))
        other = make_fake_run(runs_root, "other", "running")  # this process plays the engine
        write_status(other, threads=1)
        shared = new_run_dir(tiny_cfg(tiny_model, threads=0, max_steps=12), runs_root)
        assert run_training(shared) == 0
        assert typed(shared, Started)[0].threads == 1
        lines = [e.message for e in typed(shared, Log)]
        assert any(m.startswith("1 thread, this engine's share (2 threads: cached") for m in lines)
    finally:
        torch.set_num_threads(before)
