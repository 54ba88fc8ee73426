"""Training one run in this process: the Trainer's set-up, the engine's callback (events,
stop, checkpoints), thread shares between runs, length buckets, preflight and `run_training`.

May import every layer below it: core, config, rundir, data, models, tasks and scaleout.
"""
