"""GGUF per architecture and tokenizer family, checked by llama.cpp: tokens, greedy choices, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.gguf_helpers import NEW, PROMPTS, greedy, llama, needs_extra, pretrain, review_chats
from tests.tiny_lm import make_tiny_decoder


def _tiny(folder: Path, kind: str) -> Path:
    """A tiny decoder of `kind`: tiny_lm's shapes, plus Qwen3 (q/k norms), Mistral, a Llama with
    Llama-3.1's rope scaling and a Llama with a SentencePiece-style tokenizer (TinyLlama's)."""
    if kind in ("llama", "qwen2", "gpt2"):
        return make_tiny_decoder(folder, kind)
    import torch
    import transformers as tf

    from tests.tiny_lm import make_tokenizer

    tok = spm_tokenizer(folder) if kind == "tinyllama" else make_tokenizer(folder)
    config_cls, model_cls = {
        "qwen3": (tf.Qwen3Config, tf.Qwen3ForCausalLM),
        "mistral": (tf.MistralConfig, tf.MistralForCausalLM),
        "llama3.1": (tf.LlamaConfig, tf.LlamaForCausalLM),
        "tinyllama": (tf.LlamaConfig, tf.LlamaForCausalLM),
    }[kind]
    torch.manual_seed(0)
    extra = {}
    if kind == "llama3.1":  # Llama-3.1/3.2's rope scaling, at a context where it changes angles
        extra["rope_scaling"] = {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16,
        }
    config = config_cls(
        **extra,
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,  # Qwen3 sets it apart from hidden / heads
        max_position_embeddings=256,
        tie_word_embeddings=kind == "qwen3",
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.eos_token_id,
    )
    model_cls(config).save_pretrained(folder, safe_serialization=True)
    return folder


@needs_extra
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["qwen2", "qwen3", "mistral", "gpt2", "llama3.1", "tinyllama"])
def test_each_architecture_gives_transformers_greedy_tokens(kind: str, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.tasks.causal_lm.gguf_model import write_model_gguf
    from engine.tasks.causal_lm.template import end_of_turn_ids, ensure_chat_template

    folder = _tiny(tmp_path / kind, kind)
    pretrain(folder, review_chats())
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    ensure_chat_template(tok)
    stops = end_of_turn_ids(tok)
    path = write_model_gguf(tmp_path / "m.gguf", model.state_dict(), model.config, tok, "f16")
    llm = llama(path)
    for text in PROMPTS:
        rendered = tok.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
        ids = tok(rendered, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            out = model.generate(
                torch.tensor([ids]), max_new_tokens=NEW, do_sample=False, eos_token_id=stops,
                pad_token_id=tok.eos_token_id,
            )  # fmt: skip
        assert greedy(llm, ids, stops) == out[0, len(ids) :].tolist()


TRICKY = [
    "Hello world! It's 2024-12-03, isn't it? I'll pay $1234.56",
    "  two  spaces\n\nnew lines\ttab  ",
    "naïve café — 東京 😀 ÀÉÎ",
    "<|im_start|>user\nhi<|im_end|>\n",
]


def spm_tokenizer(folder: Path):
    """A SentencePiece-style BPE in Llama-2's tokenizer.json layout (byte fallback, <0xAB> byte
    tokens, "▁" from a Prepend + Replace normalizer), trained here."""
    from tokenizers import Tokenizer, decoders, models, normalizers, trainers
    from transformers import PreTrainedTokenizerFast

    from tests.tiny_lm import _corpus

    def spm(model):
        tok = Tokenizer(model)
        tok.normalizer = normalizers.Sequence(
            [normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")]
        )
        tok.decoder = decoders.Sequence(
            [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
             decoders.Strip(" ", 1, 0)]
        )  # fmt: skip
        return tok

    specials = ["<unk>", "<s>", "</s>"]
    draft = spm(models.BPE(unk_token="<unk>", byte_fallback=True))
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=specials, show_progress=False)
    draft.train_from_iterator(_corpus() + TRICKY * 3, trainer)
    trained = json.loads(draft.to_str())["model"]
    vocab = {t: i for i, t in enumerate(specials + [f"<0x{b:02X}>" for b in range(256)])}
    for text, _ in sorted(trained["vocab"].items(), key=lambda kv: kv[1]):
        vocab.setdefault(text, len(vocab))
    merges = [
        tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in trained["merges"]
    ]
    tok = spm(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True))
    tok.add_special_tokens(specials + ["<|im_start|>", "<|im_end|>"])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    fast.save_pretrained(folder)
    return fast


def _tokenizer_with(folder: Path, pre: str):
    """A byte-level BPE tokenizer with the pre-tokenizer of one of llama.cpp's families."""
    if pre == "llama-spm":
        return spm_tokenizer(folder)
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from engine.tasks.causal_lm.gguf_vocab import LLAMA3_SPLIT, QWEN2_SPLIT
    from tests.tiny_lm import EOS, _corpus

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=pre != "split")
    parts = {
        "gpt-2": [byte_level],
        "smollm": [pre_tokenizers.Digits(individual_digits=True), byte_level],
        "llama-bpe": [pre_tokenizers.Split(Regex(LLAMA3_SPLIT), "isolated"), byte_level],
        "qwen2": [pre_tokenizers.Split(Regex(QWEN2_SPLIT), "isolated"), byte_level],
    }[pre]
    if pre in ("llama-bpe", "qwen2"):
        parts[-1] = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(parts) if len(parts) > 1 else parts[0]
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=[EOS, "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus() + TRICKY * 3, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS)
    fast.save_pretrained(folder)
    return fast


@needs_extra
@pytest.mark.parametrize("pre", ["gpt-2", "smollm", "llama-bpe", "qwen2", "llama-spm"])
def test_pre_tokenizer_families_split_text_as_transformers(pre: str, tmp_path: Path) -> None:
    import transformers as tf
    from llama_cpp import Llama

    from engine.tasks.causal_lm.gguf_model import write_model_gguf
    from engine.tasks.causal_lm.gguf_vocab import build_vocab

    tok = _tokenizer_with(tmp_path, pre)
    assert build_vocab(tok, len(tok)).pre == ("default" if pre == "llama-spm" else pre)
    config = tf.LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, eos_token_id=tok.eos_token_id,
    )  # fmt: skip
    model = tf.LlamaForCausalLM(config)
    path = write_model_gguf(tmp_path / "t.gguf", model.state_dict(), config, tok, "f32")
    llm = Llama(model_path=str(path), vocab_only=True, verbose=False)
    for text in [*TRICKY, "Ωμέγα ✓ ¿qué? ß"]:  # the last: characters the training never saw
        expected = tok(text, add_special_tokens=False)["input_ids"]
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == expected, text
        if pre != "llama-spm":  # (SentencePiece's "▁" after a special token decodes differently)
            assert llm.detokenize(expected, special=True).decode() == text


def test_unconverted_architecture_is_refused_before_loading(tmp_path: Path) -> None:
    import transformers as tf

    from engine.core.errors import UserError
    from engine.tasks.causal_lm.gguf_export import precheck
    from tests.tiny_lm import make_tokenizer

    make_tokenizer(tmp_path)
    tf.GemmaConfig(vocab_size=400, hidden_size=32, num_hidden_layers=1).save_pretrained(tmp_path)
    with pytest.raises(UserError, match="does not convert gemma") as caught:
        precheck(tmp_path)  # no weights here at all: refused from the config alone
    assert "convert_hf_to_gguf.py" in caught.value.one_line()


def test_sentencepiece_style_tokenizer_is_refused(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    from engine.core.errors import UserError
    from engine.tasks.causal_lm.gguf_vocab import build_vocab

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "▁a": 3, "a": 4, "▁": 5}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[("▁", "a")], byte_fallback=True))
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback()])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", bos_token="<s>")
    with pytest.raises(UserError, match="SentencePiece-style"):
        build_vocab(fast, 6)
