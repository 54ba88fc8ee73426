"""RMSNorm for bf16 CPU training as one autograd Function that keeps the input and 1/rms only.

transformers' RMSNorm upcasts to fp32, squares, averages, takes rsqrt and multiplies as separate
ops, and autograd keeps their fp32 intermediates for backward: ~16 bytes per hidden unit and
token for each of a layer's two norms (a third of a SmolLM2-135M layer's activations). This one
computes the same numbers (the fp32 arithmetic, then the cast and the weight, as
LlamaRMSNorm.forward) and recomputes the normalised input in backward from the bf16 input and the
per-token 1/rms.
"""

from __future__ import annotations

import types
from functools import lru_cache
from typing import Any

# Norm classes whose forward is weight * (x32 * rsqrt(mean(x32^2) + eps)).to(dtype).
NORM_CLASSES = frozenset({"LlamaRMSNorm", "Qwen2RMSNorm", "Qwen3RMSNorm", "MistralRMSNorm"})


@lru_cache(maxsize=1)
def _function() -> Any:
    """The autograd Function (built on first use: torch is imported lazily)."""
    import torch

    class RMSNorm(torch.autograd.Function):
        """y = w * (x / rms(x)) with the normalisation in fp32 and the result in x's dtype."""

        @staticmethod
        def forward(ctx: Any, x: Any, weight: Any, eps: float) -> Any:  # noqa: D102
            x32 = x.to(torch.float32, copy=True)  # never x itself: it is saved
            rstd = torch.rsqrt(x32.pow(2).mean(-1, keepdim=True).add_(eps))
            normed = x32.mul_(rstd).to(x.dtype)
            ctx.save_for_backward(x, weight, rstd)
            return weight * normed

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:  # noqa: D102
            x, weight, rstd = ctx.saved_tensors
            xhat = x.to(torch.float32, copy=True).mul_(rstd)
            grad_weight = None
            if ctx.needs_input_grad[1]:
                normed = xhat.to(x.dtype).float()
                grad_weight = (grad.float() * normed).reshape(-1, x.shape[-1]).sum(0)
                grad_weight = grad_weight.to(weight.dtype)
            g = grad.float() * weight.float()
            dot = (g * xhat).mean(-1, keepdim=True)
            grad_x = g.sub_(xhat.mul_(dot)).mul_(rstd).to(x.dtype)
            return grad_x, grad_weight, None

    return RMSNorm


def _lean_forward(self: Any, hidden_states: Any) -> Any:
    """The norm's forward through the Function."""
    return _function().apply(hidden_states, self.weight, self.variance_epsilon)


def use_lean_norms(model: Any) -> int:
    """Route the model's RMSNorms of the known classes through the Function; how many."""
    count = 0
    for module in model.modules():
        if type(module).__name__ in NORM_CLASSES and hasattr(module, "variance_epsilon"):
            module.forward = types.MethodType(_lean_forward, module)
            count += 1
    return count
