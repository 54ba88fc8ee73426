"""The logged loss and the gradient do not grow with gradient accumulation (transformers#47688)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.rundir.events import Step, read_events
from engine.rundir.runs import new_run_dir
from engine.training.train import run_training

pytestmark = pytest.mark.slow


def first_loss(tiny_model: Path, root: Path, grad_accum: int) -> float:
    cfg = RunConfig()
    cfg.model.model_name = str(tiny_model)
    cfg.training.max_steps = 1
    cfg.training.batch_size = 4
    cfg.training.grad_accum = grad_accum
    cfg.training.eval_strategy = cfg.training.save_strategy = "no"
    cfg.training.threads = 1
    cfg.training.precision = "fp32"
    run_dir = new_run_dir(cfg, root)
    assert run_training(run_dir) == 0
    return next(e.loss for e in read_events(run_dir) if isinstance(e, Step))


def test_logged_loss_does_not_scale_with_grad_accum(tiny_model: Path, runs_root: Path) -> None:
    one, four = first_loss(tiny_model, runs_root, 1), first_loss(tiny_model, runs_root, 4)
    # Two balanced classes and a fresh head: both near ln 2; the bug logged ~4x.
    assert 0.4 < one < 1.2 and 0.4 < four < 1.2
    assert four / one < 1.5


def test_gradient_is_the_mean_over_accumulated_batches(tiny_model: Path, tmp_path: Path) -> None:
    import torch

    from engine.tasks.base import MetricHooks, TaskData
    from engine.tasks.classification import ClassificationTask
    from engine.training.trainer_setup import build_trainer, training_arguments

    cfg = RunConfig()
    cfg.model.model_name = str(tiny_model)
    cfg.training.grad_accum = 4
    cfg.training.batch_size = 2
    data = TaskData([], None, "none", {"id2label": {0: "neg", 1: "pos"}})
    loaded = ClassificationTask().load_model(cfg, data, "fp32")
    model = loaded.model
    args = training_arguments(cfg, tmp_path, "fp32", has_eval=False)
    collate = ClassificationTask().collator(cfg, loaded.tokenizer)
    trainer = build_trainer(model, args, [], None, collate, loaded.tokenizer, MetricHooks(), [])
    assert trainer.model_accepts_loss_kwargs is False
    for name, param in model.named_parameters():
        if "lora_B" in name:  # non-zero B so every LoRA weight gets a gradient
            torch.nn.init.normal_(param, std=0.05)
    enc = loaded.tokenizer(["a good film", "a bad film"])
    batch = collate(
        [{"input_ids": ids, "labels": y} for ids, y in zip(enc["input_ids"], [1, 0], strict=True)]
    )
    trainer.current_gradient_accumulation_steps = 4
    model.train()
    trainer.training_step(model, dict(batch), num_items_in_batch=torch.tensor(8))
    got = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    (model(**batch).loss / 4).backward()
    for name, param in model.named_parameters():
        if param.grad is not None:
            assert torch.allclose(got[name], param.grad, atol=1e-6), name
