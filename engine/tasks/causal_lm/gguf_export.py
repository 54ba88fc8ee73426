"""`export RUN --gguf OUT`: a merged GGUF (or a GGUF LoRA over a base GGUF) and its Modelfile."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.core.errors import UserError

GGUF_TYPES = ("bf16", "f16", "q8_0", "q4_k_m", "f32")
EXTRA_PIP = 'pip install "gguf>=0.19", or in a checkout pip install -e ".[gguf]"'
QUANT_PIP = (
    'pip install "llama-cpp-python>=0.3.36", or in a checkout pip install -e ".[llama-cpp]"; '
    "it compiles llama.cpp once, ~20 min on 2 cores"
)
MODEL_FILE, LORA_FILE, BASE_FILE = "model.gguf", "adapter.gguf", "base.gguf"
Report = Callable[[float, str], None]


def missing_extra(gguf_type: str = "bf16") -> str:
    """'' when GGUF export can run here, else the one line that says what to install."""
    if importlib.util.find_spec("gguf") is None:
        return f"GGUF export needs the gguf package: {EXTRA_PIP}"
    if gguf_type == "q4_k_m" and importlib.util.find_spec("llama_cpp") is None:
        return f"q4_k_m uses llama.cpp's quantizer from llama-cpp-python: {QUANT_PIP}"
    return ""


def _check(gguf_type: str, where: str) -> None:
    if gguf_type not in GGUF_TYPES:
        raise UserError(
            f"unknown GGUF type '{gguf_type}'",
            where="--gguf_type",
            hint=f"one of {', '.join(GGUF_TYPES)}",
        )
    message = missing_extra(gguf_type)
    if message:
        message, hint = message.split(": ", 1)
        raise UserError(message, where=where, hint=hint)


def quantize_q4_k_m(source: Path, target: Path, threads: int = 0) -> Path:
    """llama.cpp's own Q4_K_M quantizer (through llama-cpp-python) on an f16 GGUF."""
    import ctypes
    import logging

    import llama_cpp

    quiet = logging.getLogger("llama-cpp-python")  # llama-cpp-python's relay of llama.cpp's log
    if quiet.level == logging.NOTSET:
        quiet.setLevel(logging.ERROR)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    params.nthread = max(threads, 0)
    code = llama_cpp.llama_model_quantize(
        str(source).encode(), str(target).encode(), ctypes.byref(params)
    )
    if code != 0 or not target.is_file():
        raise UserError(f"llama.cpp's quantizer failed (code {code})", where=str(source))
    return target


def _stage_model(
    folder: Path,
    state: dict[str, Any],
    config: Any,
    tokenizer: Any,
    gguf_type: str,
    file_name: str,
    threads: int,
    report: Report,
    span: tuple[float, float],
    name: str = "",
) -> Path:
    """Write one model GGUF into `folder` (q4_k_m: an f16 one first, quantized, then removed)."""
    from engine.tasks.causal_lm.gguf_model import write_model_gguf

    start, width = span
    quant = gguf_type == "q4_k_m"
    width = width * (0.6 if quant else 1.0)

    def tick(done: int, total: int) -> None:
        report(start + width * done / total, f"converting tensor {done}/{total}")

    target = folder / file_name
    first = folder / f".{file_name}.f16" if quant else target
    name = name or str(getattr(config, "_name_or_path", "") or "")
    write_model_gguf(first, state, config, tokenizer, "f16" if quant else gguf_type, name, tick)
    if quant:
        report(start + width, "quantizing to q4_k_m with llama.cpp")
        quantize_q4_k_m(first, target, threads)
        first.unlink()
    return target


def precheck(weights: Path) -> None:
    """Refuse an architecture or tokenizer our writer does not convert before any weights load
    (a config and a tokenizer read in a second, instead of loading and merging the model)."""
    from transformers import AutoConfig, AutoTokenizer

    from engine.tasks.causal_lm.gguf_model import arch_of
    from engine.tasks.causal_lm.gguf_vocab import build_vocab

    weights = Path(weights)
    source = weights
    adapter_cfg = weights / "adapter_config.json"
    if adapter_cfg.is_file():
        source = json.loads(adapter_cfg.read_text(encoding="utf-8")).get(
            "base_model_name_or_path", ""
        )
    try:
        config = AutoConfig.from_pretrained(source)
        has_tok = (weights / "tokenizer_config.json").is_file()
        tokenizer = AutoTokenizer.from_pretrained(weights if has_tok else source)
    except (OSError, ValueError):
        return  # the loader says what is missing, in its own words
    arch_of(config)
    build_vocab(tokenizer, int(getattr(config, "vocab_size", 0) or len(tokenizer)))


def finetune_name(weights: Path, config: Any) -> str:
    """general.name of a merged GGUF: the base model and the run it was tuned in."""
    base = Path(str(getattr(config, "_name_or_path", "") or "model")).name
    run = weights.parent if weights.name == "adapter" else weights.parent.parent
    label = run.name if (run / "config.toml").is_file() else weights.name
    return f"{base} fine-tuned ({label})"


def _load(adapter: Path, threads: int, report: Report) -> tuple[Any, Any]:
    from engine.tasks.causal_lm.modeling import load_generator

    report(0.0, "checking the architecture and tokenizer")
    precheck(adapter)
    report(0.02, "loading the base model and the adapter")
    return load_generator(adapter, threads)


def _modelfile(folder: Path, tokenizer: Any, source: str, adapter: str | None = None) -> Path:
    from engine.tasks.causal_lm.export import write_modelfile

    return write_modelfile(folder, tokenizer, source=source, adapter=adapter)


def export_gguf(
    weights: Path,
    out: Path,
    gguf_type: str = "bf16",
    threads: int = 0,
    overwrite: bool = False,
    report: Report | None = None,
) -> Path:
    """The merged model as OUT/model.gguf (chat template and stop tokens inside) + a Modelfile."""
    from engine.rundir.adapters import output_folder

    report = report or (lambda _f, _n: None)
    _check(gguf_type, "export --gguf")
    out = output_folder(weights, out, overwrite)
    model, tokenizer = _load(Path(weights), threads, report)
    if hasattr(model, "merge_and_unload"):
        report(0.05, "merging the adapter into the base model")
        model = model.merge_and_unload()
    state = model.state_dict()

    def write(folder: Path) -> None:
        _stage_model(
            folder,
            state,
            model.config,
            tokenizer,
            gguf_type,
            MODEL_FILE,
            threads,
            report,
            (0.1, 0.88),
            finetune_name(Path(weights), model.config),
        )
        _modelfile(folder, tokenizer, f"./{MODEL_FILE}")
        report(0.99, "moving the files into place")

    return _commit(out, write)


def _commit(out: Path, write: Callable[[Path], None]) -> Path:
    from engine.rundir.outputs import write_folder

    try:
        return write_folder(out, None, write)
    except OSError as exc:
        raise UserError(
            f"cannot write the GGUF ({exc})", where=str(out), hint="check the free space"
        ) from None


def base_gguf_arch(path: Path) -> str:
    """general.architecture of an existing GGUF (a UserError when it is not a model GGUF)."""
    from gguf import GGUFReader

    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError("no such GGUF file", where=str(path), hint="give the base model's .gguf")
    try:
        reader = GGUFReader(path)
        field = reader.fields["general.architecture"]
        arch = bytes(field.parts[field.data[0]]).decode()
        kind = reader.fields.get("general.type")
        kind_text = bytes(kind.parts[kind.data[0]]).decode() if kind else "model"
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user mistake
        raise UserError(
            f"not a readable GGUF ({type(exc).__name__})", where=str(path), hint="check the file"
        ) from None
    if kind_text == "adapter":
        raise UserError("this GGUF is an adapter, not a base model", where=str(path))
    return arch


def export_gguf_lora(
    weights: Path,
    out: Path,
    gguf_type: str = "bf16",
    base_gguf: Path | None = None,
    threads: int = 0,
    overwrite: bool = False,
    report: Report | None = None,
) -> Path:
    """OUT/adapter.gguf (the LoRA alone) + OUT/base.gguf (unless `base_gguf` names one already
    made) + a Modelfile with FROM and ADAPTER, for one base GGUF shared by many adapters."""
    from engine.rundir.adapters import load_adapter_config, output_folder
    from engine.tasks.causal_lm.gguf_lora import check_adapter_config, write_lora_gguf
    from engine.tasks.causal_lm.gguf_model import NameMap

    report = report or (lambda _f, _n: None)
    _check(gguf_type, "export --gguf_lora")
    weights = Path(weights)
    adapter_cfg = load_adapter_config(weights)
    check_adapter_config(adapter_cfg, str(weights))
    base_path = Path(base_gguf).expanduser().resolve() if base_gguf else None
    base_arch = base_gguf_arch(base_path) if base_path else ""
    out = output_folder(weights, out, overwrite)
    model, tokenizer = _load(weights, threads, report)
    config = model.base_model.model.config
    arch = NameMap(config).gguf_arch
    if base_path and base_arch != arch:
        raise UserError(
            f"the base GGUF is a {base_arch} model, the adapter's base a {arch} one",
            where=str(base_path),
            hint="give the GGUF of the adapter's own base model",
        )
    alpha = float(adapter_cfg.get("lora_alpha") or adapter_cfg.get("r") or 1)
    name = f"LoRA over {adapter_cfg.get('base_model_name_or_path', '')}"

    def write(folder: Path) -> None:
        report(0.05, "writing the LoRA weights")
        write_lora_gguf(folder / LORA_FILE, model, config, alpha, name)
        source = str(base_path) if base_path else f"./{BASE_FILE}"
        if base_path is None:
            base = model.unload()
            _stage_model(
                folder, base.state_dict(), config, tokenizer, gguf_type, BASE_FILE, threads, report,
                (0.15, 0.83),
            )  # fmt: skip
        _modelfile(folder, tokenizer, source, f"./{LORA_FILE}")
        report(0.99, "moving the files into place")

    return _commit(out, write)
