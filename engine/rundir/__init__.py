"""A run directory on disk: where runs live, their status, event stream, lock, outputs and
adapters, and a full disk said plainly.

May import engine.core and engine.config.
"""
