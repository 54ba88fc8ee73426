"""Tiny decoders (Llama, GPT-2, Qwen2 shapes) with byte-level BPE tokenizers made here (no download)."""

from __future__ import annotations

import json
from pathlib import Path

from engine.data.readers import EXAMPLE_DATA

EOS = "<|endoftext|>"
# A Zephyr-style template: differs from our ChatML fallback and ends turns with EOS.
ZEPHYR = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + eos_token + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)
CHAT_WORDS = (
    "user assistant system is this review positive or negative ? answer the question "
    "what why how who you are a helpful tell me about"
)


def _corpus() -> list[str]:
    lines = [json.loads(line)["text"] for line in EXAMPLE_DATA.read_text().splitlines()]
    return lines + [CHAT_WORDS] * 5


def make_tokenizer(folder: Path, *, chatml_tokens: bool = True, template: str | None = None):
    """A byte-level BPE tokenizer (~400 tokens): EOS, optional <|im_start|>/<|im_end|>, template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [EOS] + (["<|im_start|>", "<|im_end|>"] if chatml_tokens else [])
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS)
    if template:
        fast.chat_template = template
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(folder)
    return fast


def make_tiny_decoder(
    folder: Path, kind: str = "llama", *, chatml_tokens: bool = True, template: str | None = None
) -> Path:
    """A randomly initialised 2-layer decoder of `kind` (llama, gpt2, qwen2), saved as safetensors."""
    import torch
    import transformers as tf

    tok = make_tokenizer(folder, chatml_tokens=chatml_tokens, template=template)
    vocab = len(tok)
    torch.manual_seed(0)
    common = {
        "vocab_size": vocab,
        "eos_token_id": tok.eos_token_id,
        "bos_token_id": tok.eos_token_id,
    }
    if kind == "gpt2":
        config = tf.GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=256, **common)
        model = tf.GPT2LMHeadModel(config)
    else:
        cls = {
            "llama": (tf.LlamaConfig, tf.LlamaForCausalLM),
            "qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM),
        }
        config_cls, model_cls = cls[kind]
        config = config_cls(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=256,
            tie_word_embeddings=True,
            **common,
        )
        model = model_cls(config)
    model.save_pretrained(folder, safe_serialization=True)
    return folder
