"""GGUF export checked by llama.cpp itself (llama-cpp-python): greedy tokens, template, stops."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from engine.cli.commands import main
from tests.cli_helpers import train_in_process
from tests.gguf_helpers import (
    HAVE_GGUF,
    NEW,
    PROMPTS,
    greedy,
    last_logits,
    llama,
    needs_extra,
    pretrain,
    review_chats,
)
from tests.pilot_wait import wait_for
from tests.tiny_lm import make_tiny_decoder

FLAGS = [
    "--max_steps", "24", "--batch_size", "8", "--max_length", "64", "--precision", "fp32",
    "--learning_rate", "0.03", "--save_strategy", "no", "--eval_strategy", "no",
    "--logging_steps", "4", "--train_chat_tokens", "false", "--use_rslora", "true",
]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny Llama-shaped decoder (ChatML fallback template) trained a few steps with LoRA."""
    tmp = tmp_path_factory.mktemp("gguf")
    decoder = make_tiny_decoder(tmp / "tiny-llama", "llama")
    pretrain(decoder, review_chats())
    data = tmp / "chats.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in review_chats()), encoding="utf-8")
    root = tmp / "runs"
    run_dir = train_in_process(root, decoder, data, *FLAGS)
    return {"root": root, "id": run_dir.name, "dir": run_dir, "tmp": tmp}


@pytest.fixture(scope="module")
def reference(run: dict) -> dict:
    """The merged model's greedy tokens in transformers (fp32), with the prompts' token ids."""
    import torch

    from engine.rundir.weights import find_weights
    from engine.tasks.causal_lm.modeling import load_generator
    from engine.tasks.causal_lm.template import end_of_turn_ids

    model, tok = load_generator(find_weights(run["dir"]))
    chat = [{"role": "user", "content": PROMPTS[0]}]
    first = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    first_ids = torch.tensor([tok(first, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        with model.disable_adapter():
            base_logits = model(first_ids).logits[0, -1]
        lora_shift = float((model(first_ids).logits[0, -1] - base_logits).abs().max())
    merged = model.merge_and_unload()
    stops = end_of_turn_ids(tok)
    prompts, outputs = [], []
    for text in PROMPTS:
        chat = [{"role": "user", "content": text}]
        rendered = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        ids = tok(rendered, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            out = merged.generate(
                torch.tensor([ids]),
                max_new_tokens=NEW,
                do_sample=False,
                eos_token_id=stops,
                pad_token_id=tok.pad_token_id,
            )
        prompts.append((rendered, ids))
        outputs.append(out[0, len(ids) :].tolist())
    return {
        "tok": tok,
        "prompts": prompts,
        "outputs": outputs,
        "stops": stops,
        "lora_shift": lora_shift,
    }


def _export(run: dict, *flags: str) -> int:
    return main(["--runs-root", str(run["root"]), "export", run["id"], *flags])


@needs_extra
@pytest.mark.slow
def test_merged_gguf_gives_transformers_greedy_tokens(run, reference, tmp_path) -> None:
    out = tmp_path / "gguf-f16"
    assert _export(run, "--gguf", str(out), "--gguf_type", "f16") == 0
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "Modelfile",
        "model.gguf",
    ]
    llm = llama(out / "model.gguf")
    for (rendered, ids), expected in zip(reference["prompts"], reference["outputs"], strict=True):
        # the GGUF's tokenizer splits the prompt as transformers does (pre-tokenizer, merges)
        assert llm.tokenize(rendered.encode(), add_bos=False, special=True) == ids
        assert greedy(llm, ids, reference["stops"]) == expected
    # the model learnt to stop, and llama.cpp stops at the same end-of-turn token
    assert any(o[-1] in reference["stops"] and len(o) < NEW for o in reference["outputs"])


@needs_extra
@pytest.mark.slow
def test_gguf_chat_template_stops_and_modelfile(run, reference, tmp_path) -> None:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    out = tmp_path / "gguf-bf16"
    assert _export(run, "--gguf", str(out)) == 0
    llm = llama(out / "model.gguf")
    for (_, ids), expected in zip(reference["prompts"], reference["outputs"], strict=True):
        assert greedy(llm, ids, reference["stops"]) == expected  # bf16 weights, the same tokens
    tok = reference["tok"]
    template = llm.metadata["tokenizer.chat_template"]
    assert template == tok.chat_template
    chat = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": PROMPTS[0]},
        {"role": "assistant", "content": "positive"},
        {"role": "user", "content": "Are you sure?"},
    ]
    formatter = Jinja2ChatFormatter(template, eos_token=tok.eos_token, bos_token="")
    assert formatter(messages=chat).prompt == tok.apply_chat_template(
        chat, tokenize=False, add_generation_prompt=True
    )
    eot = tok.convert_tokens_to_ids("<|im_end|>")
    assert int(llm.metadata["tokenizer.ggml.eot_token_id"]) == eot
    assert int(llm.metadata["tokenizer.ggml.eos_token_id"]) == tok.eos_token_id
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    assert llama_cpp.llama_vocab_is_eog(vocab, eot)
    modelfile = (out / "Modelfile").read_text()
    assert "FROM ./model.gguf" in modelfile
    assert 'PARAMETER stop "<|im_end|>"' in modelfile
    assert "TEMPLATE" in modelfile and "{{ .Content }}" in modelfile


@needs_extra
@pytest.mark.slow
def test_q8_0_and_q4_k_m(run, reference, tmp_path) -> None:
    q8 = tmp_path / "q8"
    assert _export(run, "--gguf", str(q8), "--gguf_type", "q8_0") == 0
    llm = llama(q8 / "model.gguf")
    for (_, ids), expected in zip(reference["prompts"], reference["outputs"], strict=True):
        # q8_0 also quantizes the activations; with this model's clear choices every token agrees
        assert greedy(llm, ids, reference["stops"]) == expected
    q4 = tmp_path / "q4"
    assert _export(run, "--gguf", str(q4), "--gguf_type", "q4_k_m") == 0
    names = sorted(p.name for p in q4.iterdir() if not p.name.startswith("."))
    assert names == ["Modelfile", "model.gguf"]  # the f16 intermediate is gone
    from gguf import GGUFReader

    reader = GGUFReader(q4 / "model.gguf")
    assert int(reader.fields["general.file_type"].contents()) == 15  # MOSTLY_Q4_K_M
    q4_llm = llama(q4 / "model.gguf")
    for (_, ids), expected in zip(reference["prompts"], reference["outputs"], strict=True):
        assert greedy(q4_llm, ids, reference["stops"])[:1] == expected[:1]  # 4-bit: the first


@needs_extra
@pytest.mark.slow
def test_adapter_gguf_over_base_gguf_gives_merged_tokens(run, reference, tmp_path) -> None:
    out = tmp_path / "lora"
    assert _export(run, "--gguf_lora", str(out), "--gguf_type", "f16") == 0
    modelfile = (out / "Modelfile").read_text()
    assert "FROM ./base.gguf" in modelfile and "ADAPTER ./adapter.gguf" in modelfile
    with_lora = llama(out / "base.gguf", out / "adapter.gguf")
    for (_, ids), expected in zip(reference["prompts"], reference["outputs"], strict=True):
        assert greedy(with_lora, ids, reference["stops"]) == expected
    # the adapter is applied: the next-token logits move by what the LoRA adds in transformers
    ids = reference["prompts"][0][1]
    lora_logits = last_logits(with_lora, ids)
    base_logits = last_logits(llama(out / "base.gguf"), ids)
    moved = np.abs(lora_logits - base_logits).max()
    assert moved == pytest.approx(reference["lora_shift"], rel=0.05)
    # a second adapter export reuses that base GGUF instead of writing another
    again = tmp_path / "lora2"
    code = _export(run, "--gguf_lora", str(again), "--gguf_base", str(out / "base.gguf"))
    assert code == 0
    assert not (again / "base.gguf").exists()
    assert f"FROM {(out / 'base.gguf').resolve()}" in (again / "Modelfile").read_text()


@needs_extra
@pytest.mark.slow
def test_nothing_overwritten_and_bad_base(run, tmp_path, capsys) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert _export(run, "--gguf", str(out)) == 2
    assert (out / "notes.txt").read_text() == "mine" and not (out / "model.gguf").exists()
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf")
    assert _export(run, "--gguf_lora", str(tmp_path / "l"), "--gguf_base", str(bad)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert any("not a readable GGUF" in line for line in err)
    assert not (tmp_path / "l").exists()


def test_missing_extra_says_the_pip_command(run_stub, monkeypatch, capsys) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a)
    )
    from engine.core.errors import UserError
    from engine.tasks.causal_lm.gguf_export import export_gguf

    with pytest.raises(UserError) as caught:
        export_gguf(run_stub, run_stub.parent / "out")
    line = caught.value.one_line()
    assert "pip install" in line and "gguf" in line
    assert not (run_stub.parent / "out").exists()


@pytest.fixture
def run_stub(tmp_path: Path) -> Path:
    """An adapter folder's config alone (enough for the checks made before any loading)."""
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"task_type": "CAUSAL_LM"}))
    return folder


def test_adapter_with_trained_embedding_rows_is_refused() -> None:
    from engine.core.errors import UserError
    from engine.tasks.causal_lm.gguf_lora import check_adapter_config

    with pytest.raises(UserError, match="embedding rows"):
        check_adapter_config({"trainable_token_indices": {"embed_tokens": [1, 2]}}, "here")
    check_adapter_config({"r": 8, "lora_alpha": 16}, "here")  # a plain LoRA passes


@needs_extra
@pytest.mark.slow
async def test_tui_export_dialog_writes_a_gguf_with_progress(run, tmp_path, monkeypatch) -> None:
    from textual.widgets import Input, ProgressBar, Select, Static

    from tui.app import FinetuneApp
    from tui.screens.export import ExportScreen

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    app = FinetuneApp(runs_root=run["root"])
    async with app.run_test(size=(90, 32)) as pilot:
        app.open_export(run["dir"])
        await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen), "the dialog")
        dialog: ExportScreen = app.screen  # type: ignore[assignment]
        await wait_for(pilot, lambda: not dialog.query_one("#gguf").disabled, "the GGUF row")
        assert dialog.query_one("#gguf-box").display
        assert str(dialog.query_one("#gguf-note", Static).render()) == ""  # the extra is here
        out = tmp_path / "tui-gguf"
        dialog.query_one("#gguf-out", Input).value = str(out)
        dialog.query_one("#gguf-type", Select).value = "q8_0"
        seen: list[float] = []
        bar = dialog.query_one("#gguf-progress", ProgressBar)
        show = dialog._progress

        def progress(fraction: float, note: str) -> None:
            seen.append(fraction)
            show(fraction, note)

        monkeypatch.setattr(dialog, "_progress", progress)
        await pilot.click("#gguf")
        await wait_for(pilot, lambda: dialog.results, "the GGUF")
        assert dialog.results[-1].startswith("GGUF written to"), dialog.results
        assert (out / "model.gguf").is_file() and (out / "Modelfile").is_file()
        # the bar moved tensor by tensor (2 layers: ~20 steps) and ended full
        assert len(seen) > 10 and seen == sorted(seen) and seen[-1] == 1.0
        assert bar.display and bar.progress == 100
        # the same folder again asks before anything is replaced; "keep" writes nothing
        before = (out / "model.gguf").stat().st_mtime_ns
        dialog.query_one("#gguf-out", Input).value = str(out)
        await wait_for(pilot, lambda: not dialog.query_one("#gguf").disabled, "the buttons")
        await pilot.click("#gguf")
        from tui.widgets.dialogs import Confirm

        await wait_for(pilot, lambda: isinstance(app.screen, Confirm), "the overwrite question")
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen is dialog, "the dialog again")
        assert (out / "model.gguf").stat().st_mtime_ns == before
        assert dialog.query_one("#gguf-out", Input).value != str(out)


@pytest.mark.slow
async def test_tui_export_dialog_says_the_pip_command(run, tmp_path, monkeypatch) -> None:
    from textual.widgets import Static

    from tui.app import FinetuneApp
    from tui.screens.export import ExportScreen

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a)
    )
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    app = FinetuneApp(runs_root=run["root"])
    async with app.run_test(size=(90, 32)) as pilot:
        app.open_export(run["dir"])
        await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen), "the dialog")
        dialog: ExportScreen = app.screen  # type: ignore[assignment]
        await wait_for(
            pilot,
            lambda: "pip install" in str(dialog.query_one("#gguf-note", Static).render()),
            "the pip line",
        )
        await wait_for(pilot, lambda: not dialog.query_one("#gguf").disabled, "the buttons")
        await pilot.click("#gguf")
        await wait_for(pilot, lambda: dialog.results, "the message")
        assert 'pip install -e ".[gguf]"' in dialog.results[-1]
        assert not (tmp_path / "home" / "finetune-exports").exists()


@pytest.mark.skipif(not HAVE_GGUF, reason='needs the gguf extra: pip install "gguf>=0.19"')
@pytest.mark.slow
def test_gguf_metadata_read_back(run, tmp_path) -> None:
    """Without llama.cpp: what the file says (architecture, stops, template, tensors, types)."""
    from gguf import GGUFReader
    from transformers import AutoTokenizer

    from engine.rundir.weights import find_weights

    out = tmp_path / "meta"
    assert _export(run, "--gguf", str(out), "--gguf_type", "q8_0") == 0
    reader = GGUFReader(out / "model.gguf")
    field = {
        k: v.contents() for k, v in reader.fields.items() if not k.startswith("tokenizer.ggml.t")
    }
    tok = AutoTokenizer.from_pretrained(find_weights(run["dir"]))
    assert field["general.architecture"] == "llama"
    assert field["general.name"] == f"tiny-llama fine-tuned ({run['id']})"
    assert field["tokenizer.ggml.model"] == "gpt2" and field["tokenizer.ggml.pre"] == "gpt-2"
    assert field["tokenizer.ggml.eos_token_id"] == tok.eos_token_id
    assert field["tokenizer.ggml.eot_token_id"] == tok.convert_tokens_to_ids("<|im_end|>")
    assert field["tokenizer.chat_template"] == tok.chat_template
    assert field["llama.block_count"] == 2 and field["llama.attention.head_count_kv"] == 1
    names = {t.name: t.tensor_type.name for t in reader.tensors}
    assert "output.weight" not in names  # tied: llama.cpp reuses token_embd
    assert names["blk.0.attn_q.weight"] == "Q8_0" and names["blk.0.attn_norm.weight"] == "F32"
    assert len(names) == 1 + 1 + 2 * 9  # embeddings, final norm, 9 tensors per layer


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--gguf"], "say where the GGUF goes"),
        (["--gguf_base", "x.gguf"], "--gguf_base is the base for --gguf_lora"),
        (["--gguf", "out", "--gguf_type", "q3"], "invalid choice"),
    ],
)
def test_gguf_flag_mistakes_are_one_line(flags, message, tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) if "--gguf_type" in flags else _no_raise():
        code = main(["--runs-root", str(tmp_path), "export", "some-run", *flags])
        assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert any(message in line for line in err), err
    assert not list(tmp_path.iterdir())


def _no_raise():
    import contextlib

    return contextlib.nullcontext()


@needs_extra
@pytest.mark.slow
def test_merged_gguf_carries_trained_chat_token_rows(tmp_path: Path) -> None:
    """The default run trains the embedding rows of <|im_start|> / <|im_end|>: the merged GGUF
    has them (f32: llama.cpp's logits are transformers' to float rounding)."""
    import torch

    from engine.rundir.weights import find_weights
    from engine.tasks.causal_lm.modeling import load_generator

    decoder = make_tiny_decoder(tmp_path / "tiny-llama", "llama")
    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in review_chats()), encoding="utf-8")
    flags = FLAGS[: FLAGS.index("--train_chat_tokens")] + ["--max_steps", "8"]
    root = tmp_path / "runs"
    assert main(["--runs-root", str(root), "train", "--task", "causal-lm", "--model_name",
                 str(decoder), "--data_file_path", str(data), *flags]) == 0  # fmt: skip
    run_dir = next(p for p in root.iterdir() if (p / "config.toml").is_file())
    adapter = find_weights(run_dir)
    assert json.loads((adapter / "adapter_config.json").read_text())["trainable_token_indices"]
    assert main(["--runs-root", str(root), "export", run_dir.name, "--gguf", str(tmp_path / "g"),
                 "--gguf_type", "f32"]) == 0  # fmt: skip
    model, tok = load_generator(adapter)
    merged = model.merge_and_unload()
    base, _ = load_generator(decoder)
    rendered = tok.apply_chat_template(
        [{"role": "user", "content": PROMPTS[0]}], tokenize=False, add_generation_prompt=True
    )
    ids = tok(rendered, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        expected = merged(torch.tensor([ids])).logits[0, -1].double().numpy()
        untuned = base(torch.tensor([ids])).logits[0, -1].double().numpy()
    got = last_logits(llama(tmp_path / "g" / "model.gguf"), ids)
    assert np.abs(got - expected).max() < 1e-3 < np.abs(expected - untuned).max()
    # and the adapter alone is refused with the way out
    code = main(["--runs-root", str(root), "export", run_dir.name, "--gguf_lora",
                 str(tmp_path / "l")])  # fmt: skip
    assert code == 2 and not (tmp_path / "l").exists()
