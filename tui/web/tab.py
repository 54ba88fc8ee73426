"""One browser tab's app process: the whole app, which quits when the server that started it dies.

textual-serve starts `python -m tui.web.tab RUNS_ROOT` once per websocket. Textual's web driver
does not quit when its server vanishes (stdin at EOF), so a killed server would leave its tabs'
apps running for good; a thread here notices the new parent and asks the app to quit.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from textual.app import App

ORPHAN_CHECK_S = 1.0


def quit_when_orphaned(app: App[None], parent: int) -> None:
    """Ask the app to quit once its parent process (the server) is gone."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(ORPHAN_CHECK_S)
        try:
            app.call_from_thread(app.exit)
        except RuntimeError:  # not running (yet, or any more): nothing to save in this process
            os._exit(0)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    """Run the app on the runs root given as the only argument."""
    args = sys.argv[1:] if argv is None else argv
    from tui.app import FinetuneApp

    app = FinetuneApp(runs_root=Path(args[0]))
    quit_when_orphaned(app, os.getppid())
    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
