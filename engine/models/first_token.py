"""The last layer of an encoder classifier computed for the first token only.

A BERT-family sequence classifier reads one vector: the last layer's output at the first token
([CLS]; BERT's pooler, RoBERTa's and ELECTRA's heads all take `hidden[:, 0]`). Every other
position of the last layer is computed and thrown away. Here the last layer attends from the
first token only: keys and values still come from every token (what the first token attends to),
but the query, the attention output and the feed-forward block - about 10/12 of a layer's matmuls
- run on one row per example instead of one per token, in the forward pass and in backward.

The numbers are the plain path's (the discarded rows never reached the loss); only the matmul
shapes, and so the rounding, differ (tests/engine/models/test_speed_paths.py). The model's weights and the
saved adapter are untouched: only this process's forward of that one layer is replaced.
"""

from __future__ import annotations

import types
from typing import Any

# model_type values whose sequence-classification head reads the first token of the last layer
# and whose layers are BERT's (attention.self.query/key/value, attention.output, feed_forward_chunk).
FIRST_TOKEN_HEADS = ("bert", "roberta", "xlm-roberta", "electra")


def _first_token_forward(
    self: Any, hidden_states: Any, attention_mask: Any = None, *args: Any, **kwargs: Any
) -> Any:
    """BertLayer.forward for the first position only: (batch, 1, hidden)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    from transformers.models.bert.modeling_bert import eager_attention_forward

    attention = self.attention.self
    batch, length = hidden_states.shape[:2]
    size = attention.attention_head_size
    first = hidden_states[:, :1]
    query = attention.query(first).view(batch, 1, -1, size).transpose(1, 2)
    key = attention.key(hidden_states).view(batch, length, -1, size).transpose(1, 2)
    value = attention.value(hidden_states).view(batch, length, -1, size).transpose(1, 2)
    if attention_mask is not None and attention_mask.dim() == 4 and attention_mask.shape[-2] > 1:
        attention_mask = attention_mask[:, :, :1, :]  # the first query's row of the mask
    interface = ALL_ATTENTION_FUNCTIONS.get_interface(
        attention.config._attn_implementation, eager_attention_forward
    )
    kwargs = {k: v for k, v in kwargs.items() if k not in ("cache", "encoder_attention_mask")}
    context, _ = interface(
        attention,
        query,
        key,
        value,
        attention_mask,
        dropout=attention.dropout.p if attention.training else 0.0,
        scaling=attention.scaling,
        **kwargs,
    )
    context = context.reshape(batch, 1, -1).contiguous()
    return self.feed_forward_chunk(self.attention.output(context, first))


def last_layer_first_token_only(model: Any) -> bool:
    """Make the last encoder layer compute the first token only, where that is all the head reads.

    Only for the architectures in FIRST_TOKEN_HEADS, as plain encoders (no decoder, no cross
    attention, no feed-forward chunking, no hidden states or attentions asked for). Returns
    whether it did.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    if config is None or getattr(config, "model_type", None) not in FIRST_TOKEN_HEADS:
        return False
    if not type(base).__name__.endswith("ForSequenceClassification"):
        return False
    if config.is_decoder or config.add_cross_attention or config.chunk_size_feed_forward:
        return False
    if config.output_hidden_states or config.output_attentions:
        return False
    encoder = getattr(getattr(base, base.base_model_prefix, None), "encoder", None)
    layers = getattr(encoder, "layer", None)
    if not layers:
        return False
    last = layers[-1]
    needed = ("query", "key", "value", "attention_head_size", "scaling", "config", "dropout")
    if not all(hasattr(last.attention.self, n) for n in needed) or not hasattr(
        last, "feed_forward_chunk"
    ):
        return False
    last.forward = types.MethodType(_first_token_forward, last)
    return True
