"""Loading a model and tokenizer, wrapping it with LoRA (fused layers included), and the
checks of a model, its weights and a run's outputs before anything starts.

May import engine.core, config, rundir and data.
"""
