"""Causal-LM evaluation: answer loss, perplexity and token accuracy without holding all logits."""

from __future__ import annotations

import math
from typing import Any

from engine.tasks.causal_lm.template import IGNORE


def preprocess_logits(logits: Any, labels: Any) -> Any:
    """Per batch, keep only what the metrics need: the argmax and the label's negative log-prob
    (two numbers per token instead of a vocabulary-wide row)."""
    import torch

    if isinstance(logits, tuple):
        logits = logits[0]
    if logits.shape[-1] == 2:  # already (argmax, nll) per position: answer_logits' eval output
        return logits
    logits = logits[:, :-1].float()
    target = labels[:, 1:]
    safe = target.clamp(min=0)
    nll = torch.logsumexp(logits, -1) - logits.gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    pred = logits.argmax(-1)
    # Stack as float: argmax ids are exact in float32 below 2**24 (vocabularies are smaller).
    return torch.stack((pred.float(), nll), dim=-1)


def compute_metrics(pred: Any) -> dict[str, float]:
    """Token accuracy, answer loss and perplexity over the trained (non -100) label tokens."""
    import numpy as np

    out = pred.predictions
    labels = pred.label_ids[:, 1:]
    width = min(out.shape[1], labels.shape[1])
    out, labels = out[:, :width], labels[:, :width]
    mask = labels != IGNORE
    n = int(mask.sum())
    if n == 0:
        return {"accuracy": 0.0, "answer_loss": float("nan"), "perplexity": float("nan")}
    correct = (out[..., 0].astype(np.int64) == labels) & mask
    nll = float(out[..., 1][mask].astype(np.float64).mean())
    return {
        "accuracy": round(float(correct.sum()) / n, 6),
        "answer_loss": round(nll, 6),
        "perplexity": round(math.exp(min(nll, 50.0)), 4),
    }
