"""RunConfig: every setting of one run, with its TOML and dict round-trips and flat access."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from engine.config.fields import coerce, field_path
from engine.config.sections import (
    SECTIONS,
    DataConfig,
    DistributedConfig,
    LoraSettings,
    ModelConfig,
    OutputConfig,
    TrainingConfig,
)
from engine.config.tasks import TASKS, auto_batch_size
from engine.core.errors import ConfigError, UserError


@dataclass
class RunConfig:
    """All settings of one run; round-trips to TOML (`config.toml` in the run directory)."""

    task: str = "classification"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def anchor_paths(self, base: Path | None = None) -> None:
        """Make relative local paths absolute from `base` (default: the working folder), so an
        engine started elsewhere (detached, resumed, from the queue) still finds them. Names
        that are not on disk here (hub ids) stay as they are."""
        here = base or Path.cwd()

        def anchored(value: str, must_exist: bool = True) -> str:
            if not value or value.startswith("~") or Path(value).is_absolute():
                return value
            full = here / value
            return str(full.resolve()) if full.exists() or not must_exist else value

        self.model.model_name = anchored(self.model.model_name)
        self.data.data_file_path = anchored(self.data.data_file_path)
        self.data.eval_file_path = anchored(self.data.eval_file_path)
        self.output.output_dir = anchored(self.output.output_dir, must_exist=False)
        self.training.logging_dir = anchored(self.training.logging_dir, must_exist=False)

    @property
    def best_metric(self) -> str:
        """The metric that picks the best checkpoint (metric_for_best, 'auto' resolved)."""
        setting = self.training.metric_for_best
        if setting != "auto":
            return setting
        spec = TASKS.get(self.task)
        return spec.default_metric if spec else "loss"

    def batch_size_for(
        self, train_rows: int | None = None, world: int = 1, max_length: int = 0
    ) -> int:
        """Examples per step per process: batch_size, or for 0 (auto) the task's choice for the
        rows and the max_length (the setting, or the one chosen from the data)."""
        t = self.training
        if t.batch_size > 0:
            return t.batch_size
        length = max_length or self.model.max_length
        return auto_batch_size(self.task, train_rows, t.grad_accum, world, length)

    def with_batch_size(self, train_rows: int, world: int = 1, max_length: int = 0) -> RunConfig:
        """A copy whose batch_size is the number the run uses (auto chosen as batch_size_for)."""
        resolved = self.copy()
        resolved.training.batch_size = self.batch_size_for(train_rows, world, max_length)
        return resolved

    # -- conversion -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A plain nested dict (TOML-ready: no None values)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], *, source: str = "config") -> RunConfig:
        """Build from a nested dict; unknown keys and wrong types are ConfigErrors."""
        problems: dict[str, str] = {}
        cfg = cls()
        for key, value in raw.items():
            if key == "task":
                cfg.task = str(value)
            elif key in SECTIONS:
                if not isinstance(value, dict):
                    problems[key] = f"[{key}] must be a table of settings"
                    continue
                section = getattr(cfg, key)
                names = {f.name: f for f in fields(section)}
                for name, item in value.items():
                    if name not in names:
                        problems[f"{key}.{name}"] = (
                            f"unknown setting '{name}' in [{key}]; known: {', '.join(names)}"
                        )
                        continue
                    try:
                        setattr(section, name, coerce(names[name], item))
                    except ValueError as exc:
                        problems[f"{key}.{name}"] = str(exc)
            else:
                problems[key] = (
                    f"unknown section '{key}' in {source}; known: task, {', '.join(SECTIONS)}"
                )
        if problems:
            raise ConfigError(problems)
        return cfg

    def to_toml(self) -> str:
        """The config as TOML text."""
        import tomli_w

        return tomli_w.dumps(self.to_dict())

    @classmethod
    def from_toml(cls, text: str, *, source: str = "config") -> RunConfig:
        """Parse TOML text; a syntax error names the line."""
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise UserError(
                f"not valid TOML: {exc}", where=source, hint="fix the line it names"
            ) from None
        return cls.from_dict(raw, source=source)

    def save(self, path: str | Path) -> None:
        """Write the config to a TOML file atomically (a full disk leaves the old file or none)."""
        from engine.core.atomic import atomic_write_text

        atomic_write_text(path, self.to_toml())

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        """Read a TOML config file; a missing, unreadable or empty file is a UserError."""
        p = Path(path)
        if not p.is_file():
            raise UserError(
                "config file not found", where=str(p), hint="check the path passed to --config"
            )
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UserError(
                "the config file is not UTF-8 text", where=str(p), hint="give a TOML file"
            ) from None
        except OSError as exc:
            raise UserError(
                f"cannot read the config file ({exc.strerror or exc})",
                where=str(p),
                hint="check its permissions",
            ) from None
        if not text.strip():
            # Never the defaults: a run would then train the example data over its own results.
            raise UserError(
                "the config file is empty (a full disk can leave it so)",
                where=str(p),
                hint="restore it, or start a new run",
            )
        return cls.from_toml(text, source=str(p))

    def copy(self) -> RunConfig:
        """A deep copy."""
        return RunConfig.from_dict(self.to_dict())

    # -- flat access (CLI flags and form fields) ------------------------------------------------
    def get(self, name: str) -> Any:
        """The value of a flat field name such as 'lora_r' or 'model.max_length'."""
        section, fname = field_path(name)
        return getattr(getattr(self, section), fname)

    def set(self, name: str, value: Any) -> None:
        """Set a flat field from text or a typed value (type-checked)."""
        section, fname = field_path(name)
        fdef = {f.name: f for f in fields(SECTIONS[section])}[fname]
        try:
            setattr(getattr(self, section), fname, coerce(fdef, value))
        except ValueError as exc:
            raise ConfigError({f"{section}.{fname}": str(exc)}) from None

    # -- validation -------------------------------------------------------------------------------
    def problems(self) -> dict[str, str]:
        """Every bad field with a message that says how to fix it (empty when valid)."""
        from engine.config.validation import config_problems

        return config_problems(self)

    def validate(self) -> RunConfig:
        """Raise ConfigError listing the bad fields; return self when valid."""
        problems = self.problems()
        if problems:
            raise ConfigError(problems)
        return self
