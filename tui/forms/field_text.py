"""The form's words for settings without widgets: labels, values as text, sweeps, messages."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import fields
from typing import Any

from engine.config import SECTIONS, all_fields, field_path
from tui.forms.form_spec import TAB_OF, TABS

FIELDS: dict[str, dataclasses.Field] = {f.name: f for _, f in all_fields()}
SECTION_OF: dict[str, str] = {f.name: section for section, f in all_fields()}
LABELS = {
    "model_name": "model",
    "max_length": "max length",
    "data_file_path": "data file",
    "eval_file_path": "eval file",
    "lora_r": "rank r",
    "lora_alpha": "alpha",
    "lora_dropout": "dropout",
    "use_dora": "DoRA",
    "use_rslora": "rsLoRA",
    "grad_accum": "grad accumulation",
    "output_dir": "output folder",
    "lr_scheduler": "LR schedule",
    "metric_for_best": "best metric",
    "early_stopping_patience": "early stopping",
    "allow_pickle_weights": "allow .bin weights",
    "validation_fraction": "held-out share",
    "notify": "when it ends",
}


def format_value(value: Any) -> str:
    """A config value as form text (floats without trailing noise: 3.0 -> '3', 0.002 stays)."""
    if isinstance(value, float):
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    return str(value)


def field_label(name: str) -> str:
    """The label shown for a config field."""
    return LABELS.get(name, name.replace("_", " "))


_FLAG = re.compile(
    r"(?<![\w-])(?:(add|set|use) )?--([a-z][a-z0-9_-]*)(?:(?:=| (?=[\d.]))([^\s,;()]+))?"
)

_TASK_FLAG = re.compile(r"--task[ =]([\w-]+)")


def form_words(text: str) -> str:
    """A message in the form's words: `--flag` names the field and its tab instead.

    "add --overwrite" -> "turn on 'overwrite' (Training tab)"; "set --label_column" -> "set
    'label column' (Data tab)". Flags the form has no field for stay as they are.
    """

    def name_field(match: re.Match[str]) -> str:
        verb, flag, value = match.group(1), match.group(2).replace("-", "_"), match.group(3)
        if flag not in TAB_OF:
            return match.group(0)
        where = f"'{field_label(flag)}' ({TABS[TAB_OF[flag]][0]} tab)"
        kind = FIELDS[flag].type if flag in FIELDS else ""
        if kind in ("bool", bool) and verb:
            return f"turn on {where}"
        if value:
            return f"set {where} to {value}"
        return f"{verb} {where}" if verb else where

    text = _TASK_FLAG.sub(lambda m: f"task {m.group(1)} (Model tab)", text)
    return _FLAG.sub(name_field, text)


def sweepable(name: str) -> bool:
    """True for number settings, which take several comma-separated values (a sweep)."""
    section, fname = field_path(name)
    fdef = next(f for f in fields(SECTIONS[section]) if f.name == fname)
    kind = fdef.type if isinstance(fdef.type, str) else fdef.type.__name__
    return kind in ("int", "float")


def sweep_parts(name: str, text: str) -> list[str]:
    """The values of a sweep typed into a number field ('3e-4, 1e-3' -> two); [] when one."""
    if "," not in str(text) or not sweepable(name):
        return []
    return [p.strip() for p in str(text).split(",") if p.strip()]


TASK_HELP = {
    "classification": "Text classification: texts with labels -> a classifier",
    "causal-lm": "Instruction tuning: prompts/chats with answers -> an LLM adapter (loss on answers)",
    "preference": "Preference tuning (DPO / ORPO): prompt, chosen, rejected -> an LLM adapter",
}


def task_help(task: str) -> str:
    """One line about a task for the form."""
    return TASK_HELP.get(task, task)
