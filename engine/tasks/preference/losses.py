"""The DPO and ORPO losses on per-pair log-probs, and the rewards they report (TRL's formulas).

DPO (sigmoid): -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))), log-probs summed over
the completion tokens; rewards beta * (pi - ref).
ORPO: the chosen answers' token loss minus beta (TRL's lambda) times log sigmoid of the log odds
ratio of the mean token log-probs, log(p_c / (1 - p_c)) - log(p_r / (1 - p_r)); rewards
beta * mean token log-prob.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class PairLosses:
    """Per-pair loss terms and rewards of one batch (tensors of [pairs])."""

    losses: Any
    chosen_rewards: Any
    rejected_rewards: Any


def dpo_losses(pc: Any, pr: Any, rc: Any, rr: Any, beta: float) -> PairLosses:
    """DPO's sigmoid loss from summed completion log-probs (policy and reference)."""
    import torch.nn.functional as F

    logits = (pc - rc) - (pr - rr)
    return PairLosses(-F.logsigmoid(beta * logits), beta * (pc - rc), beta * (pr - rr))


def orpo_odds_term(mean_c: Any, mean_r: Any, beta: float) -> PairLosses:
    """ORPO's odds-ratio term (to subtract from the NLL) from mean token log-probs."""
    import torch
    import torch.nn.functional as F

    log_odds = (mean_c - mean_r) - (
        torch.log1p(-torch.exp(mean_c).clamp(max=1 - 1e-6))
        - torch.log1p(-torch.exp(mean_r).clamp(max=1 - 1e-6))
    )
    return PairLosses(-beta * F.logsigmoid(log_odds), beta * mean_c, beta * mean_r)
