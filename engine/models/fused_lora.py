"""A fused LoRA linear for CPU training (bf16 or fp32): the same numbers as peft's, in fewer ops.

peft computes `base(x) + lora_B(lora_A(dropout(x))) * scaling` as a dozen small tensor ops,
each with its autocast copies and an autograd node; at CPU batch sizes (a few hundred tokens)
that bookkeeping costs more than the LoRA matmuls themselves. Here one autograd Function does
the base matmul and both LoRA matmuls, adding into one output buffer, with a hand-written
backward. It replaces only the forward of vanilla LoRA layers (no dropout, no DoRA, one adapter,
in training mode; bf16 base weights under CPU bf16 autocast, or fp32 throughout) and falls back
to peft's own forward for anything else, so the adapter's weights and file format are peft's.
"""

from __future__ import annotations

import types
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _function() -> Any:
    """The autograd Function (built on first use: torch is imported lazily)."""
    import torch

    class LoraLinear(torch.autograd.Function):
        """y = x W^T + b + (x A^T)(s B)^T, in the dtype of the frozen W."""

        @staticmethod
        def forward(
            ctx: Any, x: Any, weight: Any, bias: Any, lora_a: Any, lora_b: Any, scale: float
        ) -> Any:  # noqa: D102
            dtype = weight.dtype
            shape = x.shape
            x2 = x.reshape(-1, shape[-1]).to(dtype)
            a = lora_a.to(dtype)
            b = (lora_b * scale).to(dtype)
            h = x2 @ a.t()
            y = x2 @ weight.t() if bias is None else torch.addmm(bias.to(dtype), x2, weight.t())
            y.addmm_(h, b.t())
            ctx.save_for_backward(x2, h, weight, a, b)
            ctx.scale = scale
            ctx.shape = shape
            ctx.a_dtype, ctx.b_dtype = lora_a.dtype, lora_b.dtype
            return y.view(*shape[:-1], y.shape[-1])

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:  # noqa: D102
            x2, h, weight, a, b = ctx.saved_tensors
            g = grad.reshape(-1, grad.shape[-1]).to(weight.dtype)
            gh = g @ b  # already carries the scale
            gx = None
            if ctx.needs_input_grad[0]:
                gx = g @ weight
                gx.addmm_(gh, a)
                gx = gx.view(ctx.shape)
            ga = (gh.t() @ x2).to(ctx.a_dtype)
            gb = (g.t() @ h).to(ctx.b_dtype).mul_(ctx.scale)
            return gx, None, None, ga, gb, None

    return LoraLinear


def _plain_dtypes(x: Any, weight: Any) -> bool:
    """bf16 weights under bf16 CPU autocast, or fp32 throughout with autocast off."""
    import torch

    if torch.is_autocast_enabled("cpu"):
        return torch.get_autocast_dtype("cpu") == torch.bfloat16 and weight.dtype == torch.bfloat16
    return weight.dtype == torch.float32 and x.dtype == torch.float32


def _fused_forward(self: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
    """peft's Linear.forward, through the fused Function when the layer allows it."""
    import torch

    base = self.base_layer
    if (
        self.training
        and not args
        and not kwargs
        and not self.merged
        and not self.disable_adapters
        and len(self.active_adapters) == 1
        and _plain_dtypes(x, base.weight)
    ):
        name = self.active_adapters[0]
        if (
            name in self.lora_A
            and name not in getattr(self, "lora_variant", {})
            and not getattr(self, "use_dora", {}).get(name, False)
            and isinstance(self.lora_dropout[name], torch.nn.Identity)
        ):
            with torch.autocast("cpu", enabled=False):
                return _function().apply(
                    x,
                    base.weight,
                    base.bias,
                    self.lora_A[name].weight,
                    self.lora_B[name].weight,
                    self.scaling[name],
                )
    return type(self).forward(self, x, *args, **kwargs)


def fuse_lora_layers(model: Any) -> int:
    """Route the model's plain peft LoRA Linear layers through the fused Function; returns how many."""
    import torch
    from peft.tuners.lora.layer import Linear as PeftLoraLinear

    count = 0
    for module in model.modules():
        if type(module) is PeftLoraLinear and type(module.base_layer) is torch.nn.Linear:
            module.forward = types.MethodType(_fused_forward, module)  # type: ignore[method-assign]
            count += 1
    return count
