"""Whose the setup form's task is: the user's, or a fresh form's default that a decoder changes."""

from __future__ import annotations

DEFAULT_TASK = "classification"
DECODER_TASK = "causal-lm"


class TaskChoice:
    """Tracks whether the user chose the task (picked it, or it came with a given config); a
    fresh form's default task gives way to causal-lm when the model turns out to be a decoder."""

    def __init__(self, task: str, given: bool) -> None:
        self.given = given
        self._shown = task
        self._switching = False

    def shown(self, task: str) -> None:
        """The task select now shows `task`: the user's pick, unless it is our own switch."""
        if self._switching and task == DECODER_TASK:
            self._switching = False
        elif task != self._shown:
            self.given = True
        self._shown = task

    def switch_for(self, architecture: str, current: str) -> str:
        """What to tell the user when a model of this architecture switches the task to
        DECODER_TASK (the caller then shows DECODER_TASK); empty to keep `current`."""
        if self.given or current != DEFAULT_TASK or not architecture.endswith("ForCausalLM"):
            return ""
        self._switching = True
        return (
            f"{architecture} is a decoder: task set to {DECODER_TASK} (instruction tuning); "
            "pick preference or classification on the Model tab"
        )
