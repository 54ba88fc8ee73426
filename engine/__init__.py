"""finetune-tui engine: everything that loads, trains, evaluates and exports. Never imports Textual."""

__version__ = "0.1.0"
