"""Weight-only int8 / int4 frozen linears for a LoRA base: quantise, dequantise, and the layer.

int8 keeps one fp32 scale per output channel (symmetric, -127..127); int4 keeps one fp32 scale
per group of GROUP input columns (symmetric, -8..7, two values packed in a byte). The forward
dequantises the layer's weight on the fly into the compute dtype (fp32, or bf16 under bf16
autocast) and runs one matmul; the backward gives only the input gradient, through the same
dequantised weights (frozen: no weight gradient). On 2 cores the dequantisation is a few
percent of a matmul over a batch of ~1,000 tokens (bench/big_base.py), and it keeps MKL's fp32
GEMM, which PyTorch's int8 CPU kernels do not beat at these sizes.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

QUANT_PRECISIONS = ("int8", "int4")
# set_weight quantises blocks of rows of at most this many values (64 MB of fp32 a block)
SET_WEIGHT_ELEMENTS = 16 * 1024 * 1024
GROUP = 64  # int4 columns per scale (the group is halved until it divides the layer's width)


def int4_group(in_features: int) -> int:
    """The int4 group size for a layer this wide (GROUP, or the largest half of it that divides)."""
    group = GROUP
    while group > 2 and in_features % group:
        group //= 2
    return group


def quantize_int8(weight: Any) -> tuple[Any, Any]:
    """(int8 values, fp32 per-output-channel scales) of a [out, in] weight."""
    import torch

    w = weight.detach().float()
    scale = (w.abs().amax(dim=1) / 127.0).clamp_(min=1e-12)
    q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q, scale


def quantize_int4(weight: Any, group: int) -> tuple[Any, Any]:
    """(packed uint8 [out, in/2], fp32 scales [out, in/group]) of a [out, in] weight."""
    import torch

    w = weight.detach().float()
    out, width = w.shape
    grouped = w.view(out, width // group, group)
    scale = (grouped.abs().amax(dim=2) / 7.0).clamp_(min=1e-12)
    q = torch.round(grouped / scale[:, :, None]).clamp_(-8, 7).to(torch.int16) + 8
    q = q.view(out, width).to(torch.uint8)
    packed = q[:, 0::2] | (q[:, 1::2] << 4)
    return packed, scale


def dequantize(kind: str, q: Any, scale: Any, dtype: Any) -> Any:
    """The [out, in] weight in `dtype` from its quantised form."""
    import torch

    if kind == "int8":
        return q.to(dtype).mul_(scale.to(dtype)[:, None])
    out, groups = q.shape[0], scale.shape[1]
    values = torch.stack((q & 15, q >> 4), dim=2).view(out, groups, -1).to(dtype)
    s = scale.to(dtype)[:, :, None]
    return torch.addcmul(s * -8.0, values, s).view(out, -1)  # (q - 8) * scale in one pass


@lru_cache(maxsize=1)
def _function() -> Any:
    """The autograd Function y = x W^T + b with W dequantised (built on first use)."""
    import torch

    class QuantMatmul(torch.autograd.Function):
        """Forward and input gradient through the dequantised frozen weight."""

        @staticmethod
        def forward(ctx: Any, x: Any, layer: Any) -> Any:  # noqa: D102
            weight = layer.dequantized(x.dtype)
            y = torch.nn.functional.linear(x, weight, layer.bias_in(x.dtype))
            ctx.layer = layer
            ctx.dtype = x.dtype
            return y

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:  # noqa: D102
            weight = ctx.layer.dequantized(ctx.dtype)
            return grad.to(ctx.dtype) @ weight, None

    return QuantMatmul


@lru_cache(maxsize=1)
def quant_linear_class() -> type:
    """The QuantLinear class (an nn.Linear, so peft wraps it with LoRA like any linear)."""
    import torch

    class QuantLinear(torch.nn.Linear):
        """A frozen linear stored as int8 (per-channel scales) or int4 (group-wise scales)."""

        def __init__(self, in_features: int, out_features: int, bias: bool, kind: str) -> None:
            torch.nn.Module.__init__(self)
            self.in_features, self.out_features, self.kind = in_features, out_features, kind
            self.group = int4_group(in_features) if kind == "int4" else in_features
            width = in_features if kind == "int8" else in_features // 2
            dtype = torch.int8 if kind == "int8" else torch.uint8
            empty = torch.empty((out_features, width), dtype=dtype, device="meta")
            self.weight = torch.nn.Parameter(empty, requires_grad=False)
            groups = (
                (out_features,) if kind == "int8" else (out_features, in_features // self.group)
            )
            self.register_buffer("scale", torch.empty(groups, device="meta"))
            bias_value: Any = (  # nn.Linear's bias may be None too
                torch.nn.Parameter(torch.empty(out_features, device="meta"), requires_grad=False)
                if bias
                else None
            )
            self.bias = bias_value

        def set_weight(self, weight: Any) -> None:
            """Quantise a full-precision [out, in] weight into this layer, a block of rows at a
            time (each row's scales are its own), so a big output layer never has several fp32
            copies alive at once."""
            rows = max(1, SET_WEIGHT_ELEMENTS // max(1, weight.shape[1]))
            qs, scales = [], []
            for start in range(0, weight.shape[0], rows):
                block = weight[start : start + rows]
                if self.kind == "int8":
                    q, scale = quantize_int8(block)
                else:
                    q, scale = quantize_int4(block, self.group)
                qs.append(q)
                scales.append(scale)
            q = qs[0] if len(qs) == 1 else torch.cat(qs)
            scale = scales[0] if len(scales) == 1 else torch.cat(scales)
            self.weight = torch.nn.Parameter(q, requires_grad=False)
            self.scale = scale

        def dequantized(self, dtype: Any) -> Any:
            """The weight in `dtype`."""
            return dequantize(self.kind, self.weight, self.scale, dtype)

        def dequantized_rows(self, start: int, stop: int, dtype: Any) -> Any:
            """Output rows start..stop of the weight in `dtype` (each row has its own scales)."""
            return dequantize(self.kind, self.weight[start:stop], self.scale[start:stop], dtype)

        def bias_in(self, dtype: Any) -> Any:
            """The bias in `dtype` (or None)."""
            return None if self.bias is None else self.bias.to(dtype)

        def forward(self, x: Any) -> Any:  # noqa: D102
            dtype = x.dtype
            if torch.is_autocast_enabled("cpu"):
                dtype = torch.get_autocast_dtype("cpu")
            with torch.autocast("cpu", enabled=False):
                return _function().apply(x.to(dtype), self)

        def extra_repr(self) -> str:  # noqa: D102
            return (
                f"in={self.in_features}, out={self.out_features}, {self.kind}, group={self.group}"
            )

    return QuantLinear


def is_quant_linear(module: Any) -> bool:
    """True for a QuantLinear layer."""
    return isinstance(module, quant_linear_class())


def quantizable_names(model: Any) -> list[str]:
    """Full names of the linears to quantise: those inside the numbered blocks, and an untied
    output head (a head tied to the input embeddings stays as it is)."""
    import torch

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    embed = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    tied = head is not None and embed is not None and head.weight is embed.weight
    tied = tied or bool(getattr(model.config, "tie_word_embeddings", False))
    names = []
    for name, module in model.named_modules():
        if type(module) is not torch.nn.Linear:
            continue
        if module is head:
            if not tied:
                names.append(name)
        elif any(part.isdigit() for part in name.split(".")):
            names.append(name)
    return names


def swap_in_quant_linears(model: Any, kind: str) -> list[str]:
    """Replace the model's quantisable linears with empty (meta) QuantLinears; their names."""
    cls = quant_linear_class()
    names = quantizable_names(model)
    for name in names:
        parent_name, _, leaf = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        old = getattr(parent, leaf)
        setattr(parent, leaf, cls(old.in_features, old.out_features, old.bias is not None, kind))
    return names


def quantized_bytes(model: Any) -> int:
    """Bytes the model's parameters and buffers take (quantised layers at their stored size)."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    return total + sum(b.numel() * b.element_size() for b in model.buffers())
