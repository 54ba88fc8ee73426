"""`python -m engine.worker` (the documented engine entry) is engine.runs.worker."""

import sys

from engine.runs.worker import main

if __name__ == "__main__":
    sys.exit(main())
