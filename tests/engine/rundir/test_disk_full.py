"""Out of disk (a real small tmpfs where it can mount one, else injected ENOSPC)."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest

from engine.rundir.events import Checkpoint, EventWriter, Failed, Phase
from engine.rundir.runs import STATUS_FILE, new_run_dir, read_status, run_info
from engine.training.train import run_training
from tests.reliability_helpers import enospc, leftovers, mount_tmpfs, tiny_cfg, typed


# -- 5. out of disk ------------------------------------------------------------------------------
def _assert_clean_failure(run_dir: Path, lines: list[str]) -> None:
    status = read_status(run_dir)
    assert status["state"] == "failed"
    assert "out of disk space" in status["message"]
    assert run_info(run_dir).state == "failed"
    assert [ln for ln in lines if ln.startswith("error:")] == lines and len(lines) == 1, lines
    assert "out of disk space" in lines[0]
    assert (run_dir / "config.toml").stat().st_size > 0
    assert leftovers(run_dir) == []
    assert not (run_dir / ".reserve").exists()


def test_disk_full_at_a_checkpoint_is_one_clear_failure(
    tiny_model: Path, runs_root: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """ENOSPC injected into the second checkpoint (works anywhere; the tmpfs test is real)."""
    from transformers import Trainer

    from engine.cli.commands import _printer

    real = Trainer._save_checkpoint
    calls = {"n": 0}

    def save(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            folder = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
            folder.mkdir(parents=True)
            (folder / "adapter_model.safetensors").write_bytes(b"half")
            raise enospc(str(folder / "optimizer.pt"))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_save_checkpoint", save)
    cfg = tiny_cfg(tiny_model, max_steps=6, save_strategy="steps", save_steps=2)
    run_dir = new_run_dir(cfg, runs_root)
    assert run_training(run_dir, listeners=[_printer]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    _assert_clean_failure(run_dir, err.strip().splitlines())
    failed = typed(run_dir, Failed)[-1]
    assert "checkpoints/checkpoint-4" in failed.message
    kept = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert kept == ["checkpoint-2"]  # the cut-short one is gone, the last good one intact
    assert (run_dir / "checkpoints" / "checkpoint-2" / "trainer_state.json").is_file()


def test_disk_full_even_for_the_failed_event(
    tiny_model: Path, runs_root: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """When not even the event fits, the status still says failed and why, and the CLI prints it."""
    from engine.cli.commands import _printer

    run_dir = new_run_dir(tiny_cfg(tiny_model), runs_root)
    real_emit = EventWriter.emit

    def emit(self, event):
        if isinstance(event, (Phase, Failed)) and getattr(event, "name", "") != "loading data":
            raise enospc(str(self.path))
        return real_emit(self, event)

    monkeypatch.setattr(EventWriter, "emit", emit)
    monkeypatch.setattr(
        "engine.core.atomic.atomic_write_bytes",
        lambda *a: (_ for _ in ()).throw(enospc(str(run_dir / STATUS_FILE))),
    )
    assert run_training(run_dir, listeners=[_printer]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    monkeypatch.undo()
    _assert_clean_failure(run_dir, err.strip().splitlines())


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 64 MB tmpfs (skips when this machine cannot mount one)."""
    folder = tmp_path / "disk"
    if not mount_tmpfs(folder, "64m"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)


def fill_disk(folder: Path, leave: int) -> None:
    """Fill the file system of `folder` up to `leave` free bytes."""
    import shutil

    free = shutil.disk_usage(folder).free
    with open(folder / "filler", "wb") as fh, contextlib.suppress(OSError):
        fh.write(b"\1" * max(0, free - leave))


def test_real_full_disk_while_checkpointing(
    tiny_model: Path, small_disk: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from engine.cli.commands import _printer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    root = small_disk / "runs"
    cfg = tiny_cfg(tiny_model, max_steps=8, save_strategy="steps", save_steps=2)
    run_dir = new_run_dir(cfg, root)
    filled = []

    def fill_after_first_checkpoint(event) -> None:
        if isinstance(event, Checkpoint) and not filled:
            filled.append(event.step)
            fill_disk(small_disk, 16 * 1024)

    assert run_training(run_dir, listeners=[_printer, fill_after_first_checkpoint]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    _assert_clean_failure(run_dir, err.strip().splitlines())
    assert str(small_disk) in typed(run_dir, Failed)[-1].message
    assert filled == [2]
    kept = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert kept == ["checkpoint-2"]
    from engine.rundir.runs import last_checkpoint

    assert last_checkpoint(run_dir).name == "checkpoint-2"


def test_real_full_disk_at_start(tiny_model: Path, small_disk: Path, capsys) -> None:
    from engine.cli.commands import main

    root = small_disk / "runs"
    root.mkdir()
    fill_disk(small_disk, 0)
    code = main(["--runs-root", str(root), "train", "--model_name", str(tiny_model)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "disk space" in err
    assert list(root.iterdir()) == []  # no half-made run, no 0-byte config.toml


@pytest.mark.parametrize(
    "message",
    [
        "[enforce fail at inline_container.cc:672] . unexpected pos 231680 vs 231572",
        "[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing file "
        "data/0: file write failed",
    ],
)
def test_torch_short_writes_count_as_a_full_disk_only_when_it_is_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, message: str
) -> None:
    """torch.save's zip writer never says ENOSPC (seen on a 6 MB tmpfs: 'unexpected pos')."""
    import engine.rundir.diskfull as diskfull

    error = RuntimeError(message)
    monkeypatch.setattr(diskfull, "free_bytes", lambda folder: 200 * 1024)
    assert diskfull.is_out_of_space(error, tmp_path)
    monkeypatch.setattr(diskfull, "free_bytes", lambda folder: 5_000_000_000)
    assert not diskfull.is_out_of_space(error, tmp_path)
