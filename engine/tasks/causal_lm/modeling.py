"""Load a decoder for LoRA training (AutoModelForCausalLM) and for generation."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from engine.core.errors import UserError
from engine.tasks.causal_lm.targets import choose_decoder_targets

# Dropout settings of decoder configs (Llama/Qwen: attention_dropout; GPT-2: *_pdrop; ...).
DROPOUT_KEYS = (
    "attention_dropout",
    "hidden_dropout",
    "resid_pdrop",
    "embd_pdrop",
    "attn_pdrop",
    "dropout",
    "activation_dropout",
    "summary_first_dropout",
)
GQA_LABEL = "eager (GQA blocks, bf16 softmax)"  # the attention line's words for gqa_attention
QUANTISED = ("int8", "int4")


def load_causal_model(
    cfg: Any, precision: str, chats: list[Any] | None = None, rows_per_example: int = 1
) -> Any:
    """Tokenizer (with a chat template) + decoder + LoRA, as an engine.models.loading.LoadedModel.

    `chats` (the training set) size max_length when it is 0 (auto); the chosen length, the
    attention kernel and gradient checkpointing (auto: by the memory estimate) go with it.
    `rows_per_example` rows make one example in a step (2 for preference pairs). With
    `lora.init_adapter` the adapter is that trained one (its own rank and modules), trainable.
    """
    from peft import LoraConfig, TaskType, get_peft_model

    from engine.models.loading import (
        LoadedModel,
        check_model_source,
        load_model_config,
        load_tokenizer,
        resolve_model_name,
    )
    from engine.models.lora import describe_layers, store_frozen_linears_in_bf16, top_layer_indices
    from engine.models.quantized import quantized_bytes
    from engine.tasks.causal_lm.chat_tokens import (
        describe_rows,
        rows_to_train,
        trainable_token_indices,
    )
    from engine.tasks.causal_lm.template import ensure_chat_template

    mcfg = cfg.model
    name = resolve_model_name(mcfg.model_name)
    check_model_source(name, mcfg.allow_pickle_weights)
    tokenizer = load_tokenizer(name, mcfg.trust_remote_code)
    source = ensure_chat_template(tokenizer)
    config = load_model_config(name, mcfg.trust_remote_code)
    if not _is_decoder(config):
        raise UserError(
            f"'{name}' is not a decoder (a {config.model_type} model cannot generate text)",
            where="model.model_name",
            hint="pick a causal LM (Llama, Qwen, SmolLM, GPT-2...) or use --task classification",
            field="model.model_name",
        )
    for key in DROPOUT_KEYS:
        if isinstance(getattr(config, key, None), (int, float)):
            setattr(config, key, cfg.training.model_dropout)
    config.use_cache = False
    from engine.tasks.causal_lm.sizing import choose_causal_attention, resolve_max_length

    length, length_note = resolve_max_length(cfg, tokenizer, config, chats)
    attention = choose_causal_attention(mcfg.attention, precision, length)
    from engine.tasks.causal_lm.base_precision import resolve_base

    base, base_note = resolve_base(cfg, config, precision, length)
    if base in QUANTISED:
        from engine.core.hardware import mmap_large_blocks
        from engine.models.quant_loading import load_quantized

        mmap_large_blocks()
        folder = local_folder(name, mcfg.allow_pickle_weights)
        model = load_quantized(folder, config, base, precision, attention, mcfg.trust_remote_code)
        model.name_or_path = model.config._name_or_path = name
        weights: int | None = quantized_bytes(model)
    else:
        model, attention = _load_full(name, config, cfg, precision, attention)
        weights = None
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if precision == "bf16" and attention == "eager" and mcfg.attention == "auto":
        from engine.models.gqa_attention import use_gqa_attention

        if use_gqa_attention(model):
            attention = GQA_LABEL
    lo = cfg.lora
    targets = choose_decoder_targets(model, lo.target_modules)
    rows = rows_to_train(model, tokenizer, source) if lo.train_chat_tokens else []
    # An explicit share adapts the top layers only; auto (0) is every layer here: the top-third
    # rule was measured on classification, not on instruction tuning.
    share = lo.lora_layers if lo.lora_layers > 0 else 1.0
    layers = top_layer_indices(model, share)
    lora = LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=lo.lora_r,
        lora_alpha=lo.lora_alpha,
        lora_dropout=lo.lora_dropout,
        target_modules=targets,
        use_dora=lo.use_dora,
        use_rslora=lo.use_rslora,
        fan_in_fan_out=_uses_conv1d(model, targets),
        trainable_token_indices=trainable_token_indices(model, rows) if rows else None,
        layers_to_transform=layers,
    )
    init = getattr(lo, "init_adapter", "")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if init:
            model, targets = _load_init_adapter(model, init, name)
            rows = []  # the adapter's own trainable token rows, if any, come with it
        else:
            model = get_peft_model(model, lora)
    lean = attention == GQA_LABEL
    checkpointing, ckpt_note, heap_note = _decide_memory(
        cfg, config, model, length, precision, lean, weights, rows_per_example
    )
    if checkpointing:
        enable = getattr(model, "activation_checkpointing_enable", None)
        enable = enable or model.gradient_checkpointing_enable
        enable({"use_reentrant": False})
        model.enable_input_require_grads()
        if ckpt_note:  # auto: only the layers a batch needs
            ckpt_note += _plan_layers(
                cfg, config, model, length, precision, lean, weights, rows_per_example
            )
    if precision == "bf16":
        upcast_trainable(model)
        if not lo.use_dora:
            from engine.models.fused_lora import fuse_lora_layers

            store_frozen_linears_in_bf16(model)
            fuse_lora_layers(model)
        from engine.models.lean_norm import use_lean_norms

        use_lean_norms(model)
    from engine.tasks.causal_lm import answer_logits

    answer_logits.install(model.get_base_model())
    saved = [describe_rows(tokenizer, rows)] if rows else []
    described = describe_layers(model, share)
    notes = [n for n in (length_note, base_note, ckpt_note, heap_note) if n]
    if init:
        notes.append(f"LoRA starts from the adapter in {init}")
    loaded = LoadedModel(model, tokenizer, name, targets, saved, attention, described, notes)
    loaded.max_length = length
    return loaded


def _load_init_adapter(model: Any, setting: str, name: str) -> tuple[Any, list[str]]:
    """The base with a trained adapter on it, trainable; (model, its target modules)."""
    from peft import PeftModel

    from engine.config.validation import init_adapter_folder

    folder = init_adapter_folder(setting)
    try:
        model = PeftModel.from_pretrained(model, folder, is_trainable=True)
    except (RuntimeError, ValueError, KeyError) as exc:
        base = _adapter_base(folder)
        raise UserError(
            f"the adapter in {folder} does not fit {name} ({type(exc).__name__})",
            where="lora.init_adapter",
            hint=f"it was trained on {base or 'another model'}: pick that model or another adapter",
            field="lora.init_adapter",
        ) from None
    targets = model.peft_config["default"].target_modules
    return model, sorted(targets) if not isinstance(targets, str) else [targets]


def _adapter_base(folder: Path) -> str:
    try:
        raw = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    return str(raw.get("base_model_name_or_path") or "")


def _decide_memory(
    cfg: Any,
    config: Any,
    model: Any,
    length: int,
    precision: str,
    lean: bool,
    weights: int | None = None,
    rows_per_example: int = 1,
) -> tuple[bool, str, str]:
    """(on, note, heap note): gradient checkpointing as set, or for auto on when the memory
    estimate needs it; and the heap made lean when memory_mode asks for it (tune_allocator)."""
    from engine.core.hardware import tune_allocator
    from engine.tasks.causal_lm.memory import decide_checkpointing, decide_heap, estimate

    n_params, lora = _counts(model)
    batch = cfg.batch_size_for(max_length=length) * rows_per_example

    def estimate_of(on: bool) -> Any:
        return estimate(config, n_params, lora, batch, length, precision, on, lean, weights)

    on, note = decide_checkpointing(cfg.training.gradient_checkpointing, estimate_of)
    heap, heap_note = decide_heap(cfg.training.memory_mode, estimate_of, checkpointing=on)
    if heap == "lean":
        tune_allocator("lean")
    return on, note, heap_note


def _counts(model: Any) -> tuple[int, int]:
    """(all parameters, trainable parameters) of a model."""
    n_params = sum(p.numel() for p in model.parameters())
    return n_params, sum(p.numel() for p in model.parameters() if p.requires_grad)


def _plan_layers(
    cfg: Any,
    config: Any,
    model: Any,
    length: int,
    precision: str,
    lean: bool,
    weights: int | None = None,
    rows_per_example: int = 1,
) -> str:
    """Install the batch-by-batch layer plan under auto checkpointing; the log's words for it."""
    from engine.core.hardware import free_memory_bytes
    from engine.tasks.causal_lm import layer_checkpointing as lc
    from engine.tasks.causal_lm.memory import estimate, layer_bytes, step_bound
    from engine.tasks.causal_lm.step_parts import part_rows

    base = model.get_base_model()
    layers = lc.decoder_layers(base)
    if not layers:
        return ""
    n_params, lora = _counts(model)
    batch = cfg.batch_size_for(max_length=length) * rows_per_example

    def checkpointed(rows: int, n: int) -> int:
        return estimate(config, n_params, lora, rows, n, precision, True, lean, weights).total

    def longest(on: bool) -> Any:
        return estimate(config, n_params, lora, batch, length, precision, on, lean, weights)

    plan = lc.LayerPlan(
        layers, step_bound(longest, free_memory_bytes()), checkpointed,
        lambda rows, n: layer_bytes(config, rows, n, precision, lean),
    )  # fmt: skip
    lc.install(base, plan)
    rows = part_rows(batch, length)  # the longest part a step runs (step_parts)
    kept = len(layers) - plan.checkpointed_for(rows, length)
    return (
        f"; a step runs in parts, and each part keeps the top layers' activations that fit "
        f"under that and skips their recomputation (e.g. {kept} of {len(layers)} layers for a "
        f"part of {rows} x {length} tokens)"
    )


def local_folder(name: str, allow_pickle: bool) -> Path:
    """A model's local folder: the path itself, or its snapshot in the Hugging Face cache
    (downloaded when online)."""
    if Path(name).is_dir():
        return Path(name)
    from huggingface_hub import snapshot_download

    from engine.models.loading import _offline_error

    patterns = ["*.json", "*.safetensors"] + (["*.bin"] if allow_pickle else [])
    try:
        return Path(snapshot_download(name, allow_patterns=patterns))
    except Exception as exc:  # offline, unknown id, or no access: one line with alternatives
        raise _offline_error(name, exc) from None


def _load_full(name: str, config: Any, cfg: Any, precision: str, attention: str) -> Any:
    """(model, attention) through from_pretrained at the compute precision (fp32 or bf16)."""
    import torch
    from transformers import AutoModelForCausalLM

    from engine.models.loading import load_pretrained

    # bf16 training loads bf16 straight away: one copy of the weights, never fp32 first
    # (LoRA weights are still made in fp32 by peft; trained rows are upcast below).
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    return load_pretrained(AutoModelForCausalLM, name, config, cfg, attention, dtype=dtype)


def upcast_trainable(model: Any) -> None:
    """Trainable parameters in fp32 (AdamW on bf16 values loses small updates); frozen stay."""
    import torch

    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()


def _quantised_base(folder: Path, base_name: str) -> Any:
    """For chat: the base stored as the run trained it (int8 / int4), else None (fp32 base).

    Export never comes here for its merge: merge_and_unload on a quantised base would merge into
    rounded weights, so export loads the original full-precision weights (engine.tasks.export).
    """
    from engine.rundir.weights import RUN_CONFIG_FILE

    path = Path(folder) / RUN_CONFIG_FILE
    if not path.is_file():
        return None
    from engine.config import RunConfig

    base = RunConfig.load(path).model.base_precision
    if base not in QUANTISED:
        return None
    from engine.models.loading import load_model_config
    from engine.models.quant_loading import load_quantized

    config = load_model_config(base_name)
    return load_quantized(local_folder(base_name, False), config, base, "fp32", "sdpa")


def _is_decoder(config: Any) -> bool:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or bool(
        getattr(config, "auto_map", {}).get("AutoModelForCausalLM")
    )


def _uses_conv1d(model: Any, targets: list[str]) -> bool:
    """GPT-2 style Conv1D layers store weights transposed (peft's fan_in_fan_out)."""
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover
        return False
    return any(
        isinstance(m, Conv1D) and n.split(".")[-1] in targets for n, m in model.named_modules()
    )


def load_generator(folder: Path, threads: int = 0, quantised: bool = False) -> tuple[Any, Any]:
    """(model, tokenizer) for generation from an adapter folder, a checkpoint or a merged model
    (`quantised`: the base as the run stored it, int8 / int4, for try-it chat; never for export,
    which merges onto the original weights)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if threads > 0:
        torch.set_num_threads(threads)
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError("model folder not found", where=str(folder), hint="check the path")
    adapter_cfg = folder / "adapter_config.json"
    if adapter_cfg.is_file():
        from peft import PeftModel

        base_name = json.loads(adapter_cfg.read_text())["base_model_name_or_path"]
        try:
            quant = _quantised_base(folder, base_name) if quantised else None
            base = quant or AutoModelForCausalLM.from_pretrained(
                base_name, use_safetensors=True, dtype=torch.float32
            )
        except OSError as exc:
            raise UserError(
                f"cannot load the base model '{base_name}' ({type(exc).__name__})",
                where=str(folder),
                hint="the base model must be on this machine",
            ) from None
        model: Any = PeftModel.from_pretrained(base, folder)
        has_tok = (folder / "tokenizer_config.json").is_file()
        tokenizer = AutoTokenizer.from_pretrained(folder if has_tok else base_name)
    elif (folder / "config.json").is_file():
        model = AutoModelForCausalLM.from_pretrained(
            folder, use_safetensors=True, dtype=torch.float32
        )
        tokenizer = AutoTokenizer.from_pretrained(folder)
    else:
        raise UserError(
            "neither an adapter nor a model folder",
            where=str(folder),
            hint="give a run id, an adapter folder or a merged model folder",
        )
    from engine.tasks.causal_lm.template import ensure_chat_template

    ensure_chat_template(tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.use_cache = True
    return model.eval(), tokenizer
