"""A peft LoRA adapter as a llama.cpp GGUF LoRA (general.type=adapter, `<name>.lora_a/.lora_b`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.core.errors import UserError


def check_adapter_config(adapter_cfg: dict[str, Any], where: str) -> None:
    """Refuse adapters a GGUF LoRA cannot carry (trained embedding rows, DoRA, saved modules)."""
    hint = "export the merged model as GGUF instead (export RUN --gguf OUT)"
    if adapter_cfg.get("trainable_token_indices"):
        raise UserError(
            "this adapter also trained embedding rows (chat tokens), which a GGUF LoRA "
            "cannot carry",
            where=where,
            hint=f"{hint}, or train with --train_chat_tokens false",
        )
    if adapter_cfg.get("use_dora"):
        raise UserError("a DoRA adapter has no GGUF LoRA form", where=where, hint=hint)
    if adapter_cfg.get("modules_to_save"):
        raise UserError(
            "this adapter saves whole modules, which a GGUF LoRA cannot carry",
            where=where,
            hint=hint,
        )


def lora_pairs(model: Any) -> list[tuple[str, Any, Any, float, int]]:
    """(transformers weight name, A, B, scaling, rank) for every LoRA layer of a PeftModel."""
    pairs = []
    for name, module in model.named_modules():
        lora_a = getattr(module, "lora_A", None)
        if lora_a is None or "default" not in lora_a:
            continue
        a = lora_a["default"].weight.detach().float().cpu().numpy()
        b = module.lora_B["default"].weight.detach().float().cpu().numpy()
        hf = name.removeprefix("base_model.model.") + ".weight"
        pairs.append((hf, a, b, float(module.scaling["default"]), int(a.shape[0])))
    if not pairs:
        raise UserError("no LoRA layers in this adapter", hint="export the merged model instead")
    return pairs


def write_lora_gguf(path: Path, model: Any, config: Any, alpha: float, name: str = "") -> Path:
    """Write the LoRA weights of a PeftModel as f32 GGUF LoRA tensors llama.cpp applies over the
    base model's GGUF; each B carries its layer's scaling relative to alpha / rank."""
    import gguf
    import numpy as np

    from engine.tasks.causal_lm.gguf_model import NameMap, permute_rows

    names = NameMap(config)
    writer = gguf.GGUFWriter(str(path), names.gguf_arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_name(name or "LoRA adapter")
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
    for hf, a, b, scaling, rank in lora_pairs(model):
        target = names.gguf_name(hf)
        if target is None:
            continue
        b = b * np.float32(scaling * rank / alpha)  # llama.cpp scales by alpha / rank
        heads = names.heads_for(target)
        if heads:
            b = permute_rows(b, heads)
        writer.add_tensor(f"{target}.lora_a", np.ascontiguousarray(a, dtype=np.float32))
        writer.add_tensor(f"{target}.lora_b", np.ascontiguousarray(b, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
