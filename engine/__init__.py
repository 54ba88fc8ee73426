"""finetune-tui engine: everything that loads, trains, evaluates and exports. Never imports Textual."""

__version__ = "0.1.0"

from engine.core.hardware import sleep_waiting_threads, use_huge_pages

sleep_waiting_threads()  # before anything loads torch (and its OpenMP runtime)
use_huge_pages()  # before torch allocates
