"""Pad causal-LM batches: input_ids with the pad token, labels with -100."""

from __future__ import annotations

from typing import Any

from engine.tasks.causal_lm.template import IGNORE


class CausalCollator:
    """Right-pads a list of {input_ids, labels} to the longest row (rounded up to `multiple`)."""

    def __init__(self, pad_id: int, multiple: int = 1) -> None:
        self.pad_id = pad_id
        self.multiple = multiple

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """A batch of tensors: input_ids, attention_mask, labels."""
        import torch

        longest = max(len(r["input_ids"]) for r in rows)
        width = -(-longest // self.multiple) * self.multiple if self.multiple > 1 else longest
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            n = len(row["input_ids"])
            ids[i, :n] = torch.as_tensor(row["input_ids"])
            labels[i, :n] = torch.as_tensor(row.get("labels", row["input_ids"]))
            mask[i, :n] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}
