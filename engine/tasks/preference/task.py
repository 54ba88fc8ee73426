"""The preference task object (DPO / ORPO): what the shared run life calls for pair data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from engine.core.errors import UserError
from engine.tasks.base import Encoded, MetricHooks, TaskData
from engine.tasks.causal_lm.task import SAMPLE_TOKENS, SAMPLES, CausalLMTask

NO_DATA = (
    "preference tuning needs data",
    "give a JSONL with prompt, chosen and rejected (text or chat messages)",
)


class PreferenceTask(CausalLMTask):
    """Tune a decoder's LoRA adapter to prefer the chosen answer (DPO or ORPO); chat as causal-lm."""

    name: ClassVar[str] = "preference"
    title: ClassVar[str] = "Preference tuning (DPO / ORPO)"

    def prepare_data(self, cfg: Any, run_dir: Path | None) -> TaskData:
        """Checked pairs of the train and evaluation splits."""
        from engine.rundir.runs import data_cache_dir
        from engine.tasks.causal_lm.data import load_chats
        from engine.tasks.preference.pairs import pairs_of

        splits = load_chats(
            cfg.data,
            seed=cfg.training.seed,
            cache_dir=data_cache_dir(run_dir),
            read=pairs_of,
            no_data=NO_DATA,
        )
        return TaskData(
            train=splits.train,
            eval=splits.eval or None,
            eval_source=splits.eval_source,
            info={"splits": splits, "model": (cfg.model.model_name, cfg.model.trust_remote_code)},
        )

    def load_model(self, cfg: Any, data: TaskData, precision: str) -> Any:
        """Decoder + LoRA as causal-lm (or the init adapter); its forward computes the loss."""
        from functools import partial

        from engine.tasks.causal_lm.modeling import load_causal_model
        from engine.tasks.preference import forward
        from engine.tasks.preference.collate import pair_part_tokens, split_pairs

        chats = [p.chosen_chat() for p in data.train] + [p.rejected_chat() for p in data.train]
        loaded = load_causal_model(cfg, precision, chats, rows_per_example=2)
        data.info["max_length"] = loaded.max_length
        # The loss is a mean over pairs: the Trainer divides it by grad_accum itself.
        loaded.model.get_base_model().accepts_loss_kwargs = False
        forward.install(loaded.model, cfg.training.preference_loss, cfg.training.beta)
        multiple = _pad_multiple(cfg)
        part_tokens = pair_part_tokens(loaded.model.config, precision)
        loaded.model.finetune_tui_split_batch = partial(
            split_pairs, part_tokens=part_tokens, multiple=multiple
        )
        loaded.notes.append(_loss_note(cfg))
        return loaded

    def encode(self, cfg: Any, data: TaskData, tokenizer: Any, run_dir: Path | None) -> Encoded:
        """Token ids of both answers of every pair (labels on completions), cached."""
        from engine.models.loading import resolve_model_name
        from engine.tasks.preference.encoding import encode_cached

        name = resolve_model_name(cfg.model.model_name)
        max_length = data.info.get("max_length") or cfg.model.max_length or 512
        train, report, hit = encode_cached(
            run_dir, "train", tokenizer, name, data.train, max_length
        )
        notes = [n.replace("example", "pair") for n in report.notes("train", max_length)]
        if len(train) == 0:
            raise UserError(
                f"every training pair's prompt is longer than max_length={max_length}",
                where="model.max_length",
                hint="raise max_length or shorten the prompts",
                field="model.max_length",
            )
        evals = None
        if data.eval:
            evals, ereport, _ = encode_cached(
                run_dir, "eval", tokenizer, name, data.eval, max_length
            )
            notes += [n.replace("example", "pair") for n in ereport.notes("eval", max_length)]
        if getattr(tokenizer, "template_source", "") == "chatml":
            notes.append("the model has no chat template: using ChatML (saved with the adapter)")
        return Encoded(train, evals, hit, notes)

    def collator(self, cfg: Any, tokenizer: Any) -> Callable[[list[dict[str, Any]]], Any]:
        """Chosen rows then rejected rows, right-padded together."""
        from engine.tasks.preference.collate import PairCollator

        return PairCollator(tokenizer.pad_token_id, _pad_multiple(cfg))

    def metric_hooks(self, cfg: Any, data: TaskData, tokenizer: Any) -> MetricHooks:
        """Preference accuracy, reward margin, rewards and log-probs of the held-out pairs."""
        from engine.tasks.preference.metrics import metrics_for

        t = cfg.training
        return MetricHooks(metrics_for(t.preference_loss, t.beta))

    def callbacks(self, cfg: Any, data: TaskData, loaded: Any, writer: Any) -> list[Any]:
        """Sample answers to the first held-out prompts (the chosen answer as the reference)."""
        from engine.tasks.causal_lm.samples import SamplesCallback

        if not data.eval:
            return []
        chats = [p.chosen_chat() for p in data.eval[:SAMPLES]]
        return [SamplesCallback(writer, chats, loaded.tokenizer, SAMPLE_TOKENS)]

    def data_summary(self, data: TaskData) -> dict[str, Any]:
        """The detected format, and the first pair's chosen chat as the model sees it."""
        from engine.tasks.causal_lm.task import example_pieces

        splits = data.info["splits"]
        summary: dict[str, Any] = {"text_column": splits.format, "label_column": ""}
        if splits.train and "model" in data.info:
            summary["example"] = example_pieces(data.info, splits.train[0].chosen_chat())
        return summary

    def describe_data(self, data: TaskData) -> str:
        """Format and sizes."""
        splits = data.info["splits"]
        return (
            f"{len(splits.train)} train / {len(splits.eval)} eval pairs ({splits.format}; "
            f"eval: {splits.eval_source})"
        )

    def preflight_notes(self, cfg: Any, precision: str, report: Any) -> list[str]:
        """The causal-lm memory estimate, for two rows (chosen and rejected) a pair."""
        from engine.tasks.causal_lm.base_precision import base_weights_for, fits_line
        from engine.tasks.causal_lm.memory import estimate_for

        weights, _ = base_weights_for(cfg, precision)
        est = estimate_for(cfg, precision, weights=weights, rows_per_example=2)
        return [est.line(), fits_line(report.free_bytes, precision)]


def _pad_multiple(cfg: Any) -> int:
    from engine.core.hardware import pad_multiple, resolve_precision

    return pad_multiple(resolve_precision(cfg.training.precision)) or 1


def _loss_note(cfg: Any) -> str:
    t = cfg.training
    if t.preference_loss == "dpo":
        return (
            f"DPO (sigmoid loss, beta {t.beta:g}); the reference is the base model with the "
            "adapter switched off"
        )
    return f"ORPO (lambda {t.beta:g}); no reference model"
