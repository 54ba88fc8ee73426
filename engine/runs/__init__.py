"""A run's life as processes: launching the engine detached, the queue of waiting runs, the
worker (`python -m engine.runs.worker`) and the supervisor of a torchrun run.

May import every layer below it, training included; only engine.cli imports it.
"""
