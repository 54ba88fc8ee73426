"""`python -m engine.cli`: the engine's command line without the TUI."""

import sys

from engine.cli.commands import main

if __name__ == "__main__":
    sys.exit(main())
