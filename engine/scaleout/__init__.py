"""One run over several processes and machines: rank helpers, torchrun and its supervision,
the loopback-only local rendezvous, and joining from another machine.

May import engine.core, config, rundir, data, models and tasks.
"""
