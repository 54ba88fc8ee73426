"""The causal-LM (SFT) task: instruction-tune a decoder with LoRA on answer tokens."""
