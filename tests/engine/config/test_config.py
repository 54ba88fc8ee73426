"""RunConfig: defaults, TOML round-trip, flat access, per-field validation messages."""

from __future__ import annotations

import dataclasses

import pytest

from engine.config import SECTIONS, RunConfig, all_fields, field_path
from engine.core.errors import ConfigError, UserError


def test_defaults_match_the_spec():
    cfg = RunConfig()
    assert cfg.task == "classification"
    # The seed's r and alpha; LoRA dropout 0 and all linear layers are measured choices (bench/).
    assert (cfg.lora.lora_r, cfg.lora.lora_alpha, cfg.lora.lora_dropout) == (8, 16, 0.0)
    assert cfg.lora.target_modules == "all-linear"
    assert (cfg.lora.lora_layers, cfg.training.batch_size) == (0.0, 0)  # 0 = auto
    assert cfg.training.learning_rate == 1e-3
    assert cfg.training.epochs == 3
    assert cfg.training.precision == "auto"
    assert cfg.problems() == {}
    assert cfg.validate() is cfg


def test_every_field_has_help_text():
    for section, f in all_fields():
        assert f.metadata.get("help"), f"{section}.{f.name} has no help text"


def test_toml_round_trip_of_defaults(tmp_path):
    path = tmp_path / "run.toml"
    RunConfig().save(path)
    assert RunConfig.load(path) == RunConfig()


def test_toml_round_trip_of_every_changed_field(tmp_path):
    cfg = RunConfig()
    cfg.model.model_name = "/models/mini lm"  # a space and a slash survive quoting
    cfg.model.max_length = 64
    cfg.model.trust_remote_code = True
    cfg.data.data_file_path = 'data/train "quoted".csv'
    cfg.data.text_column = "sentence"
    cfg.data.validation_fraction = 0.25
    cfg.lora.lora_r = 4
    cfg.lora.lora_alpha = 32
    cfg.lora.lora_dropout = 0.0
    cfg.lora.target_modules = "query,key,value"
    cfg.lora.use_dora = True
    cfg.training.epochs = 0.5
    cfg.training.learning_rate = 3e-4
    cfg.training.precision = "fp32"
    cfg.training.eval_strategy = "steps"
    cfg.training.eval_steps = 7
    cfg.output.output_dir = "~/adapters/x"
    cfg.output.run_name = "ünïcode run"
    path = tmp_path / "run.toml"
    cfg.save(path)
    again = RunConfig.load(path)
    assert again == cfg
    assert again.to_dict() == cfg.to_dict()
    # Types survive: ints stay ints, floats stay floats.
    assert isinstance(again.lora.lora_r, int)
    assert isinstance(again.training.epochs, float)
    assert RunConfig.from_toml(cfg.to_toml()) == cfg


def test_toml_has_one_table_per_section():
    text = RunConfig().to_toml()
    for section in SECTIONS:
        assert f"[{section}]" in text
    assert 'task = "classification"' in text


def test_partial_toml_keeps_defaults_and_coerces_types():
    cfg = RunConfig.from_toml(
        '[lora]\nlora_r = 4\ntarget_modules = ["query", "value"]\n'
        '[training]\nepochs = 1\nlearning_rate = "1e-3"\n'
    )
    assert cfg.lora.lora_r == 4
    assert cfg.lora.lora_alpha == 16
    assert cfg.lora.target_modules == "query,value"
    assert cfg.training.epochs == 1.0 and isinstance(cfg.training.epochs, float)
    assert cfg.training.learning_rate == pytest.approx(1e-3)


def test_copy_is_deep():
    cfg = RunConfig()
    other = cfg.copy()
    other.lora.lora_r = 99
    assert cfg.lora.lora_r == 8


def test_unknown_setting_and_section_are_named_with_the_known_ones():
    with pytest.raises(ConfigError) as info:
        RunConfig.from_dict({"lora": {"rank": 4}, "extras": {}})
    problems = info.value.problems
    assert "lora.rank" in problems
    assert "lora_r" in problems["lora.rank"]  # lists the known names
    assert "extras" in problems
    assert "training" in problems["extras"]
    assert "(and 1 more)" in str(info.value)


def test_section_that_is_not_a_table():
    with pytest.raises(ConfigError) as info:
        RunConfig.from_toml('lora = "fast"\n')
    assert "lora" in info.value.problems
    assert "table" in info.value.problems["lora"]


@pytest.mark.parametrize(
    ("toml", "key", "fragment"),
    [
        ('[lora]\nlora_r = "eight"\n', "lora.lora_r", "whole number"),
        ("[lora]\nlora_r = 2.5\n", "lora.lora_r", "whole number"),
        ("[lora]\nlora_r = true\n", "lora.lora_r", "whole number"),
        ('[training]\nlearning_rate = "fast"\n', "training.learning_rate", "number"),
        ('[training]\nepochs = "inf"\n', "training.epochs", "finite"),
        ('[training]\nlearning_rate = "nan"\n', "training.learning_rate", "finite"),
        ('[model]\ntrust_remote_code = "maybe"\n', "model.trust_remote_code", "true or false"),
    ],
)
def test_wrong_types_in_toml(toml, key, fragment):
    with pytest.raises(ConfigError) as info:
        RunConfig.from_toml(toml, source="run.toml")
    assert key in info.value.problems
    assert fragment in info.value.problems[key]
    assert info.value.field == key


def test_bad_toml_syntax_is_a_user_error_naming_the_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[lora]\nlora_r = 8\nlora_alpha = = 16\n")
    with pytest.raises(UserError) as info:
        RunConfig.load(path)
    text = info.value.one_line()
    assert str(path) in text
    assert "TOML" in text
    assert "line 3" in text


def test_missing_config_file(tmp_path):
    with pytest.raises(UserError) as info:
        RunConfig.load(tmp_path / "nope.toml")
    assert "not found" in info.value.one_line()
    assert "nope.toml" in info.value.one_line()


# -- flat access --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["lora_r", "lora-r", "lora.lora_r"])
def test_field_path_forms(name):
    assert field_path(name) == ("lora", "lora_r")


def test_seed_flag_names_resolve():
    assert field_path("output_dir") == ("output", "output_dir")
    assert field_path("model_name") == ("model", "model_name")
    assert field_path("data-file-path") == ("data", "data_file_path")


def test_set_and_get_from_text():
    cfg = RunConfig()
    cfg.set("lora-r", "4")
    cfg.set("learning_rate", "5e-4")
    cfg.set("use_dora", "yes")
    cfg.set("group_by_length", "off")
    cfg.set("epochs", "2")
    assert cfg.get("lora_r") == 4
    assert cfg.get("training.learning_rate") == pytest.approx(5e-4)
    assert cfg.lora.use_dora is True
    assert cfg.training.group_by_length is False
    assert cfg.training.epochs == 2.0


def test_set_rejects_bad_text_with_the_field_named():
    cfg = RunConfig()
    with pytest.raises(ConfigError) as info:
        cfg.set("learning_rate", "two")
    assert info.value.field == "training.learning_rate"
    assert "two" in info.value.one_line()
    assert cfg.training.learning_rate == RunConfig().training.learning_rate  # unchanged


def test_unknown_flat_name():
    with pytest.raises(ConfigError) as info:
        RunConfig().set("lora_rank", "4")
    assert "lora_rank" in info.value.one_line()


# -- validation -----------------------------------------------------------------------------------
def _with(**changes):
    cfg = RunConfig()
    for name, value in changes.items():
        section, fname = field_path(name)
        setattr(getattr(cfg, section), fname, value)
    return cfg


@pytest.mark.parametrize(
    ("changes", "key", "fragment"),
    [
        ({"max_length": 4}, "model.max_length", "between 8 and 8192"),
        ({"attention": "flash"}, "model.attention", "eager"),
        ({"validation_fraction": 0.95}, "data.validation_fraction", "[0, 0.9)"),
        ({"validation_fraction": -0.1}, "data.validation_fraction", "[0, 0.9)"),
        ({"max_train_rows": -1}, "data.max_train_rows", "positive"),
        ({"max_eval_rows": -5}, "data.max_eval_rows", "positive"),
        ({"lora_r": 0}, "lora.lora_r", "between 1 and 1024"),
        ({"lora_alpha": 0}, "lora.lora_alpha", "positive"),
        ({"lora_layers": -0.5}, "lora.lora_layers", "top half"),
        ({"lora_layers": 1.5}, "lora.lora_layers", "1 = every layer"),
        ({"lora_dropout": 1.0}, "lora.lora_dropout", "[0, 1)"),
        ({"target_modules": "  "}, "lora.target_modules", "auto"),
        ({"epochs": 0.0}, "training.epochs", "max_steps"),
        ({"max_steps": -1}, "training.max_steps", "positive"),
        ({"batch_size": -1}, "training.batch_size", "0 (auto) or between 1 and 4096"),
        ({"batch_size": 5000}, "training.batch_size", "between 1 and 4096"),
        ({"grad_accum": 0}, "training.grad_accum", "at least 1"),
        ({"learning_rate": 0.0}, "training.learning_rate", "e.g. 1e-3"),
        ({"learning_rate": 5.0}, "training.learning_rate", "between 0 and 1"),
        ({"weight_decay": -0.1}, "training.weight_decay", "negative"),
        ({"warmup_ratio": 1.0}, "training.warmup_ratio", "[0, 1)"),
        ({"lr_scheduler": "fancy"}, "training.lr_scheduler", "cosine"),
        ({"precision": "int8"}, "training.precision", "auto, bf16, fp32"),
        ({"model_dropout": 1.5}, "training.model_dropout", "[0, 1)"),
        ({"threads": -2}, "training.threads", "positive"),
        ({"eval_strategy": "sometimes"}, "training.eval_strategy", "epoch, steps, no"),
        ({"save_strategy": "always"}, "training.save_strategy", "epoch, steps, no"),
        ({"eval_strategy": "steps", "eval_steps": 0}, "training.eval_steps", "positive"),
        ({"save_strategy": "steps", "save_steps": 0}, "training.save_steps", "positive"),
        ({"checkpoint_minutes": -1.0}, "training.checkpoint_minutes", "positive"),
        ({"save_total_limit": 0}, "training.save_total_limit", "at least 1"),
        ({"metric_for_best": "acc"}, "training.metric_for_best", "accuracy, f1, loss"),
        ({"early_stopping_patience": -1}, "training.early_stopping_patience", "0 (off)"),
        (
            {"early_stopping_patience": 2, "eval_strategy": "no"},
            "training.early_stopping_patience",
            "needs evaluation",
        ),
        ({"logging_steps": 0}, "training.logging_steps", "at least 1"),
    ],
)
def test_each_bad_field_gets_its_own_message(changes, key, fragment):
    cfg = _with(**changes)
    problems = cfg.problems()
    assert list(problems) == [key], problems
    assert fragment in problems[key]
    with pytest.raises(ConfigError) as info:
        cfg.validate()
    assert info.value.field == key
    assert info.value.problems == problems
    assert info.value.one_line().startswith(key + ": ")


def test_bad_task():
    cfg = RunConfig(task="translation")
    assert "classification" in cfg.problems()["task"]
    assert "translation" in cfg.problems()["task"]


def test_max_steps_alone_is_enough():
    assert _with(epochs=0.0, max_steps=10).problems() == {}


def test_fp16_is_refused_with_the_reason():
    cfg = _with(precision="fp16")
    message = cfg.problems()["training.precision"]
    assert "fp16" in message and "CPU" in message
    assert "bf16" in message  # says what to use instead
    with pytest.raises(ConfigError) as info:
        cfg.validate()
    assert isinstance(info.value, UserError)
    assert "CPU" in info.value.one_line()


def test_several_problems_are_all_reported():
    cfg = _with(lora_r=0, learning_rate=-1.0, batch_size=-1)
    with pytest.raises(ConfigError) as info:
        cfg.validate()
    assert set(info.value.problems) == {
        "lora.lora_r",
        "training.learning_rate",
        "training.batch_size",
    }
    assert "(and 2 more)" in info.value.one_line()


def test_config_error_is_one_line():
    cfg = _with(lora_r=0, batch_size=-1)
    with pytest.raises(ConfigError) as info:
        cfg.validate()
    assert "\n" not in info.value.one_line()


def test_from_dict_does_not_share_state_between_instances():
    a = RunConfig.from_dict({"lora": {"lora_r": 4}})
    b = RunConfig()
    assert b.lora.lora_r == 8 and a.lora.lora_r == 4
    assert dataclasses.asdict(RunConfig()) == RunConfig().to_dict()


def test_the_best_checkpoint_metric_follows_the_task_unless_named() -> None:
    """auto: accuracy for classification, eval loss for causal-lm (its token accuracy on a few
    held-out answers is too noisy to pick a checkpoint by)."""
    cfg = RunConfig()
    assert cfg.training.metric_for_best == "auto" and cfg.best_metric == "accuracy"
    cfg.task = "causal-lm"
    assert cfg.best_metric == "loss"
    cfg.validate()
    cfg.training.metric_for_best = "accuracy"
    assert cfg.best_metric == "accuracy"
    cfg.validate()
