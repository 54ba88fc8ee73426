"""Scores of held-out pairs from the per-pair statistics the preference forward returns."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def pair_scores(stats: np.ndarray, loss: str, beta: float) -> dict[str, float]:
    """Preference accuracy (chosen reward > rejected), mean reward margin, rewards and log-probs."""
    pc, pr, rc, rr, nc, nr = (stats[:, i].astype(np.float64) for i in range(6))
    if loss == "dpo":
        chosen, rejected = beta * (pc - rc), beta * (pr - rr)
    else:  # ORPO's rewards: beta x the mean token log-prob
        chosen, rejected = beta * pc / np.maximum(nc, 1), beta * pr / np.maximum(nr, 1)
    margin = chosen - rejected
    return {
        "accuracy": float((margin > 0).mean()) if len(margin) else 0.0,
        "margin": float(margin.mean()) if len(margin) else 0.0,
        "reward_chosen": float(chosen.mean()) if len(chosen) else 0.0,
        "reward_rejected": float(rejected.mean()) if len(rejected) else 0.0,
        "chosen_logp": float(pc.mean()) if len(pc) else 0.0,
        "rejected_logp": float(pr.mean()) if len(pr) else 0.0,
    }


def metrics_for(loss: str, beta: float) -> Callable[[Any], dict[str, float]]:
    """compute_metrics for the Trainer: the pair statistics arrive as the predictions."""

    def compute_metrics(pred: Any) -> dict[str, float]:
        stats = pred.predictions
        if isinstance(stats, (tuple, list)):
            stats = stats[0]
        return pair_scores(np.asarray(stats).reshape(-1, 6), loss, beta)

    return compute_metrics
