"""Logits only where there is a label: the output layer on answer positions, the loss in chunks.

A decoder's stock forward applies the output layer to every position of the batch and keeps the
`[batch, length, vocabulary]` logits (and their fp32 copy, softmax and gradient) alive through the
backward pass: 12 x 512 x 49,152 fp32 is 1.2 GB a copy for SmolLM2, 3.7 GB for Qwen2.5's 151,936
ids. The answer-only loss needs the positions whose (shifted) label is not -100 alone. Here the
decoder body runs as usual, the hidden states of those positions are gathered, and the loss is
computed a chunk of positions at a time, so at most one chunk's logits exist at once:

- a frozen, plain `nn.Linear` head (the usual case): one autograd Function computes each chunk's
  loss and its gradient with respect to the hidden states in the forward pass (softmax - one-hot,
  times the weight), keeps only that `[positions, hidden]` gradient, and frees the chunk's logits;
- any other head (peft's trainable token rows on a tied head, a bias): each chunk runs under
  activation checkpointing, so its logits are recomputed in backward instead of kept.

The loss is the stock one (transformers' ForCausalLMLoss: summed cross-entropy divided by
`num_items_in_batch` when the Trainer passes it, else the mean over label tokens), in fp32 from
logits in the head's compute dtype, as autocast gives them. Evaluation gets, instead of logits,
a `[batch, length - 1, 2]` tensor of (argmax id, negative log-likelihood) per position, which is
what engine.tasks.causal_lm.metrics scores. Generation (no labels) takes the stock path.
"""

from __future__ import annotations

import types
from functools import lru_cache
from typing import Any

IGNORE = -100
CHUNK_ELEMENTS = 1 << 24  # logits per chunk (16M: ~64 MB in fp32; a few copies live at once)
# Model types whose logits are exactly `head(last hidden state)`: no soft-capping or scaling.
PLAIN_HEAD_TYPES = frozenset(
    {
        "llama",
        "mistral",
        "mixtral",
        "qwen2",
        "qwen2_moe",
        "qwen3",
        "qwen3_moe",
        "gemma",
        "phi",
        "phi3",
        "gpt2",
        "smollm3",
        "olmo",
        "olmo2",
        "stablelm",
        "starcoder2",
        "gpt_neox",
        "opt",
    }
)


def supports(model: Any) -> bool:
    """Whether the model's logits are a plain output layer on its body's last hidden state."""
    config = getattr(model, "config", None)
    body = getattr(model, getattr(model, "base_model_prefix", ""), None)
    return (
        getattr(config, "model_type", "") in PLAIN_HEAD_TYPES
        and body is not None
        and model.get_output_embeddings() is not None
        and not getattr(config, "final_logit_softcapping", None)
    )


def install(model: Any) -> bool:
    """Route `model`'s labelled forward passes through the answer-only loss; False if unsupported."""
    if not supports(model):
        return False
    if getattr(model, "_answer_logits", False):
        return True
    stock = model.forward
    model.forward = types.MethodType(_make_forward(stock), model)
    model._answer_logits = True
    return True


def chunk_rows(vocab: int) -> int:
    """Positions per chunk so that one chunk holds about CHUNK_ELEMENTS logits."""
    return max(16, CHUNK_ELEMENTS // max(vocab, 1))


def _make_forward(stock: Any) -> Any:
    def forward(
        self: Any,
        input_ids: Any = None,
        attention_mask: Any = None,
        labels: Any = None,
        num_items_in_batch: Any = None,
        **kwargs: Any,
    ) -> Any:
        if labels is None or kwargs.get("logits_to_keep") or kwargs.get("return_dict") is False:
            return stock(
                input_ids=input_ids,
                attention_mask=attention_mask,
                labels=labels,
                **({"num_items_in_batch": num_items_in_batch} if num_items_in_batch else {}),
                **kwargs,
            )
        from transformers.modeling_outputs import CausalLMOutputWithPast

        kwargs.pop("logits_to_keep", None)
        body = getattr(self, self.base_model_prefix)
        out = body(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        hidden = out[0]
        target = labels[:, 1:]
        mask = target != IGNORE
        picked = hidden[:, :-1][mask]
        wanted = target[mask]
        head = self.get_output_embeddings()
        if self.training or picked.requires_grad:
            total = answer_loss_sum(head, picked, wanted)
            logits = None
        else:
            total, pred, nll = answer_scores(head, picked, wanted)
            logits = hidden.new_zeros((*target.shape, 2), dtype=_float())
            logits[mask] = _stack(pred, nll)
        if num_items_in_batch is not None:
            if hasattr(num_items_in_batch, "to"):
                num_items_in_batch = num_items_in_batch.to(total.device)
            loss = total / num_items_in_batch
        else:
            loss = total / max(int(wanted.numel()), 1)
        return CausalLMOutputWithPast(loss=loss, logits=logits)

    return forward


def _float() -> Any:
    import torch

    return torch.float32


def _stack(pred: Any, nll: Any) -> Any:
    import torch

    # argmax ids are exact in float32 below 2**24 (vocabularies are smaller)
    return torch.stack((pred.float(), nll.float()), dim=-1)


def is_plain_head(head: Any) -> bool:
    """A frozen nn.Linear without bias: its gradient needs no logits kept (the fused path)."""
    import torch

    return type(head) is torch.nn.Linear and head.bias is None and not head.weight.requires_grad


def is_quant_head(head: Any) -> bool:
    """A quantised base's output layer (int8 / int4, no bias): scored a block of vocabulary at a
    time, never dequantised whole."""
    from engine.models.quantized import is_quant_linear

    return is_quant_linear(head) and head.bias is None


def _compute_dtype(hidden: Any) -> Any:
    import torch

    return torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else hidden.dtype


def _vocab_blocks(head: Any, positions: int) -> int:
    """Vocabulary rows per block: ~CHUNK_ELEMENTS logits and ~CHUNK_ELEMENTS weight values."""
    return max(16, CHUNK_ELEMENTS // max(positions, head.in_features, 1))


def quant_head_scores(head: Any, hidden: Any, targets: Any) -> tuple[Any, Any, Any]:
    """(log-sum-exp, target logit, argmax) of each position under a quantised head, one block of
    the vocabulary at a time (an online log-sum-exp), without a graph."""
    import torch

    n, dtype = hidden.shape[0], _compute_dtype(hidden)
    h = hidden.detach().to(dtype)
    top = torch.full((n,), -torch.inf)
    best = torch.zeros(n, dtype=torch.long)
    total = torch.zeros(n)
    target_logit = torch.zeros(n)
    block = _vocab_blocks(head, n)
    with torch.no_grad(), torch.autocast("cpu", enabled=False):
        for start in range(0, head.out_features, block):
            logits = (h @ head.dequantized_rows(start, start + block, dtype).t()).float()
            block_top, block_best = logits.max(1)
            higher = block_top > top
            best = torch.where(higher, block_best + start, best)
            new_top = torch.maximum(top, block_top)
            total = total * torch.exp(top - new_top) + torch.exp(logits - new_top[:, None]).sum(1)
            top = new_top
            inside = ((targets >= start) & (targets < start + logits.shape[1])).nonzero()[:, 0]
            target_logit[inside] = logits[inside, targets[inside] - start]
    return top + total.log(), target_logit, best


@lru_cache(maxsize=1)  # built on first use: torch is imported lazily
def _quant_head_nll() -> Any:
    """Per-position cross-entropy through a quantised head, block by block."""
    import torch

    class QuantHeadTokenNll(torch.autograd.Function):
        """CE(hidden @ dequant(W)^T, targets) per position; backward walks the blocks again."""

        @staticmethod
        def forward(ctx: Any, hidden: Any, head: Any, targets: Any) -> Any:  # noqa: D102
            lse, target_logit, _ = quant_head_scores(head, hidden, targets)
            ctx.save_for_backward(hidden, targets, lse)
            ctx.head = head
            return lse - target_logit

        @staticmethod
        def backward(ctx: Any, out_grad: Any) -> Any:  # noqa: D102
            hidden, targets, lse = ctx.saved_tensors
            head, dtype = ctx.head, _compute_dtype(hidden)
            h, weights = hidden.to(dtype), out_grad.float()[:, None]
            grad = torch.zeros(hidden.shape, dtype=torch.float32)
            block = _vocab_blocks(head, hidden.shape[0])
            with torch.autocast("cpu", enabled=False):
                for start in range(0, head.out_features, block):
                    w = head.dequantized_rows(start, start + block, dtype)
                    probs = (h @ w.t()).float().sub_(lse[:, None]).exp_()  # softmax of the block
                    inside = ((targets >= start) & (targets < start + w.shape[0])).nonzero()[:, 0]
                    probs[inside, targets[inside] - start] -= 1.0
                    grad += (probs.mul_(weights).to(dtype) @ w).float()
            return grad.to(hidden.dtype), None, None

    return QuantHeadTokenNll.apply


def answer_loss_sum(head: Any, hidden: Any, targets: Any) -> Any:
    """Summed cross-entropy of `head(hidden)` against `targets`, never holding all the logits."""
    return answer_token_nll(head, hidden, targets).sum()


def answer_scores(head: Any, hidden: Any, targets: Any) -> tuple[Any, Any, Any]:
    """(summed loss, argmax ids, per-position loss) without a graph, a chunk at a time."""
    import torch

    if is_quant_head(head) and hidden.shape[0]:
        lse, target_logit, best = quant_head_scores(head, hidden, targets)
        nll = lse - target_logit
        return nll.sum(), best, nll
    rows = chunk_rows(head.weight.shape[0])
    preds, nlls = [], []
    with torch.no_grad():
        for start in range(0, hidden.shape[0], rows):
            logits = head(hidden[start : start + rows]).float()
            t = targets[start : start + rows]
            nlls.append(logits.logsumexp(-1) - logits.gather(1, t[:, None]).squeeze(1))
            preds.append(logits.argmax(-1))
    if not nlls:
        empty = hidden.new_zeros((0,), dtype=torch.float32)
        return empty.sum(), empty.long(), empty
    nll = torch.cat(nlls)
    return nll.sum(), torch.cat(preds), nll


def answer_token_nll(head: Any, hidden: Any, targets: Any) -> Any:
    """Per-position cross-entropy of `head(hidden)` against `targets`, never all logits at once.

    The preference losses need each row's own sum; the gradient of a position's loss with
    respect to its hidden state does not depend on the others, so the fused path keeps it per
    position and scales it by that position's incoming gradient in backward.
    """
    import torch

    if hidden.shape[0] == 0:
        return hidden.new_zeros((0,), dtype=torch.float32) + hidden.sum() * 0.0
    if is_quant_head(head):
        return _quant_head_nll()(hidden, head, targets)
    rows = chunk_rows(head.weight.shape[0])
    if is_plain_head(head):
        return _fused_positions()(hidden, head.weight, targets, rows)
    from torch.utils.checkpoint import checkpoint

    parts = []
    for start in range(0, hidden.shape[0], rows):
        h, t = hidden[start : start + rows], targets[start : start + rows]
        if torch.is_grad_enabled() and h.requires_grad:
            parts.append(checkpoint(_chunk_nll, head, h, t, use_reentrant=False))
        else:
            parts.append(_chunk_nll(head, h, t))
    return torch.cat(parts)


def _chunk_nll(head: Any, hidden: Any, targets: Any) -> Any:
    import torch

    logits = head(hidden).float()
    return torch.nn.functional.cross_entropy(logits, targets, reduction="none")


@lru_cache(maxsize=1)  # built on first use: torch is imported lazily
def _fused_positions() -> Any:
    """The fused head + per-position cross-entropy autograd Function."""
    import torch

    class HeadTokenNll(torch.autograd.Function):
        """CE(hidden @ W^T, targets) per position; d/d hidden kept per position from forward."""

        @staticmethod
        def forward(ctx: Any, hidden: Any, weight: Any, targets: Any, rows: int) -> Any:  # noqa: D102
            dtype = weight.dtype
            nll = torch.empty(hidden.shape[0], dtype=torch.float32)
            grad = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
            with torch.autocast("cpu", enabled=False):
                for start in range(0, hidden.shape[0], rows):
                    h = hidden[start : start + rows].to(dtype)
                    t = targets[start : start + rows]
                    logits = (h @ weight.t()).float()
                    lse = logits.logsumexp(-1, keepdim=True)
                    nll[start : start + rows] = lse.squeeze(1) - logits.gather(
                        1, t[:, None]
                    ).squeeze(1)
                    if grad is not None:
                        probs = logits.sub_(lse).exp_()
                        probs[torch.arange(len(t)), t] -= 1.0
                        grad[start : start + rows] = (probs.to(dtype) @ weight).to(grad.dtype)
            ctx.save_for_backward(grad)
            return nll

        @staticmethod
        def backward(ctx: Any, out_grad: Any) -> Any:  # noqa: D102
            (grad,) = ctx.saved_tensors
            return grad * out_grad.to(grad.dtype)[:, None], None, None, None

    return HeadTokenNll.apply
