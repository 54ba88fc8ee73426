"""GGUF export checked by llama.cpp itself (llama-cpp-python): greedy tokens, template, stops."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from engine.cli import main
from tests.tiny_lm import make_tiny_decoder

HAVE_GGUF = importlib.util.find_spec("gguf") is not None
HAVE_LLAMA = importlib.util.find_spec("llama_cpp") is not None
needs_extra = pytest.mark.skipif(
    not (HAVE_GGUF and HAVE_LLAMA),
    reason='needs the llama-cpp extra: pip install "gguf>=0.19" "llama-cpp-python>=0.3.36"',
)
PROMPTS = [
    "Is this review positive or negative? a great film",
    "Is this review positive or negative? awful plot",
    "Is this review positive or negative? nice story",
]
NEW = 8
FLAGS = [
    "--max_steps", "24", "--batch_size", "8", "--max_length", "64", "--precision", "fp32",
    "--learning_rate", "0.03", "--save_strategy", "no", "--eval_strategy", "no",
    "--logging_steps", "4", "--train_chat_tokens", "false", "--use_rslora", "true",
]  # fmt: skip


def _rows() -> list[dict]:
    rows = []
    for i, review in enumerate(["a great film", "awful plot", "nice story", "dull and slow"] * 8):
        answer = "positive" if i % 4 in (0, 2) else "negative"
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": f"Is this review positive or negative? {review}"},
                    {"role": "assistant", "content": answer},
                ]
            }
        )
    return rows


def pretrain(folder: Path, rows: list[dict], steps: int = 60) -> None:
    """Teach the random tiny decoder the chats outright (full weights), so its greedy choices
    are clear (logit gaps of several units) and it ends answers with <|im_end|>."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.tasks.causal_lm.template import ensure_chat_template

    tok = AutoTokenizer.from_pretrained(folder)
    ensure_chat_template(tok)
    tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(folder)
    texts = [tok.apply_chat_template(r["messages"], tokenize=False) for r in rows]
    batch = tok(texts, padding=True, return_tensors="pt")
    labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-2)
    for _ in range(steps):
        model(**batch, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(folder, safe_serialization=True)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny Llama-shaped decoder (ChatML fallback template) trained a few steps with LoRA."""
    tmp = tmp_path_factory.mktemp("gguf")
    decoder = make_tiny_decoder(tmp / "tiny-llama", "llama")
    pretrain(decoder, _rows())
    data = tmp / "chats.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _rows()), encoding="utf-8")
    root = tmp / "runs"
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")
    code = main(
        ["--runs-root", str(root), "train", "--task", "causal-lm", "--model_name", str(decoder),
         "--data_file_path", str(data), *FLAGS]
    )  # fmt: skip
    mp.undo()
    assert code == 0
    run_dir = next(p for p in root.iterdir() if (p / "config.toml").is_file())
    return {"root": root, "id": run_dir.name, "dir": run_dir, "tmp": tmp}


@pytest.fixture(scope="module")
def reference(run: dict) -> dict:
    """The merged model's greedy tokens in transformers (fp32), with the prompts' token ids."""
    import torch

    from engine.predict import find_weights
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


def _greedy(llm, ids: list[int], stops: list[int]) -> list[int]:
    """llama.cpp's greedy tokens after `ids`, ending with the first end-of-generation token."""
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    out: list[int] = []
    for token in llm.generate(ids, top_k=1, temp=0.0, repeat_penalty=1.0, reset=True):
        out.append(int(token))
        if llama_cpp.llama_vocab_is_eog(vocab, token) or len(out) == NEW:
            break
    return out


def _last_logits(llm, ids: list[int]):
    """llama.cpp's logits for the token after `ids`."""
    import llama_cpp

    llm.reset()
    llm.eval(ids)
    row = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    return np.ctypeslib.as_array(row, shape=(llm.n_vocab(),)).astype(np.float64)


def _llama(path: Path, lora: Path | None = None):
    from llama_cpp import Llama

    kwargs = {"lora_path": str(lora)} if lora else {}
    return Llama(model_path=str(path), n_ctx=256, n_threads=2, verbose=False, seed=0, **kwargs)


@needs_extra
@pytest.mark.slow
def test_merged_gguf_gives_transformers_greedy_tokens(run, reference, tmp_path) -> None:
    out = tmp_path / "gguf-f16"
    assert _export(run, "--gguf", str(out), "--gguf_type", "f16") == 0
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "Modelfile",
        "model.gguf",
    ]
    llm = _llama(out / "model.gguf")
    for (rendered, ids), expected in zip(reference["prompts"], reference["outputs"], strict=True):
        # the GGUF's tokenizer splits the prompt as transformers does (pre-tokenizer, merges)
        assert llm.tokenize(rendered.encode(), add_bos=False, special=True) == ids
        assert _greedy(llm, ids, reference["stops"]) == expected
    # the model learnt to stop, and llama.cpp stops at the same end-of-turn token
    assert any(o[-1] in reference["stops"] and len(o) < NEW for o in reference["outputs"])


@needs_extra
@pytest.mark.slow
def test_gguf_chat_template_stops_and_modelfile(run, reference, tmp_path) -> None:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    out = tmp_path / "gguf-bf16"
    assert _export(run, "--gguf", str(out)) == 0
    llm = _llama(out / "model.gguf")
    for (_, ids), expected in zip(reference["prompts"], reference["outputs"], strict=True):
        assert _greedy(llm, ids, reference["stops"]) == expected  # bf16 weights, the same tokens
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
    llm = _llama(q8 / "model.gguf")
    for (_, ids), expected in zip(reference["prompts"], reference["outputs"], strict=True):
        # q8_0 also quantizes the activations; with this model's clear choices every token agrees
        assert _greedy(llm, ids, reference["stops"]) == expected
    q4 = tmp_path / "q4"
    assert _export(run, "--gguf", str(q4), "--gguf_type", "q4_k_m") == 0
    names = sorted(p.name for p in q4.iterdir() if not p.name.startswith("."))
    assert names == ["Modelfile", "model.gguf"]  # the f16 intermediate is gone
    from gguf import GGUFReader

    reader = GGUFReader(q4 / "model.gguf")
    assert int(reader.fields["general.file_type"].contents()) == 15  # MOSTLY_Q4_K_M
    q4_llm = _llama(q4 / "model.gguf")
    for (_, ids), expected in zip(reference["prompts"], reference["outputs"], strict=True):
        assert _greedy(q4_llm, ids, reference["stops"])[:1] == expected[:1]  # 4-bit: the first


@needs_extra
@pytest.mark.slow
def test_adapter_gguf_over_base_gguf_gives_merged_tokens(run, reference, tmp_path) -> None:
    out = tmp_path / "lora"
    assert _export(run, "--gguf_lora", str(out), "--gguf_type", "f16") == 0
    modelfile = (out / "Modelfile").read_text()
    assert "FROM ./base.gguf" in modelfile and "ADAPTER ./adapter.gguf" in modelfile
    with_lora = _llama(out / "base.gguf", out / "adapter.gguf")
    for (_, ids), expected in zip(reference["prompts"], reference["outputs"], strict=True):
        assert _greedy(with_lora, ids, reference["stops"]) == expected
    # the adapter is applied: the next-token logits move by what the LoRA adds in transformers
    ids = reference["prompts"][0][1]
    lora_logits = _last_logits(with_lora, ids)
    base_logits = _last_logits(_llama(out / "base.gguf"), ids)
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
    from engine.errors import UserError
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
    from engine.errors import UserError
    from engine.tasks.causal_lm.gguf_lora import check_adapter_config

    with pytest.raises(UserError, match="embedding rows"):
        check_adapter_config({"trainable_token_indices": {"embed_tokens": [1, 2]}}, "here")
    check_adapter_config({"r": 8, "lora_alpha": 16}, "here")  # a plain LoRA passes


def _tiny(folder: Path, kind: str) -> Path:
    """A tiny decoder of `kind`: tiny_lm's shapes, plus Qwen3 (q/k norms), Mistral, a Llama with
    Llama-3.1's rope scaling and a Llama with a SentencePiece-style tokenizer (TinyLlama's)."""
    if kind in ("llama", "qwen2", "gpt2"):
        return make_tiny_decoder(folder, kind)
    import torch
    import transformers as tf

    from tests.tiny_lm import make_tokenizer

    tok = spm_tokenizer(folder) if kind == "tinyllama" else make_tokenizer(folder)
    config_cls, model_cls = {
        "qwen3": (tf.Qwen3Config, tf.Qwen3ForCausalLM),
        "mistral": (tf.MistralConfig, tf.MistralForCausalLM),
        "llama3.1": (tf.LlamaConfig, tf.LlamaForCausalLM),
        "tinyllama": (tf.LlamaConfig, tf.LlamaForCausalLM),
    }[kind]
    torch.manual_seed(0)
    extra = {}
    if kind == "llama3.1":  # Llama-3.1/3.2's rope scaling, at a context where it changes angles
        extra["rope_scaling"] = {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16,
        }
    config = config_cls(
        **extra,
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,  # Qwen3 sets it apart from hidden / heads
        max_position_embeddings=256,
        tie_word_embeddings=kind == "qwen3",
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.eos_token_id,
    )
    model_cls(config).save_pretrained(folder, safe_serialization=True)
    return folder


@needs_extra
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["qwen2", "qwen3", "mistral", "gpt2", "llama3.1", "tinyllama"])
def test_each_architecture_gives_transformers_greedy_tokens(kind: str, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.tasks.causal_lm.gguf_model import write_model_gguf
    from engine.tasks.causal_lm.template import end_of_turn_ids, ensure_chat_template

    folder = _tiny(tmp_path / kind, kind)
    pretrain(folder, _rows())
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    ensure_chat_template(tok)
    stops = end_of_turn_ids(tok)
    path = write_model_gguf(tmp_path / "m.gguf", model.state_dict(), model.config, tok, "f16")
    llm = _llama(path)
    for text in PROMPTS:
        rendered = tok.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
        ids = tok(rendered, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            out = model.generate(
                torch.tensor([ids]), max_new_tokens=NEW, do_sample=False, eos_token_id=stops,
                pad_token_id=tok.eos_token_id,
            )  # fmt: skip
        assert _greedy(llm, ids, stops) == out[0, len(ids) :].tolist()


async def _until(pilot, check, what: str, limit: float = 120) -> None:
    from textual.css.query import NoMatches

    for _ in range(int(limit / 0.05)):
        try:
            if check():
                return
        except NoMatches:  # still composing
            pass
        await pilot.pause(0.05)
    raise AssertionError(f"gave up waiting for {what}")


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
        await _until(pilot, lambda: isinstance(app.screen, ExportScreen), "the dialog")
        dialog: ExportScreen = app.screen  # type: ignore[assignment]
        await _until(pilot, lambda: not dialog.query_one("#gguf").disabled, "the GGUF row")
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
        await _until(pilot, lambda: dialog.results, "the GGUF")
        assert dialog.results[-1].startswith("GGUF written to"), dialog.results
        assert (out / "model.gguf").is_file() and (out / "Modelfile").is_file()
        # the bar moved tensor by tensor (2 layers: ~20 steps) and ended full
        assert len(seen) > 10 and seen == sorted(seen) and seen[-1] == 1.0
        assert bar.display and bar.progress == 100
        # the same folder again asks before anything is replaced; "keep" writes nothing
        before = (out / "model.gguf").stat().st_mtime_ns
        dialog.query_one("#gguf-out", Input).value = str(out)
        await _until(pilot, lambda: not dialog.query_one("#gguf").disabled, "the buttons")
        await pilot.click("#gguf")
        from tui.widgets.dialogs import Confirm

        await _until(pilot, lambda: isinstance(app.screen, Confirm), "the overwrite question")
        await pilot.press("n")
        await _until(pilot, lambda: app.screen is dialog, "the dialog again")
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
        await _until(pilot, lambda: isinstance(app.screen, ExportScreen), "the dialog")
        dialog: ExportScreen = app.screen  # type: ignore[assignment]
        await _until(
            pilot,
            lambda: "pip install" in str(dialog.query_one("#gguf-note", Static).render()),
            "the pip line",
        )
        await _until(pilot, lambda: not dialog.query_one("#gguf").disabled, "the buttons")
        await pilot.click("#gguf")
        await _until(pilot, lambda: dialog.results, "the message")
        assert 'pip install -e ".[gguf]"' in dialog.results[-1]
        assert not (tmp_path / "home" / "finetune-exports").exists()


TRICKY = [
    "Hello world! It's 2024-12-03, isn't it? I'll pay $1234.56",
    "  two  spaces\n\nnew lines\ttab  ",
    "naïve café — 東京 😀 ÀÉÎ",
    "<|im_start|>user\nhi<|im_end|>\n",
]


def spm_tokenizer(folder: Path):
    """A SentencePiece-style BPE in Llama-2's tokenizer.json layout (byte fallback, <0xAB> byte
    tokens, "▁" from a Prepend + Replace normalizer), trained here."""
    from tokenizers import Tokenizer, decoders, models, normalizers, trainers
    from transformers import PreTrainedTokenizerFast

    from tests.tiny_lm import _corpus

    def spm(model):
        tok = Tokenizer(model)
        tok.normalizer = normalizers.Sequence(
            [normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")]
        )
        tok.decoder = decoders.Sequence(
            [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
             decoders.Strip(" ", 1, 0)]
        )  # fmt: skip
        return tok

    specials = ["<unk>", "<s>", "</s>"]
    draft = spm(models.BPE(unk_token="<unk>", byte_fallback=True))
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=specials, show_progress=False)
    draft.train_from_iterator(_corpus() + TRICKY * 3, trainer)
    trained = json.loads(draft.to_str())["model"]
    vocab = {t: i for i, t in enumerate(specials + [f"<0x{b:02X}>" for b in range(256)])}
    for text, _ in sorted(trained["vocab"].items(), key=lambda kv: kv[1]):
        vocab.setdefault(text, len(vocab))
    merges = [
        tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in trained["merges"]
    ]
    tok = spm(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True))
    tok.add_special_tokens(specials + ["<|im_start|>", "<|im_end|>"])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    fast.save_pretrained(folder)
    return fast


def _tokenizer_with(folder: Path, pre: str):
    """A byte-level BPE tokenizer with the pre-tokenizer of one of llama.cpp's families."""
    if pre == "llama-spm":
        return spm_tokenizer(folder)
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from engine.tasks.causal_lm.gguf_vocab import LLAMA3_SPLIT, QWEN2_SPLIT
    from tests.tiny_lm import EOS, _corpus

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=pre != "split")
    parts = {
        "gpt-2": [byte_level],
        "smollm": [pre_tokenizers.Digits(individual_digits=True), byte_level],
        "llama-bpe": [pre_tokenizers.Split(Regex(LLAMA3_SPLIT), "isolated"), byte_level],
        "qwen2": [pre_tokenizers.Split(Regex(QWEN2_SPLIT), "isolated"), byte_level],
    }[pre]
    if pre in ("llama-bpe", "qwen2"):
        parts[-1] = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(parts) if len(parts) > 1 else parts[0]
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=[EOS, "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus() + TRICKY * 3, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS)
    fast.save_pretrained(folder)
    return fast


@needs_extra
@pytest.mark.parametrize("pre", ["gpt-2", "smollm", "llama-bpe", "qwen2", "llama-spm"])
def test_pre_tokenizer_families_split_text_as_transformers(pre: str, tmp_path: Path) -> None:
    import transformers as tf
    from llama_cpp import Llama

    from engine.tasks.causal_lm.gguf_model import write_model_gguf
    from engine.tasks.causal_lm.gguf_vocab import build_vocab

    tok = _tokenizer_with(tmp_path, pre)
    assert build_vocab(tok, len(tok)).pre == ("default" if pre == "llama-spm" else pre)
    config = tf.LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, eos_token_id=tok.eos_token_id,
    )  # fmt: skip
    model = tf.LlamaForCausalLM(config)
    path = write_model_gguf(tmp_path / "t.gguf", model.state_dict(), config, tok, "f32")
    llm = Llama(model_path=str(path), vocab_only=True, verbose=False)
    for text in [*TRICKY, "Ωμέγα ✓ ¿qué? ß"]:  # the last: characters the training never saw
        expected = tok(text, add_special_tokens=False)["input_ids"]
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == expected, text
        if pre != "llama-spm":  # (SentencePiece's "▁" after a special token decodes differently)
            assert llm.detokenize(expected, special=True).decode() == text


def test_unconverted_architecture_is_refused_before_loading(tmp_path: Path) -> None:
    import transformers as tf

    from engine.errors import UserError
    from engine.tasks.causal_lm.gguf_export import precheck
    from tests.tiny_lm import make_tokenizer

    make_tokenizer(tmp_path)
    tf.GemmaConfig(vocab_size=400, hidden_size=32, num_hidden_layers=1).save_pretrained(tmp_path)
    with pytest.raises(UserError, match="does not convert gemma") as caught:
        precheck(tmp_path)  # no weights here at all: refused from the config alone
    assert "convert_hf_to_gguf.py" in caught.value.one_line()


def test_sentencepiece_style_tokenizer_is_refused(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    from engine.errors import UserError
    from engine.tasks.causal_lm.gguf_vocab import build_vocab

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "▁a": 3, "a": 4, "▁": 5}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[("▁", "a")], byte_fallback=True))
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback()])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", bos_token="<s>")
    with pytest.raises(UserError, match="SentencePiece-style"):
        build_vocab(fast, 6)


@pytest.mark.skipif(not HAVE_GGUF, reason='needs the gguf extra: pip install "gguf>=0.19"')
@pytest.mark.slow
def test_gguf_metadata_read_back(run, tmp_path) -> None:
    """Without llama.cpp: what the file says (architecture, stops, template, tensors, types)."""
    from gguf import GGUFReader
    from transformers import AutoTokenizer

    from engine.predict import find_weights

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

    from engine.predict import find_weights
    from engine.tasks.causal_lm.modeling import load_generator

    decoder = make_tiny_decoder(tmp_path / "tiny-llama", "llama")
    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _rows()), encoding="utf-8")
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
    got = _last_logits(_llama(tmp_path / "g" / "model.gguf"), ids)
    assert np.abs(got - expected).max() < 1e-3 < np.abs(expected - untuned).max()
    # and the adapter alone is refused with the way out
    code = main(["--runs-root", str(root), "export", run_dir.name, "--gguf_lora",
                 str(tmp_path / "l")])  # fmt: skip
    assert code == 2 and not (tmp_path / "l").exists()
