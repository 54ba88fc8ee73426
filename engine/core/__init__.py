"""Building blocks every layer uses: user errors, wording, atomic writes and what the CPU has.

Imports nothing else of the engine.
"""
