"""finetune-tui terminal UI (Textual). Reads engine events; never trains in its own process."""
