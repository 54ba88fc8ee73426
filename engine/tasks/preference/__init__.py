"""Preference tuning (DPO, ORPO) of a decoder with LoRA: prompt / chosen / rejected pairs."""

from engine.tasks.preference.task import PreferenceTask

__all__ = ["PreferenceTask"]
