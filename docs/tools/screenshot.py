"""Write the README's picture: the monitor of a (fake) finished run, as the SVG Textual draws.

Run from the repository root: `python docs/tools/screenshot.py` -> docs/images/monitor.svg.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from engine.rundir.events import Finished, Log, Started  # noqa: E402
from tests.conftest import fixed_events, write_run  # noqa: E402

SIZE = (120, 34)


async def save_monitor(out: Path) -> None:
    """Open the monitor of a fake finished run and save what it draws."""
    from tui.app import FinetuneApp
    from tui.screens.monitor import MonitorScreen

    root = Path(tempfile.mkdtemp(prefix="screenshot-runs-"))
    os.environ["FINETUNE_TUI_RUNS"] = str(root)
    run_id = "20261207-051500-minilm-sst2"
    events = fixed_events(total_steps=300, epochs=3)
    for event in events:
        if isinstance(event, Log):
            event.message = (
                "2000 train / 872 eval examples; LoRA on all linear layers of the top third"
            )
        if isinstance(event, Finished):
            event.output_dir = f"~/.local/share/finetune-tui/runs/{run_id}/adapter"
        if isinstance(event, Started):
            event.run_id = run_id
            event.model = "all-MiniLM-L6-v2"
            event.train_size, event.eval_size = 2000, 872
            event.trainable_params, event.total_params = 480_386, 23_193_986
    run_dir = write_run(root / run_id, events)
    app = FinetuneApp(root, attach_to=run_dir)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        for _ in range(600):
            if isinstance(screen, MonitorScreen) and screen.state:
                break
            await pilot.pause(0.05)
        await pilot.pause(0.5)
        out.parent.mkdir(parents=True, exist_ok=True)
        app.save_screenshot(filename=out.name, path=str(out.parent))


if __name__ == "__main__":
    asyncio.run(save_monitor(ROOT / "docs" / "images" / "monitor.svg"))
    print("docs/images/monitor.svg")
