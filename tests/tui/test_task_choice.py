"""The setup form's task: a fresh form's default gives way to causal-lm for a decoder, once."""

from __future__ import annotations

from tui.forms.task_choice import DECODER_TASK, TaskChoice


def test_a_fresh_default_task_switches_for_a_decoder_only() -> None:
    choice = TaskChoice("classification", given=False)
    assert choice.switch_for("BertModel", "classification") == ""
    note = choice.switch_for("LlamaForCausalLM", "classification")
    assert "LlamaForCausalLM is a decoder" in note and DECODER_TASK in note
    choice.shown(DECODER_TASK)  # our own switch: still not the user's pick
    assert not choice.given
    choice.shown("preference")  # the user's pick stays
    assert choice.given and choice.switch_for("LlamaForCausalLM", "classification") == ""


def test_a_given_or_other_task_stays() -> None:
    assert (
        TaskChoice("classification", given=True).switch_for("LlamaForCausalLM", "classification")
        == ""
    )
    assert TaskChoice("preference", given=False).switch_for("LlamaForCausalLM", "preference") == ""
