"""Classification inference: a label and class probabilities from an adapter or merged model."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.core.errors import UserError
from engine.rundir.events import Started, read_events
from engine.rundir.runs import CHECKPOINTS_DIR


@dataclass
class Prediction:
    """One text's predicted label and the probability of every class."""

    text: str
    label: str
    probabilities: dict[str, float]


def labels_for(folder: Path) -> dict[int, str] | None:
    """The label map of a checkpoint, from the run's `started` event."""
    run_dir = folder.parent.parent if folder.parent.name == CHECKPOINTS_DIR else None
    if run_dir is None:
        return None
    starts = [e for e in read_events(run_dir) if isinstance(e, Started)]
    return dict(enumerate(starts[-1].labels)) if starts else None


def load_classifier(folder: Path, threads: int = 0) -> tuple[Any, Any]:
    """(model, tokenizer) from an adapter folder, a checkpoint, or a merged model folder."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # a TUI or a one-line CLI error has no room for tqdm bars
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    if threads > 0:
        torch.set_num_threads(threads)
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError("model folder not found", where=str(folder), hint="check the path")
    from engine.models.checks import check_inference_weights

    check_inference_weights(folder)  # pickle-only weights: a clear refusal, never an unpickle
    adapter_cfg = folder / "adapter_config.json"
    if not adapter_cfg.is_file():
        if not (folder / "config.json").is_file():
            raise UserError(
                "neither an adapter nor a model folder",
                where=str(folder),
                hint="give a run id, an adapter folder or a merged model folder",
            )
        model = AutoModelForSequenceClassification.from_pretrained(folder, use_safetensors=True)
        return model.eval(), AutoTokenizer.from_pretrained(folder)
    from peft import PeftModel

    base_name = json.loads(adapter_cfg.read_text())["base_model_name_or_path"]
    config = AutoConfig.from_pretrained(folder if (folder / "config.json").is_file() else base_name)
    labels = labels_for(folder)
    if labels:
        config.num_labels = len(labels)
        config.id2label = labels
        config.label2id = {v: k for k, v in labels.items()}
    try:
        # The head comes from the adapter (modules_to_save); a base saved with another label
        # count must not stop the load.
        base = AutoModelForSequenceClassification.from_pretrained(
            base_name, config=config, use_safetensors=True, ignore_mismatched_sizes=True
        )
    except OSError as exc:
        raise UserError(
            f"cannot load the base model '{base_name}' ({type(exc).__name__})",
            where=str(folder),
            hint="the base model must be on this machine",
        ) from None
    model = PeftModel.from_pretrained(base, folder)
    has_tok = (folder / "tokenizer_config.json").is_file()
    tokenizer = AutoTokenizer.from_pretrained(folder if has_tok else base_name)
    return model.eval(), tokenizer


class Predictor:
    """A loaded classifier that predicts batches of texts."""

    def __init__(self, folder: Path, threads: int = 0, max_length: int = 512) -> None:
        self.folder = Path(folder)
        self.model, self.tokenizer = load_classifier(self.folder, threads)
        self.max_length = max_length
        config = self.model.config
        self.id2label = {int(k): str(v) for k, v in config.id2label.items()}

    def logits(self, texts: list[str]) -> Any:
        """Raw logits (a float32 tensor) for texts."""
        import torch

        with torch.inference_mode():
            batch = self.tokenizer(
                texts,
                truncation=True,
                max_length=self.max_length,
                padding=True,
                return_tensors="pt",
            )
            return self.model(**batch).logits.float()

    def predict(self, texts: list[str], batch_size: int = 32) -> list[Prediction]:
        """Predicted label and probabilities per text."""
        out: list[Prediction] = []
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            probs = self.logits(chunk).softmax(-1).tolist()
            for text, p in zip(chunk, probs, strict=True):
                best = max(range(len(p)), key=p.__getitem__)
                out.append(
                    Prediction(
                        text,
                        self.id2label[best],
                        {self.id2label[i]: round(v, 6) for i, v in enumerate(p)},
                    )
                )
        return out
