"""The causal-LM (SFT) task object: what the shared run life calls for instruction tuning."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from engine.core.errors import UserError
from engine.tasks.base import Encoded, MetricHooks, Task, TaskData

SAMPLES = 3  # held-out prompts answered at each evaluation
SAMPLE_TOKENS = 64


def example_pieces(info: dict[str, Any], chat: Any) -> list[tuple[str, bool]]:
    """One chat as the model sees it, in (text, trained) pieces (empty when no tokenizer loads)."""
    from engine.models.loading import load_tokenizer, resolve_model_name
    from engine.tasks.causal_lm.template import ensure_chat_template, segments

    name, trust = info["model"]
    try:
        tokenizer = load_tokenizer(resolve_model_name(name), trust)
        ensure_chat_template(tokenizer)
        pieces, _ = segments(tokenizer, chat)
    except Exception:  # the model field has its own message; the preview just goes without
        return []
    if info.get("train_on_prompt"):
        return [(text, True) for text, _ in pieces]
    return pieces


class CausalLMTask(Task):
    """Instruction-tune a decoder with LoRA: loss on the answers, samples at each evaluation."""

    name: ClassVar[str] = "causal-lm"
    title: ClassVar[str] = "Instruction tuning (causal LM)"
    peft_task_type: ClassVar[str] = "CAUSAL_LM"
    tryit: ClassVar[str] = "chat"  # the TUI's try-it screen: a streaming chat

    def prepare_data(self, cfg: Any, run_dir: Path | None) -> TaskData:
        """Chats of the train and evaluation splits."""
        from engine.rundir.runs import data_cache_dir
        from engine.tasks.causal_lm.data import load_chats

        splits = load_chats(cfg.data, seed=cfg.training.seed, cache_dir=data_cache_dir(run_dir))
        return TaskData(
            train=splits.train,
            eval=splits.eval or None,
            eval_source=splits.eval_source,
            info={
                "splits": splits,
                "model": (cfg.model.model_name, cfg.model.trust_remote_code),
                "train_on_prompt": bool(getattr(cfg.training, "train_on_prompt", False)),
            },
        )

    def subset(self, data: TaskData, indices: list[int]) -> TaskData:
        """The given training chats only, without evaluation."""
        return TaskData([data.train[i] for i in indices], None, "none", dict(data.info))

    def load_model(self, cfg: Any, data: TaskData, precision: str) -> Any:
        """Decoder + LoRA on its attention and MLP projections; the tokenizer has a template."""
        from engine.tasks.causal_lm.modeling import load_causal_model

        loaded = load_causal_model(cfg, precision, data.train)
        data.info["max_length"] = loaded.max_length  # encode() cuts to what was chosen
        # The causal-LM loss divides by num_items_in_batch when given, so gradient accumulation
        # neither scales the logged loss nor the gradient: let the Trainer pass it.
        base = loaded.model.get_base_model()
        base.accepts_loss_kwargs = True
        from engine.tasks.causal_lm.step_parts import PART_TOKENS

        # A step runs as parts of rows of similar length (engine.tasks.causal_lm.step_parts).
        loaded.model.finetune_tui_part_tokens = PART_TOKENS
        return loaded

    def encode(self, cfg: Any, data: TaskData, tokenizer: Any, run_dir: Path | None) -> Encoded:
        """Token ids and answer-only labels of both splits, cached in the run directory."""
        from engine.models.loading import resolve_model_name
        from engine.tasks.causal_lm.encoding import encode_cached

        name = resolve_model_name(cfg.model.model_name)
        max_length = data.info.get("max_length") or cfg.model.max_length or 512
        on_prompt = bool(getattr(cfg.training, "train_on_prompt", False))
        train, report, hit = encode_cached(
            run_dir, "train", tokenizer, name, data.train, max_length, on_prompt
        )
        notes = report.notes("train", max_length)
        if len(train) == 0:
            raise UserError(
                f"every training example's prompt is longer than max_length={max_length}",
                where="model.max_length",
                hint="raise max_length or shorten the prompts",
                field="model.max_length",
            )
        evals = None
        if data.eval:
            evals, ereport, _ = encode_cached(
                run_dir, "eval", tokenizer, name, data.eval, max_length, on_prompt
            )
            notes += ereport.notes("eval", max_length)
        if getattr(tokenizer, "template_source", "") == "chatml":
            notes.append("the model has no chat template: using ChatML (saved with the adapter)")
        return Encoded(train, evals, hit, notes)

    def collator(self, cfg: Any, tokenizer: Any) -> Callable[[list[dict[str, Any]]], Any]:
        """Right padding to the longest row (fp32) or a multiple of 8 (bf16); labels -100."""
        from engine.core.hardware import pad_multiple, resolve_precision
        from engine.tasks.causal_lm.collate import CausalCollator

        multiple = (
            pad_multiple(resolve_precision(cfg.training.precision, cfg.model.base_precision)) or 1
        )
        return CausalCollator(tokenizer.pad_token_id, multiple)

    def metric_hooks(self, cfg: Any, data: TaskData, tokenizer: Any) -> MetricHooks:
        """Token accuracy, answer loss and perplexity from argmax + label log-probs per batch."""
        from engine.tasks.causal_lm.metrics import compute_metrics, preprocess_logits

        return MetricHooks(compute_metrics, preprocess_logits)

    def callbacks(self, cfg: Any, data: TaskData, loaded: Any, writer: Any) -> list[Any]:
        """Sample generations from the first held-out prompts at every evaluation."""
        from engine.tasks.causal_lm.samples import SamplesCallback

        if not data.eval:
            return []
        return [SamplesCallback(writer, list(data.eval[:SAMPLES]), loaded.tokenizer, SAMPLE_TOKENS)]

    def started_fields(self, data: TaskData) -> dict[str, Any]:
        """No label names for a language model."""
        return {"labels": []}

    def data_summary(self, data: TaskData) -> dict[str, Any]:
        """The detected format and columns."""
        splits = data.info["splits"]
        summary: dict[str, Any] = {"text_column": splits.format, "label_column": ""}
        if splits.train and "model" in data.info:
            summary["example"] = example_pieces(data.info, splits.train[0])
        return summary

    def describe_data(self, data: TaskData) -> str:
        """Format and sizes."""
        from engine.tasks.causal_lm.data import describe

        return describe(data.info["splits"])

    def save_extras(
        self, out: Path, loaded: Any, cfg: Any, data: TaskData, metrics: dict[str, Any]
    ) -> None:
        """generation_config.json (stop on end of turn) and a model card beside the adapter."""
        from engine.tasks.causal_lm.export import write_card, write_generation_config

        write_generation_config(out, loaded.tokenizer)
        write_card(out, cfg, loaded.name, metrics)

    def export_extras(self, out: Path, source: Path, merged: Any | None) -> None:
        """A merged model gets generation_config.json, an Ollama Modelfile and a card."""
        from engine.tasks.causal_lm.export import merged_extras

        if merged is not None:
            merged_extras(out, source)

    def load_for_inference(self, folder: Path, threads: int = 0) -> tuple[Any, Any]:
        """(model, tokenizer) ready to generate."""
        from engine.tasks.causal_lm.modeling import load_generator
        from engine.tasks.causal_lm.predict import quiet_deprecations

        quiet_deprecations()
        return load_generator(folder, threads)

    def preflight_notes(self, cfg: Any, precision: str, report: Any) -> list[str]:
        """The memory estimate from the config, for the whole max_length (a '!' line warns)."""
        from engine.tasks.causal_lm.base_precision import base_weights_for, fits_line
        from engine.tasks.causal_lm.memory import estimate_for

        weights, _ = base_weights_for(cfg, precision)  # loading's notes already say the choice
        est = estimate_for(cfg, precision, weights=weights)
        notes = [est.line(), fits_line(report.free_bytes, precision)]
        if est.total > report.free_bytes:
            fix = (
                "lower them"
                if est.checkpointing
                else "lower them or turn on gradient_checkpointing"
            )
            notes.append(
                f"!at max_length={cfg.model.max_length} and batch_size={cfg.batch_size_for()} "
                f"a step may need {est.total / 1024**3:.1f} GB, more than the "
                f"{report.free_bytes / 1024**3:.1f} GB free: {fix}"
            )
        return notes

    def predict_cli(self, args: Any, weights: Path) -> int:
        """`predict RUN "prompt"` streams an answer; `--file` answers every record."""
        from engine.tasks.causal_lm.predict import predict_cli

        return predict_cli(args, weights)

    def export_gguf(self, merged: Path, setting: str = "") -> Path:
        """A GGUF of a merged model via a local llama.cpp converter."""
        from engine.tasks.causal_lm.export import export_gguf

        return export_gguf(merged, setting)

    def meta_model(self, config: Any, trust_remote_code: bool = False) -> Any:
        """A causal LM built from the config."""
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
