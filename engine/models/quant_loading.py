"""Build a decoder with a quantised (or plain) frozen base one tensor at a time: from safetensors
shards, or randomly initialised from a config, never holding the whole model in fp32.

The model is made on the meta device (buffers such as RoPE's stay real), its block linears are
swapped for empty QuantLinears, and each weight is then read (or drawn), quantised and stored
before the next one: the peak is the stored model plus one layer's fp32 weight.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.core.errors import UserError

FULL_PRECISIONS = ("fp32", "bf16")


def empty_model(config: Any, kind: str, attention: str | None, trust: bool = False) -> Any:
    """The model of `config` with parameters on the meta device, quantisable linears swapped."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    from engine.models.quantized import QUANT_PRECISIONS, swap_in_quant_linears

    with init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(
            config, attn_implementation=attention, trust_remote_code=trust
        )
    if kind in QUANT_PRECISIONS:
        swap_in_quant_linears(model, kind)
    return model


def _dtype(compute: str) -> Any:
    import torch

    return torch.bfloat16 if compute == "bf16" else torch.float32


def assign(model: Any, key: str, tensor: Any, dtype: Any) -> bool:
    """Store one tensor of a checkpoint into the model (quantised where the layer is); False
    when the model has no such tensor."""
    import torch

    from engine.models.quantized import is_quant_linear

    path, _, leaf = key.rpartition(".")
    try:
        module = model.get_submodule(path) if path else model
    except AttributeError:
        return False
    if is_quant_linear(module) and leaf == "weight":
        module.set_weight(tensor)
    elif leaf in module._parameters:
        value = tensor.to(dtype) if tensor.is_floating_point() else tensor
        module._parameters[leaf] = torch.nn.Parameter(value.contiguous(), requires_grad=False)
    elif leaf in module._buffers:
        module._buffers[leaf] = tensor
    else:
        return False
    return True


def _finish(model: Any, config: Any, name: str) -> Any:
    """Tie the head, check nothing stayed on the meta device, freeze, and name the model."""
    head, embed = model.get_output_embeddings(), model.get_input_embeddings()
    if getattr(config, "tie_word_embeddings", False) and head is not None and embed is not None:
        head.weight = embed.weight
    left = [n for n, p in model.named_parameters() if p.is_meta]
    left += [n for n, b in model.named_buffers() if b.is_meta]
    if left:
        raise UserError(
            f"the checkpoint has no weights for {len(left)} tensors of this model ({left[0]}, ...)",
            where=name,
            hint="check that the folder holds the whole model (all its safetensors shards)",
            field="model.model_name",
        )
    for param in model.parameters():
        param.requires_grad_(False)
    model.name_or_path = name
    model.config._name_or_path = name
    return model.eval()


def shard_files(folder: Path) -> list[Path]:
    """The safetensors files of a model folder, in the index's order when there is one."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        names = dict.fromkeys(json.loads(index.read_text())["weight_map"].values())
        return [folder / n for n in names]
    return sorted(folder.glob("*.safetensors"))


def load_quantized(
    folder: Path, config: Any, kind: str, compute: str, attention: str | None, trust: bool = False
) -> Any:
    """A decoder from a local safetensors folder, each weight quantised (int8 / int4) or cast
    (fp32 / bf16) as it is read."""
    from safetensors import safe_open

    model = empty_model(config, kind, attention, trust)
    dtype = _dtype(compute)
    files = shard_files(Path(folder))
    if not files:
        raise UserError(
            "a quantised base needs safetensors weights in a local folder",
            where=str(folder),
            hint="download the model (huggingface-cli download) or use base_precision fp32",
            field="model.base_precision",
        )
    for file in files:
        with safe_open(str(file), framework="pt") as shard:
            for key in shard.keys():  # noqa: SIM118 (safe_open is not iterable)
                assign(model, key, shard.get_tensor(key), dtype)
    return _finish(model, config, str(folder))


def random_quantized(
    config: Any, kind: str, compute: str, attention: str | None = "sdpa", seed: int = 0
) -> Any:
    """A randomly initialised decoder of `config` built layer by layer (for benchmarks)."""
    import torch

    from engine.models.quantized import is_quant_linear

    torch.manual_seed(seed)
    model = empty_model(config, kind, attention)
    dtype = _dtype(compute)
    std = float(getattr(config, "initializer_range", 0.02))
    tied = getattr(config, "tie_word_embeddings", False)
    head = model.get_output_embeddings()
    for name, module in model.named_modules():
        if tied and module is head:
            continue  # _finish ties it to the embeddings
        for leaf, param in list(module._parameters.items()):
            if param is None or not param.is_meta:
                continue
            key = f"{name}.{leaf}" if name else leaf
            if is_quant_linear(module) and leaf == "weight":
                shape = (module.out_features, module.in_features)
                value = torch.randn(shape).mul_(std)
            elif param.dim() == 1:  # norms' weights are ones, biases zeros
                value = torch.ones(param.shape) if leaf == "weight" else torch.zeros(param.shape)
            else:
                value = torch.randn(param.shape).mul_(std)
            assign(model, key, value, dtype)
        if is_quant_linear(module) and module.scale.is_meta:  # a layer without a weight param
            raise RuntimeError(f"{name} was not initialised")
    return _finish(model, config, getattr(config, "_name_or_path", "") or "random")
