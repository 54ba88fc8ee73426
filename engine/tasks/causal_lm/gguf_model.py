"""A transformers decoder's weights as a GGUF file llama.cpp loads, written with the `gguf` library.

Our own writer (no llama.cpp script): the architecture's hyperparameters, llama.cpp's tensor names
(gguf.TensorNameMap), Llama's rotary permutation of Q/K, GPT-2's transposed Conv1D weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.core.errors import UserError

Progress = Callable[[int, int], None]
OUTTYPES = ("bf16", "f16", "f32", "q8_0")


@dataclass(frozen=True)
class Arch:
    """How one transformers architecture maps onto a llama.cpp one."""

    gguf_name: str  # gguf.MODEL_ARCH member name
    permute_qk: bool = False  # llama.cpp's llama arch rotates interleaved pairs
    conv1d: bool = False  # GPT-2 stores (in, out) weights


ARCHS = {
    "LlamaForCausalLM": Arch("LLAMA", permute_qk=True),
    "MistralForCausalLM": Arch("LLAMA", permute_qk=True),
    "Qwen2ForCausalLM": Arch("QWEN2"),
    "Qwen3ForCausalLM": Arch("QWEN3"),
    "GPT2LMHeadModel": Arch("GPT2", conv1d=True),
}
BY_MODEL_TYPE = {
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
    "gpt2": "GPT2LMHeadModel",
}
SKIP = ("rotary_emb.inv_freq", ".attn.bias", ".attn.masked_bias")


def arch_of(config: Any) -> Arch:
    """The Arch for a model config, or a UserError naming what converts."""
    model_type = getattr(config, "model_type", "")
    fallback = BY_MODEL_TYPE.get(model_type, model_type or type(config).__name__)
    name = (getattr(config, "architectures", None) or [fallback])[0]
    if name not in ARCHS:
        raise UserError(
            f"our GGUF writer does not convert {name}",
            where="export --gguf",
            hint=f"it converts {', '.join(sorted(ARCHS))}; for others run llama.cpp's "
            "convert_hf_to_gguf.py on a merged model (export --merged OUT)",
        )
    return ARCHS[name]


def rope_parameters(config: Any) -> dict[str, Any]:
    """rope_theta and the scaling settings, from either transformers layout."""
    params = dict(getattr(config, "rope_parameters", None) or {})
    params.update(getattr(config, "rope_scaling", None) or {})
    theta = getattr(config, "rope_theta", None)
    if theta is not None:
        params.setdefault("rope_theta", theta)
    return params


def llama3_rope_factors(config: Any, head_dim: int) -> Any:
    """The per-frequency factors of Llama-3.1's rope scaling (llama.cpp's rope_freqs tensor)."""
    import numpy as np

    p = rope_parameters(config)
    base = float(p.get("rope_theta", 10000.0))
    factor = float(p.get("factor", 8.0))
    low, high = float(p.get("low_freq_factor", 1.0)), float(p.get("high_freq_factor", 4.0))
    old = float(p.get("original_max_position_embeddings", 8192))
    out = []
    for i in range(0, head_dim, 2):
        wavelen = 2 * math.pi * base ** (i / head_dim)
        if wavelen < old / high:
            out.append(1.0)
        elif wavelen > old / low:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def head_dim_of(config: Any) -> int:
    """Per-head width (Qwen3 sets it apart from hidden_size / heads)."""
    return int(
        getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    )


def add_hparams(writer: Any, config: Any, arch: Arch) -> None:
    """The architecture keys llama.cpp reads (context, widths, heads, norms, rope)."""
    if arch.gguf_name == "GPT2":
        writer.add_context_length(config.n_positions)
        writer.add_embedding_length(config.n_embd)
        writer.add_block_count(config.n_layer)
        writer.add_feed_forward_length(config.n_inner or 4 * config.n_embd)
        writer.add_head_count(config.n_head)
        writer.add_layer_norm_eps(config.layer_norm_epsilon)
        return
    head_dim = head_dim_of(config)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(getattr(config, "num_key_value_heads", config.num_attention_heads))
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    rope = rope_parameters(config)
    writer.add_rope_freq_base(float(rope.get("rope_theta", 10000.0)))
    kind = rope.get("rope_type", rope.get("type", "default")) or "default"
    if kind == "linear":
        import gguf

        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope["factor"]))
    elif kind not in ("default", "llama3"):
        raise UserError(
            f"rope scaling '{kind}' is not converted by our GGUF writer",
            where="export --gguf",
            hint="use llama.cpp's convert_hf_to_gguf.py on a merged model (export --merged OUT)",
        )


def permute_rows(x: Any, heads: int) -> Any:
    """Reorder Q/K output rows from transformers' half-split rotary layout to llama.cpp's pairs."""
    return (
        x.reshape(heads, 2, x.shape[0] // heads // 2, *x.shape[1:]).swapaxes(1, 2).reshape(x.shape)
    )


class NameMap:
    """transformers tensor names -> llama.cpp ones, with the per-tensor rewrites an arch needs."""

    def __init__(self, config: Any) -> None:
        import gguf

        self.config = config
        self.arch = arch_of(config)
        self.model_arch = getattr(gguf.MODEL_ARCH, self.arch.gguf_name)
        self.gguf_arch = gguf.MODEL_ARCH_NAMES[self.model_arch]
        layers = getattr(config, "num_hidden_layers", None) or config.n_layer
        self.names = gguf.TensorNameMap(self.model_arch, layers)

    def gguf_name(self, hf_name: str) -> str | None:
        """llama.cpp's name for a weight (None for buffers it does not keep)."""
        if hf_name.endswith(SKIP):
            return None
        found = self.names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if found is None:
            raise UserError(
                f"no llama.cpp name for the weight {hf_name}",
                where="export --gguf",
                hint="this model's layout is not one our GGUF writer knows",
            )
        return found

    def heads_for(self, gguf_name: str) -> int | None:
        """The head count to permute a Q or K tensor by (None for every other tensor)."""
        if not self.arch.permute_qk:
            return None
        if ".attn_q." in gguf_name:
            return self.config.num_attention_heads
        if ".attn_k." in gguf_name:
            return getattr(self.config, "num_key_value_heads", self.config.num_attention_heads)
        return None

    def rewrite(self, hf_name: str, gguf_name: str, x: Any) -> Any:
        """A weight in llama.cpp's layout (numpy float32 in, out)."""
        if (
            self.arch.conv1d
            and x.ndim == 2
            and hf_name.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight"))
        ):
            x = x.T.copy()
        heads = self.heads_for(gguf_name)
        return permute_rows(x, heads) if heads else x


def encode(x: Any, outtype: str) -> tuple[Any, Any]:
    """(data, ggml type) for a float32 tensor: 1-D ones stay f32, as llama.cpp's converter does."""
    import gguf
    from gguf.quants import quantize

    Q = gguf.GGMLQuantizationType
    if x.ndim < 2 or outtype == "f32":
        return x, Q.F32
    if outtype == "q8_0" and x.shape[-1] % 32 == 0:
        return quantize(x, Q.Q8_0), Q.Q8_0
    if outtype in ("f16", "q8_0"):
        return x.astype("float16"), Q.F16
    return quantize(x, Q.BF16), Q.BF16


FILE_TYPES = {"f32": 0, "f16": 1, "q8_0": 7, "bf16": 32}  # gguf.LlamaFileType


def write_model_gguf(
    path: Path,
    state: dict[str, Any],
    config: Any,
    tokenizer: Any,
    outtype: str = "bf16",
    name: str = "",
    progress: Progress | None = None,
) -> Path:
    """Write `state` (a transformers state dict of torch tensors) with its tokenizer as a GGUF."""
    import gguf
    import numpy as np

    from engine.tasks.causal_lm.gguf_vocab import build_vocab

    if outtype not in OUTTYPES:
        raise UserError(f"unknown GGUF type {outtype}", hint=f"one of {', '.join(OUTTYPES)}")
    names = NameMap(config)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    n_vocab = int(getattr(config, "vocab_size", 0))
    vocab = build_vocab(tokenizer, n_vocab, getattr(config, "bos_token_id", None))
    writer = gguf.GGUFWriter(str(path), names.gguf_arch)
    writer.add_name(name or names.gguf_arch)
    add_hparams(writer, config, names.arch)
    writer.add_vocab_size(n_vocab)
    writer.add_file_type(FILE_TYPES[outtype])
    if outtype == "q8_0":
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    vocab.add_to(writer)
    items = [(k, v) for k, v in state.items() if not (tied and k.endswith("lm_head.weight"))]
    total = len(items)
    rope = rope_parameters(config)
    if rope.get("rope_type", rope.get("type")) == "llama3":
        writer.add_tensor("rope_freqs.weight", llama3_rope_factors(config, head_dim_of(config)))
    for done, (hf_name, tensor) in enumerate(items, 1):
        target = names.gguf_name(hf_name)
        if target is not None:
            x = tensor.detach().float().cpu().numpy().astype(np.float32, copy=False)
            data, qtype = encode(names.rewrite(hf_name, target, x), outtype)
            writer.add_tensor(target, data, raw_dtype=qtype)
        if progress is not None:
            progress(done, total)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
