"""Our causal-LM defaults vs a plain TRL SFTTrainer script, same model, data and machine, one run.

    python bench/sft_speed.py                       # decoder from bench/pretrain_decoder.py, 2,000 rows
    python bench/sft_speed.py --model DIR --rows 1000

The TRL side is what its docs show, with the CPU settings a user would find: SFTConfig(use_cpu=True,
bf16 only where the CPU has native bf16), a peft LoraConfig on all linear layers, conversational
prompt/completion records (so TRL masks the prompt, as we do) and everything else left at TRL's
defaults. Both use the same learning rate, batch size, epochs, max_length, LoRA r/alpha and the
same chat template (our ChatML fallback, written into a copy of the model's tokenizer).
Each side trains in its own process, one after the other; then both adapters are scored with the
same code on the same 200 held-out SST-2 instructions (mean answer-token loss).
Figures: real (non-pad) tokens per second of training wall time, and the held-out loss.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))


def prepare(model: str, tmp: Path, rows: int) -> tuple[Path, Path, Path]:
    """A model copy with a chat template, and train / held-out JSONL files."""
    from sft_real import sst2_rows
    from transformers import AutoTokenizer

    from engine.tasks.causal_lm.template import ensure_chat_template

    copy = tmp / "model"
    shutil.copytree(model, copy)
    tok = AutoTokenizer.from_pretrained(copy)
    ensure_chat_template(tok)
    tok.save_pretrained(copy)
    data = sst2_rows("train", rows + 200)
    train, held = tmp / "train.jsonl", tmp / "held.jsonl"
    for path, part in ((train, data[:rows]), (held, data[rows:])):
        path.write_text("\n".join(json.dumps(r) for r in part) + "\n")
    return copy, train, held


def run_trl(model: Path, train: Path, out: Path, args: argparse.Namespace) -> dict:
    """The plain TRL script: load, SFTTrainer with a LoraConfig, train."""
    from datasets import load_dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from engine.core.hardware import native_bf16

    def conversational(row: dict) -> dict:
        return {
            "prompt": [{"role": "user", "content": row["prompt"]}],
            "completion": [{"role": "assistant", "content": row["completion"]}],
        }

    ds = load_dataset("json", data_files=str(train), split="train").map(conversational)
    config = SFTConfig(
        output_dir=str(out),
        use_cpu=True,
        bf16=native_bf16(),
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr,
        num_train_epochs=1,
        max_length=args.max_length,
        logging_steps=20,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )
    peft = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=str(model), args=config, train_dataset=ds, peft_config=peft)
    tokens = sum(len(x) for x in trainer.train_dataset["input_ids"])
    result = trainer.train()
    trainer.model.save_pretrained(out / "adapter")
    return {
        "seconds": result.metrics["train_runtime"],
        "tokens": tokens,
        "gradient_checkpointing": config.gradient_checkpointing,
        "adapter": str(out / "adapter"),
    }


def run_ours(model: Path, train: Path, out: Path, args: argparse.Namespace) -> dict:
    """`engine.cli train --task causal-lm` with our defaults (same lr, batch, epochs, length)."""
    cmd = [
        sys.executable, "-m", "engine.cli", "--runs-root", str(out), "train",
        "--task", "causal-lm", "--model_name", str(model), "--data_file_path", str(train),
        "--epochs", "1", "--batch_size", str(args.batch_size), "--learning_rate", str(args.lr),
        "--max_length", str(args.max_length), "--validation_fraction", "0",
        "--save_strategy", "no", "--logging_steps", "20",
    ]  # fmt: skip
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    run = next(p for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))
    events = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines() if x]
    done = next(e for e in events if e["type"] == "finished")
    # The training loop's time, as TRL's train_runtime (not the final save or set-up).
    seconds = [e["elapsed_s"] for e in events if e["type"] == "step"][-1]
    from engine.tasks.causal_lm.encoding import ChatDataset

    cache = next((run / "tokenized").glob("causal-train-*.npz"))
    import numpy as np

    with np.load(cache) as z:
        tokens = int(ChatDataset(z["ids"], z["labels"], z["offsets"]).tokens)
    return {"seconds": seconds, "tokens": tokens, "adapter": done["output_dir"]}


def heldout_loss(adapter: str, model: Path, held: Path) -> float:
    """Mean answer-token loss of an adapter on the held-out rows (the same code for both)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.tasks.causal_lm.collate import CausalCollator
    from engine.tasks.causal_lm.encoding import encode_chats
    from engine.tasks.causal_lm.formats import normalise_all

    rows = [json.loads(x) for x in held.read_text().splitlines() if x]
    chats, _ = normalise_all(rows, ["prompt", "completion"])
    tok = AutoTokenizer.from_pretrained(model)
    base = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    net = PeftModel.from_pretrained(base, adapter).eval()
    data, _ = encode_chats(tok, chats, 512)
    collate = CausalCollator(tok.pad_token_id or tok.eos_token_id)
    total, count = 0.0, 0
    with torch.inference_mode():
        for i in range(0, len(data), 32):
            batch = collate([data[j] for j in range(i, min(i + 32, len(data)))])
            logits = net(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            ).logits
            labels = batch["labels"][:, 1:]
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].float().transpose(1, 2), labels, ignore_index=-100, reduction="sum"
            )
            total += float(loss)
            count += int((labels != -100).sum())
    return total / count


def main() -> None:
    """Run both sides (each in its own process) and print the comparison."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(HERE / "out" / "sst2-decoder"))
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=12)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--role", choices=("trl",), help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role == "trl":
        tmp = Path(args.dir)
        result = run_trl(tmp / "model", tmp / "train.jsonl", tmp / "trl", args)
        (tmp / "trl.json").write_text(json.dumps(result))
        return
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        model, train, held = prepare(args.model, tmp, args.rows)
        t0 = time.monotonic()
        subprocess.run(
            [sys.executable, __file__, "--role", "trl", "--dir", str(tmp),
             "--batch-size", str(args.batch_size), "--lr", str(args.lr),
             "--max-length", str(args.max_length)],
            check=True, cwd=ROOT,
        )  # fmt: skip
        trl = json.loads((tmp / "trl.json").read_text())
        print(f"TRL done in {time.monotonic() - t0:.0f}s", flush=True)
        ours = run_ours(model, train, tmp / "ours", args)
        for side in (trl, ours):
            side["tokens_per_s"] = side["tokens"] / side["seconds"]
            side["heldout_loss"] = heldout_loss(side["adapter"], model, held)
    print(f"{'':6} {'tokens':>8} {'seconds':>8} {'tokens/s':>9} {'held-out loss':>14}")
    for name, side in (("TRL", trl), ("ours", ours)):
        print(f"{name:6} {side['tokens']:8d} {side['seconds']:8.1f} {side['tokens_per_s']:9.0f} "
              f"{side['heldout_loss']:14.4f}")  # fmt: skip
    print(f"speed ratio ours/TRL: {ours['tokens_per_s'] / trl['tokens_per_s']:.2f}x "
          f"(TRL gradient_checkpointing={trl['gradient_checkpointing']})")  # fmt: skip


if __name__ == "__main__":
    main()
