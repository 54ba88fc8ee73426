"""The preference step as the PeftModel's forward: policy and reference log-probs, DPO / ORPO loss.

A batch is 2n rows (engine.tasks.preference.collate): n chosen, then n rejected, in one forward.
Log-probs are computed at completion positions only, a chunk of the output layer at a time
(engine.tasks.causal_lm.answer_logits.answer_token_nll). The reference (DPO) is the same model
with the adapter switched off (peft's disable_adapter), under no_grad: no second copy.
The output's `logits` are per-pair statistics for the metrics: [n, 6] = policy chosen / rejected
summed log-probs, reference chosen / rejected, chosen / rejected completion token counts.
"""

from __future__ import annotations

import types
from typing import Any

from engine.tasks.causal_lm.answer_logits import IGNORE, answer_token_nll, supports

STATS = ("policy_chosen", "policy_rejected", "ref_chosen", "ref_rejected", "chosen_n", "rejected_n")


def completion_logps(
    base: Any, input_ids: Any, attention_mask: Any, labels: Any
) -> tuple[Any, Any]:
    """(summed log-prob, token count) of every row's labelled (completion) tokens."""
    import torch

    target = labels[:, 1:]
    mask = target != IGNORE
    rows = mask.nonzero()[:, 0]
    if supports(base):
        body = getattr(base, base.base_model_prefix)
        hidden = body(input_ids=input_ids, attention_mask=attention_mask)[0]
        nll = answer_token_nll(base.get_output_embeddings(), hidden[:, :-1][mask], target[mask])
    else:  # a head that is not a plain output layer: the stock logits
        logits = base(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1]
        nll = torch.nn.functional.cross_entropy(
            logits[mask].float(), target[mask], reduction="none"
        )
    sums = torch.zeros(labels.shape[0], dtype=torch.float32).index_add(0, rows, -nll.float())
    return sums, mask.sum(1).float()


def install(model: Any, loss: str, beta: float) -> None:
    """Make `model` (a PeftModel) compute the preference loss for a pair batch, and keep the
    training pairs' statistics for the `step` events (finetune_tui_step_metrics)."""
    seen: list[Any] = []
    model.forward = types.MethodType(_make_forward(loss, beta, seen), model)
    model.finetune_tui_step_metrics = lambda: _step_metrics(seen, loss, beta)


def _step_metrics(seen: list[Any], loss: str, beta: float) -> dict[str, float]:
    """Scores of the training pairs since the last call (empty when there were none)."""
    import torch

    from engine.tasks.preference.metrics import pair_scores

    if not seen:
        return {}
    stats = torch.cat(seen).numpy()
    seen.clear()
    return {k: round(v, 4) for k, v in pair_scores(stats, loss, beta).items()}


def _apply_layer_plan(base: Any, input_ids: Any) -> None:
    """Auto checkpointing's per-batch layer plan (its hook sits on the base's own forward)."""
    import torch

    plan = getattr(base, "_finetune_tui_layer_plan", None)
    if plan is not None and base.training and torch.is_grad_enabled():
        plan.apply(int(input_ids.shape[0]), int(input_ids.shape[1]))


def _make_forward(loss_name: str, beta: float, seen: list[Any]) -> Any:
    def forward(
        self: Any,
        input_ids: Any = None,
        attention_mask: Any = None,
        labels: Any = None,
        pair_total: int | None = None,
        chosen_tokens: int | None = None,
        **kwargs: Any,
    ) -> Any:
        import torch
        from transformers.modeling_outputs import CausalLMOutputWithPast

        if labels is None:  # generation and other plain uses: the model as it is
            return type(self).forward(
                self, input_ids=input_ids, attention_mask=attention_mask, **kwargs
            )
        from engine.tasks.preference.losses import dpo_losses, orpo_odds_term

        base = self.get_base_model()
        n = input_ids.shape[0] // 2
        pairs = pair_total or n
        if loss_name == "dpo":
            # The reference first: its activations are gone before the policy's graph is built,
            # so the two never add up in the step's peak.
            with torch.no_grad(), self.disable_adapter():
                ref, _ = completion_logps(base, input_ids, attention_mask, labels)
        _apply_layer_plan(base, input_ids)
        sums, counts = completion_logps(base, input_ids, attention_mask, labels)
        pc, pr = sums[:n], sums[n:]
        if loss_name == "dpo":
            rc, rr = ref[:n], ref[n:]
            terms = dpo_losses(pc, pr, rc, rr, beta)
            loss = terms.losses.sum() / pairs
        else:
            rc = rr = torch.zeros_like(pc)
            mean_c = pc / counts[:n].clamp(min=1)
            mean_r = pr / counts[n:].clamp(min=1)
            terms = orpo_odds_term(mean_c, mean_r, beta)
            tokens = chosen_tokens or int(counts[:n].sum())
            loss = -pc.sum() / max(tokens, 1) + terms.losses.sum() / pairs
        stats = torch.stack(
            (pc.detach(), pr.detach(), rc.detach(), rr.detach(), counts[:n], counts[n:]), dim=-1
        )
        if self.training:
            seen.append(stats.float())
        return CausalLMOutputWithPast(loss=loss, logits=stats)

    return forward
