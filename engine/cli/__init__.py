"""The command line (`finetune-tui train|runs|resume|stop|predict|export|preflight|join|queue`).

May import every other layer; nothing in the engine imports it.
"""
