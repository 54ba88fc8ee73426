"""What a causal LM ships with: generation_config.json, a model card, an Ollama Modelfile, GGUF."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from engine.core.errors import UserError
from engine.tasks.causal_lm.template import end_of_turn_ids, ensure_chat_template, render

LLAMA_CPP_ENV = "FINETUNE_TUI_LLAMA_CPP"  # a llama.cpp checkout, or its convert_hf_to_gguf.py
CONVERTER = "convert_hf_to_gguf.py"
_S, _U, _A = "\x01SYS\x01", "\x01USR\x01", "\x01AST\x01"


def write_generation_config(out: Path, tokenizer: Any) -> None:
    """generation_config.json that stops at the end of an answer (end-of-turn and EOS)."""
    from transformers import GenerationConfig

    stops = end_of_turn_ids(tokenizer)
    GenerationConfig(
        eos_token_id=stops if len(stops) > 1 else (stops[0] if stops else None),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        do_sample=False,
        max_new_tokens=256,
    ).save_pretrained(out)


SPEED_KEYS = ("runtime", "samples_per_second", "steps_per_second")  # evaluation speed, no score


def write_card(
    out: Path, cfg: Any, base: str, metrics: dict[str, Any], merged: bool = False
) -> None:
    """A short README: what was trained, on what, and how to load it."""
    figures = ", ".join(
        f"{k} {v:.4g}"
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and k not in SPEED_KEYS
    )
    how = "instruction-tuned"
    if getattr(cfg, "task", "") == "preference":
        t = cfg.training
        how = f"preference-tuned, {t.preference_loss.upper()} beta {t.beta:g}"
    load = (
        "AutoModelForCausalLM.from_pretrained(folder)"
        if merged
        else "AutoPeftModelForCausalLM.from_pretrained(folder)"
    )
    text = (
        f"# {'Merged model' if merged else 'LoRA adapter'} ({how})\n\n"
        f"- base model: `{base}`\n"
        f"- data: `{cfg.data.data_file_path}`\n"
        f"- LoRA r={cfg.lora.lora_r}, alpha={cfg.lora.lora_alpha}; max_length {cfg.model.max_length or 'auto'}\n"
        f"- held-out figures: {figures or 'none'}\n\n"
        "The tokenizer carries the chat template used in training; format prompts with\n"
        "`tokenizer.apply_chat_template(messages, add_generation_prompt=True)`.\n\n"
        f"```python\nfrom {'transformers' if merged else 'peft'} import "
        f"{load.split('.')[0]}\nmodel = {load}\n```\n"
    )
    (out / "README.md").write_text(text, encoding="utf-8")


def go_template(tokenizer: Any) -> tuple[str | None, list[str]]:
    """An Ollama TEMPLATE (Go syntax) equivalent to a role-generic chat template, and the stop
    strings; (None, stops) when the template is not of the form prefix(role) content suffix."""
    turns = [
        {"role": "system", "content": _S},
        {"role": "user", "content": _U},
        {"role": "assistant", "content": _A},
    ]
    try:
        full = render(tokenizer, turns)
        gen = render(tokenizer, turns[:2], generation_prompt=True)
        no_gen = render(tokenizer, turns[:2])
    except Exception:  # a template that rejects system turns: no translation
        return None, _stops(tokenizer, "")
    suffix = full[full.index(_A) + len(_A) :]
    stops = _stops(tokenizer, suffix)
    between_su = full[full.index(_S) + len(_S) : full.index(_U)]
    between_ua = full[full.index(_U) + len(_U) : full.index(_A)]
    if not (between_su.startswith(suffix) and between_ua.startswith(suffix)):
        return None, stops
    pre_user, pre_asst = between_su[len(suffix) :], between_ua[len(suffix) :]
    if "user" not in pre_user or pre_user.replace("user", "assistant", 1) != pre_asst:
        return None, stops
    head_a, head_b = pre_user.split("user", 1)
    head = full[: full.index(_S)]
    pre_sys = f"{head_a}system{head_b}"
    if not head.endswith(pre_sys):
        return None, stops
    bos = head[: -len(pre_sys)] if pre_sys else head
    generation = gen[len(no_gen) :] if gen.startswith(no_gen) else pre_asst
    template = (
        f"{bos}{{{{- range .Messages }}}}{head_a}{{{{ .Role }}}}{head_b}{{{{ .Content }}}}"
        f"{suffix}{{{{ end }}}}{generation}"
    )
    return template, stops


def _stops(tokenizer: Any, suffix: str) -> list[str]:
    ids = end_of_turn_ids(tokenizer)
    names = [tokenizer.convert_ids_to_tokens(i) for i in ids]
    if suffix.strip() and not any(n and n in suffix for n in names):
        names.insert(0, suffix.strip())
    return [n for n in dict.fromkeys(names) if n]


def write_modelfile(
    out: Path, tokenizer: Any, source: str = ".", adapter: str | None = None
) -> Path:
    """An Ollama Modelfile beside a model: FROM (and ADAPTER), TEMPLATE, PARAMETER stop."""
    template, stops = go_template(tokenizer)
    lines = ["# Ollama: `ollama create my-model -f Modelfile` in this folder", f"FROM {source}"]
    if adapter:
        lines.append(f"ADAPTER {adapter}")
    if template is not None:
        lines.append(f'TEMPLATE """{template}"""')
    else:
        lines.append("# this chat template has no simple Go equivalent: Ollama uses the GGUF's own")
    lines += [f'PARAMETER stop "{json.dumps(s)[1:-1]}"' for s in stops]
    lines.append("PARAMETER temperature 0.7")
    path = out / "Modelfile"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def merged_extras(out: Path, source: Path) -> None:
    """The merged folder's tokenizer (with its template), generation config, Modelfile, card."""
    from transformers import AutoTokenizer

    from engine.config import RunConfig

    tokenizer = AutoTokenizer.from_pretrained(out)
    if ensure_chat_template(tokenizer) == "chatml":
        tokenizer.save_pretrained(out)  # the fallback must travel with the model
    write_generation_config(out, tokenizer)
    write_modelfile(out, tokenizer)
    cfg_path = source / "run_config.toml"
    cfg = RunConfig.load(cfg_path) if cfg_path.is_file() else RunConfig()
    metrics_path = source / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    adapter_cfg = source / "adapter_config.json"
    base = (
        json.loads(adapter_cfg.read_text()).get("base_model_name_or_path", "")
        if adapter_cfg.is_file()
        else ""
    )
    write_card(out, cfg, base, metrics, merged=True)


def find_converter(setting: str = "") -> Path | None:
    """llama.cpp's convert_hf_to_gguf.py: the given path, $FINETUNE_TUI_LLAMA_CPP, or on PATH."""
    for raw in (setting, os.environ.get(LLAMA_CPP_ENV, "")):
        if raw:
            p = Path(raw).expanduser()
            p = p / CONVERTER if p.is_dir() else p
            if p.is_file():
                return p
    found = shutil.which(CONVERTER)
    return Path(found) if found else None


def export_gguf(merged: Path, setting: str = "", outtype: str = "bf16") -> Path:
    """Convert a merged model folder to GGUF with a local llama.cpp (never downloaded here)."""
    converter = find_converter(setting)
    if converter is None:
        raise UserError(
            "GGUF needs llama.cpp's convert_hf_to_gguf.py, which is not on this machine",
            where="export --gguf",
            hint=(
                "git clone https://github.com/ggml-org/llama.cpp, pip install -r "
                f"llama.cpp/requirements.txt, then set {LLAMA_CPP_ENV}=/path/to/llama.cpp"
            ),
        )
    target = merged / f"model-{outtype}.gguf"
    cmd = [
        sys.executable,
        str(converter),
        str(merged),
        "--outfile",
        str(target),
        "--outtype",
        outtype,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0 or not target.is_file():
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise UserError(
            f"llama.cpp's converter failed: {tail[0]}",
            where=str(converter),
            hint="run it by hand to see the whole error",
        )
    text = (merged / "Modelfile").read_text() if (merged / "Modelfile").is_file() else "FROM .\n"
    (merged / "Modelfile").write_text(text.replace("FROM .", f"FROM ./{target.name}", 1))
    return target
