"""The causal-LM (SFT) task: instruction-tune a decoder with LoRA on answer tokens."""

from engine.tasks.causal_lm.task import CausalLMTask

__all__ = ["CausalLMTask"]
