"""`finetune-tui serve`: the whole app in a browser, one app process per tab (textual-serve)."""
