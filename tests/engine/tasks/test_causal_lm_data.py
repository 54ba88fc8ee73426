"""SFT data formats and the answer-only loss mask, checked token by token."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.core.errors import UserError
from engine.tasks.causal_lm.formats import Chat, detect_format, normalise, normalise_all
from engine.tasks.causal_lm.template import (
    IGNORE,
    encode_chat,
    end_of_turn_ids,
    ensure_chat_template,
    prompt_text,
    render,
)
from tests.tiny_lm import ZEPHYR, make_tokenizer

USER_ASSISTANT = [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Yes."}]


# -- formats ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("record", "fmt", "turns"),
    [
        ({"text": "plain words"}, "text", [{"role": "text", "content": "plain words"}]),
        ({"prompt": "Hi?", "completion": "Yes."}, "prompt-completion", USER_ASSISTANT),
        ({"messages": USER_ASSISTANT}, "messages", USER_ASSISTANT),
        (
            {"messages": json.dumps(USER_ASSISTANT)},  # a CSV cell holding JSON
            "messages",
            USER_ASSISTANT,
        ),
        (
            {"instruction": "Add.", "input": "2+2", "output": "4", "system": "Be terse."},
            "alpaca",
            [
                {"role": "system", "content": "Be terse."},
                {"role": "user", "content": "Add.\n\n2+2"},
                {"role": "assistant", "content": "4"},
            ],
        ),
        (
            {"instruction": "Hi?", "input": "", "output": "Yes."},
            "alpaca",
            USER_ASSISTANT,
        ),
        (
            {
                "conversations": [
                    {"from": "system", "value": "S"},
                    {"from": "human", "value": "Hi?"},
                    {"from": "gpt", "value": "Yes."},
                ]
            },
            "sharegpt",
            [{"role": "system", "content": "S"}, *USER_ASSISTANT],
        ),
    ],
)
def test_each_format_is_detected_and_normalised(record: dict, fmt: str, turns: list) -> None:
    chats, found = normalise_all([record], list(record))
    assert found == fmt
    assert chats[0].turns == turns
    assert chats[0].raw == (fmt == "text")


def test_column_map_renames_columns() -> None:
    rows = [{"question": "Hi?", "answer": "Yes.", "id": 3}]
    chats, fmt = normalise_all(rows, list(rows[0]), "prompt=question,completion=answer")
    assert fmt == "prompt-completion"
    assert chats[0].turns == USER_ASSISTANT


@pytest.mark.parametrize(
    ("rows", "column_map", "message"),
    [
        (
            [{"messages": [{"role": "wizard", "content": "x"}]}],
            "",
            "unknown role 'wizard'",
        ),
        ([{"prompt": "Hi?", "completion": "  "}], "", "empty completion"),
        (
            [
                {
                    "messages": [
                        {"role": "user", "content": "a"},
                        {"role": "assistant", "content": ""},
                    ]
                }
            ],
            "",
            "empty answer in turn 2",
        ),
        ([{"messages": [{"role": "user", "content": "a"}]}], "", "no assistant answer"),
        ([{"sentence": "great", "label": 1}], "", "use --task classification"),
        ([{"question": "q"}], "", "cannot tell the instruction format"),
        ([{"q": "a", "a": "b"}], "prompt=question", "not in the data: question"),
        ([{"q": "a", "a": "b"}], "answer=a", "unknown name 'answer'"),
        ([{"q": "a", "a": "b"}], "prompt", "bad column map entry"),
    ],
)
def test_bad_inputs_get_one_clear_message(rows: list, column_map: str, message: str) -> None:
    with pytest.raises(UserError) as info:
        normalise_all(rows, list(rows[0]), column_map, source="data.jsonl")
    assert message in info.value.one_line()
    assert "\n" not in info.value.one_line()


def test_error_names_the_row() -> None:
    rows = [{"prompt": "a", "completion": "b"}, {"prompt": "c", "completion": ""}]
    with pytest.raises(UserError, match="data.jsonl row 2"):
        normalise_all(rows, ["prompt", "completion"], source="data.jsonl")


def test_prompts_without_answers_for_prediction() -> None:
    chat = normalise({"instruction": "Name a colour."}, "alpaca", need_answer=False)
    assert chat.prompt_turns() == [{"role": "user", "content": "Name a colour."}]
    assert detect_format(["prompt"], {"completion": "x"} | {}) == "prompt-completion"


# -- templates and masks ----------------------------------------------------------------------
@pytest.fixture(scope="module", params=["chatml-fallback", "own-template", "fallback-no-im-tokens"])
def tokenizer(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp(request.param)
    tok = make_tokenizer(
        folder,
        chatml_tokens=request.param != "fallback-no-im-tokens",
        template=ZEPHYR if request.param == "own-template" else None,
    )
    kind = ensure_chat_template(tok)
    assert kind == ("model" if request.param == "own-template" else "chatml")
    return tok


def _trained_runs(enc) -> list[list[int]]:
    """Consecutive runs of trained token ids."""
    runs: list[list[int]] = []
    prev = False
    for tid, label in zip(enc.input_ids, enc.labels, strict=True):
        trained = label != IGNORE
        if trained:
            assert label == tid  # labels are the ids themselves (the model shifts)
            if not prev:
                runs.append([])
            runs[-1].append(tid)
        prev = trained
    return runs


def _end(tok) -> str:
    return "<|im_end|>" if "im_end" in (tok.chat_template or "") else tok.eos_token


def test_one_turn_mask_token_by_token(tokenizer) -> None:
    chat = Chat(list(USER_ASSISTANT))
    enc = encode_chat(tokenizer, chat, max_length=256)
    prompt_ids = tokenizer(prompt_text(tokenizer, chat), add_special_tokens=False)["input_ids"]
    n = len(prompt_ids)
    assert enc.input_ids[:n] == prompt_ids  # the prompt is tokenized exactly as at inference
    assert enc.labels[:n] == [IGNORE] * n
    assert enc.labels[n:] == enc.input_ids[n:]
    assert tokenizer.decode(enc.input_ids[n:]) == "Yes." + _end(tokenizer) + "\n"
    assert set(end_of_turn_ids(tokenizer)) & set(enc.labels[n:])  # the answer's stop is trained
    assert tokenizer.decode(enc.input_ids) == render(tokenizer, chat.turns)


def test_multi_turn_trains_every_answer(tokenizer) -> None:
    chat = Chat(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Is this review positive?"},
            {"role": "assistant", "content": "positive"},
            {"role": "user", "content": "And this one?"},
            {"role": "assistant", "content": "negative"},
        ]
    )
    enc = encode_chat(tokenizer, chat, max_length=512)
    runs = [tokenizer.decode(r) for r in _trained_runs(enc)]
    end = _end(tokenizer)
    assert runs == [f"positive{end}\n", f"negative{end}\n"]
    assert tokenizer.decode(enc.input_ids) == render(tokenizer, chat.turns)


def test_train_on_prompt_trains_everything(tokenizer) -> None:
    enc = encode_chat(tokenizer, Chat(list(USER_ASSISTANT)), 256, train_on_prompt=True)
    assert enc.labels == enc.input_ids


def test_raw_text_is_trained_whole_with_eos(tokenizer) -> None:
    enc = encode_chat(tokenizer, Chat([{"role": "text", "content": "a fine film"}], raw=True), 64)
    assert enc.labels == enc.input_ids
    assert enc.input_ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(enc.input_ids[:-1]) == "a fine film"


def test_eos_appended_when_the_template_has_no_stop(tokenizer) -> None:
    tok = tokenizer
    saved = tok.chat_template
    tok.chat_template = (
        "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    try:
        enc = encode_chat(tok, Chat(list(USER_ASSISTANT)), 256)
        runs = _trained_runs(enc)
        assert runs[0][-1] == tok.eos_token_id
        assert tok.decode(runs[0][:-1]) == "Yes.\n"
    finally:
        tok.chat_template = saved


def test_truncation_keeps_the_start_and_flags_it(tokenizer) -> None:
    chat = Chat([{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "yes " * 50}])
    full = encode_chat(tokenizer, chat, 1024)
    cut = len(tokenizer(prompt_text(tokenizer, chat))["input_ids"]) + 5
    enc = encode_chat(tokenizer, chat, cut)
    assert enc.truncated and not full.truncated
    assert enc.input_ids == full.input_ids[:cut] and enc.labels == full.labels[:cut]


def test_prompt_longer_than_max_length_is_dropped(tokenizer) -> None:
    chat = Chat([{"role": "user", "content": "word " * 80}, {"role": "assistant", "content": "ok"}])
    assert encode_chat(tokenizer, chat, 16) is None


def test_fallback_template_saved_with_the_tokenizer(tokenizer, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again.chat_template == tokenizer.chat_template
    assert render(again, USER_ASSISTANT) == render(tokenizer, USER_ASSISTANT)
