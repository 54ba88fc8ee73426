"""Checks run before any training or loading, shared by every entry point (CLI, TUI, engine)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.core.errors import UserError

# Models whose position table starts after the padding index (RoBERTa's 514 rows hold 512).
PADDING_OFFSET_TYPES = (
    "roberta",
    "xlm-roberta",
    "xlm-roberta-xl",
    "camembert",
    "longformer",
    "data2vec-text",
    "ibert",
    "mpnet",
    "roberta-prelayernorm",
    "xmod",
)
POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "n_ctx")
# Encoders (bidirectional attention, trained to fill in masked words): transformers gives some of
# them a causal-LM head (BertLMHeadModel), which trains without a word and generates nonsense.
ENCODER_TYPES = frozenset(
    {
        *PADDING_OFFSET_TYPES,
        "albert",
        "bert",
        "big_bird",
        "canine",
        "convbert",
        "deberta",
        "deberta-v2",
        "distilbert",
        "electra",
        "ernie",
        "esm",
        "flaubert",
        "fnet",
        "funnel",
        "layoutlm",
        "luke",
        "megatron-bert",
        "mobilebert",
        "modernbert",
        "mra",
        "nezha",
        "nomic_bert",
        "nystromformer",
        "rembert",
        "roformer",
        "squeezebert",
        "tapas",
        "xlm",
        "yoso",
    }
)


def check_run(cfg: Any, run_dir: Path | None = None) -> None:
    """Everything a run must pass before its first step: outputs, model for task, max_length."""
    from engine.rundir.outputs import check_run_outputs

    check_run_outputs(cfg, run_dir)
    check_model_task(cfg.model.model_name, cfg.task)
    check_max_length(cfg)


def _local_model_config(model_name: str) -> tuple[str, dict[str, Any] | None]:
    """(resolved name, its config.json as a dict) for a local folder; None when unreadable."""
    from engine.models.loading import resolve_model_name

    name = resolve_model_name(model_name)
    try:
        raw = json.loads((Path(name) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return name, None
    return name, raw if isinstance(raw, dict) else None


def not_a_decoder(raw: dict[str, Any]) -> str:
    """Why a model config cannot be instruction-tuned as a causal LM ('' when it can)."""
    model_type = str(raw.get("model_type", ""))
    archs = raw.get("architectures") or []
    arch = str(archs[0]) if isinstance(archs, list) and archs else model_type
    if raw.get("is_encoder_decoder"):
        return f"an encoder-decoder ({arch})"
    if model_type in ENCODER_TYPES and not raw.get("is_decoder"):
        return f"an encoder ({arch})"
    return ""


def check_model_task(model_name: str, task: str) -> None:
    """Refuse causal-lm on a model that is not a decoder (config.json only: no weights, no torch).

    A hub id that is not on disk passes here; loading it reports its own problems.
    """
    from engine.config.tasks import GENERATIVE_TASKS

    if task not in GENERATIVE_TASKS:
        return
    name, raw = _local_model_config(model_name)
    why = not_a_decoder(raw) if raw is not None else ""
    if why:
        from engine.models.loading import model_label

        shown = model_label(name)
        raise UserError(
            f"task {task} needs a decoder-only language model; {shown} is {why}",
            where="model.model_name",
            hint="pick a decoder (e.g. HuggingFaceTB/SmolLM2-135M-Instruct), "
            "or use task classification",
            field="model.model_name",
        )


def model_positions(config: Any) -> int | None:
    """How many token positions a model config allows (None when it does not say)."""
    for key in POSITION_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            if getattr(config, "model_type", "") in PADDING_OFFSET_TYPES:
                pad = getattr(config, "pad_token_id", None)
                value -= (pad if isinstance(pad, int) else 1) + 1
            return value
    return None


def check_max_length(cfg: Any) -> None:
    """Refuse a max_length beyond the model's positions (it would fail mid-run otherwise).

    Reads the local folder's config.json (no transformers import: the TUI calls this too); a
    hub id or an unreadable config passes, and loading the model reports those properly.
    """
    from types import SimpleNamespace

    raw = _local_model_config(cfg.model.model_name)[1]
    if raw is None:
        return
    limit = model_positions(SimpleNamespace(**{k: v for k, v in raw.items() if isinstance(k, str)}))
    if limit is not None and cfg.model.max_length > limit:
        raise UserError(
            f"max_length {cfg.model.max_length} is more than this model's {limit} positions",
            where="model.max_length",
            hint=f"use {limit} or less",
            field="model.max_length",
        )


def _weights(folder: Path) -> tuple[bool, bool]:
    """(has safetensors, has pickle weights) in a model or adapter folder."""
    safe = any(folder.glob("*.safetensors")) or any(folder.glob("*.safetensors.index.json"))
    pickle = any(folder.glob("*.bin")) or any(folder.glob("*.pt")) or any(folder.glob("*.pth"))
    return safe, pickle


CONVERT = "re-save it with save_pretrained(..., safe_serialization=True) where you trust it"


def check_inference_weights(folder: Path) -> None:
    """Refuse, with the right reason, a model or adapter that only pickle weights could load.

    Predict and export load safetensors only: a pickle can run code, and `allow_pickle_weights`
    is a training setting for a model the user vouched for, not for whatever a folder holds.
    """
    folder = Path(folder)
    adapter_cfg = folder / "adapter_config.json"
    if not adapter_cfg.is_file():
        safe, pickle = _weights(folder)
        if pickle and not safe:
            raise UserError(
                "this model has only pickle (.bin) weights, which can run code when loaded; "
                "predict and export load safetensors only",
                where=str(folder),
                hint=CONVERT,
            )
        return
    if not (folder / "adapter_model.safetensors").is_file() and _weights(folder)[1]:
        raise UserError(
            "this adapter has only pickle (.bin) weights, which can run code when loaded",
            where=str(folder),
            hint=CONVERT,
        )
    try:
        base = str(json.loads(adapter_cfg.read_text(encoding="utf-8"))["base_model_name_or_path"])
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(
            "adapter_config.json is unreadable or names no base model",
            where=str(folder),
            hint="re-export the adapter",
        ) from None
    base_dir = Path(base).expanduser()
    if not base_dir.is_dir():
        return
    safe, pickle = _weights(base_dir)
    if pickle and not safe:
        trained_with_pickle = _allowed_pickle(folder)
        raise UserError(
            "the base model has only pickle (.bin) weights"
            + (
                ": the run was trained with allow_pickle_weights, but predict and export "
                "load safetensors only"
                if trained_with_pickle
                else ", which can run code when loaded"
            ),
            where=str(base_dir),
            hint="convert the base model: " + CONVERT,
        )


def _allowed_pickle(adapter: Path) -> bool:
    """Whether the run that wrote `adapter` allowed pickle weights (its saved config says)."""
    for cfg_path in (adapter / "run_config.toml", adapter.parent.parent / "config.toml"):
        if cfg_path.is_file():
            try:
                from engine.config import RunConfig

                return RunConfig.load(cfg_path).model.allow_pickle_weights
            except UserError:
                return False
    return False
