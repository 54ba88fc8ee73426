"""How long `export RUN --gguf OUT` takes for a SmolLM2-135M-shaped model, per GGUF type.

    python bench/gguf_export.py                  # bf16, f16, q8_0, q4_k_m and the adapter alone
    python bench/gguf_export.py --types bf16     # one type

The model is SmolLM2-135M's shape (576 wide, 30 layers, 9 heads / 3 KV heads, 1536 MLP, 49,152
embedding rows, tied, rope_theta 100000), randomly initialised and saved in bf16, with the tests'
~400-token byte-level BPE tokenizer (the GGUF pads the vocabulary to the 49,152 rows). One
`finetune-tui train --task causal-lm --max_steps 2` makes the run; each export is then a whole
`finetune-tui export` process (imports, loading, merging, converting, writing), timed wall-clock.
Needs the gguf extra (and llama-cpp-python for q4_k_m).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))


def smollm2_shaped(folder: Path) -> Path:
    """A random SmolLM2-135M-shaped Llama with the tests' tokenizer, saved in bf16."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.tiny_lm import make_tokenizer

    tok = make_tokenizer(folder)
    config = LlamaConfig(
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        vocab_size=49152,
        max_position_embeddings=8192,
        rope_theta=100000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def cli(*args: str) -> tuple[float, float]:
    """Run finetune-tui with `args`; its wall-clock and CPU (user + system) seconds."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tui.cli", *args], check=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    """Make the model and the run, then time each export."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--types", default="bf16,f16,q8_0,q4_k_m,lora")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        model = smollm2_shaped(tmp_path / "smollm2-135m-shaped")
        data = tmp_path / "chats.jsonl"
        row = {
            "messages": [
                {"role": "user", "content": "is this a review"},
                {"role": "assistant", "content": "positive"},
            ]
        }
        data.write_text((json.dumps(row) + "\n") * 16)
        root = tmp_path / "runs"
        cli("--runs-root", str(root), "train", "--task", "causal-lm", "--model_name", str(model),
            "--data_file_path", str(data), "--max_steps", "2", "--batch_size", "4",
            "--max_length", "32", "--eval_strategy", "no", "--save_strategy", "no",
            "--train_chat_tokens", "false")  # fmt: skip
        run = next(p for p in root.iterdir() if (p / "config.toml").is_file()).name
        for kind in args.types.split(","):
            out = tmp_path / f"out-{kind}"
            flags = (
                ["--gguf_lora", str(out)]
                if kind == "lora"
                else ["--gguf", str(out), "--gguf_type", kind]
            )
            wall, cpu = cli("--runs-root", str(root), "export", run, *flags)
            sizes = {p.name: p.stat().st_size for p in out.iterdir() if p.suffix == ".gguf"}
            shown = ", ".join(f"{n} {s / 1e6:.0f} MB" for n, s in sorted(sizes.items()))
            print(f"{kind:8} {wall:6.1f} s wall {cpu:6.1f} s CPU  {shown}", flush=True)


if __name__ == "__main__":
    main()
