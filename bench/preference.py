"""DPO and ORPO: our preference task against TRL's DPOTrainer / ORPOTrainer (with peft), side by side.

    python bench/pretrain_decoder.py --out bench/out/sst2-decoder     # the small decoder, first
    python bench/preference.py --model bench/out/sst2-decoder         # both losses, both sides
    python bench/preference.py --pairs fluency                        # pairs both sides learn
    python bench/pretrain_decoder.py --vocab 32000 --out bench/out/sst2-decoder-32k
    python bench/preference.py --model bench/out/sst2-decoder-32k --pairs fluency --train 1000
                                # a real LM's share of vocabulary (the figures in the docs)
    python bench/preference.py --shape smollm2-135m --train 96 --eval 32   # speed and memory at a
                                                        # real model's shape (random weights)

Pairs from SST-2: the prompt is a review (a user turn: "<review>\\nSentiment:"), chosen the right
label word, rejected the wrong one (assistant turns; the decoder's chat template renders both
sides' rows alike); `--pairs fluency` instead cuts each sentence in two: the prompt is its first
half, chosen its real second half, rejected the same words shuffled. Training rows are whole
SST-2 sentences (balanced for sentiment); held-out pairs are SST-2 dev reviews. Each side trains in its own subprocess (one after the other, the same threads) with
the same LoRA (rank, alpha, dropout 0, all linear layers), learning rate, epochs, batch, max
length and precision; TRL keeps its other defaults (e.g. gradient checkpointing on) and runs in
the environment the bench was started in (not with the settings `import engine` adds, such as
THP_MEM_ALLOC_ENABLE). Printed:
- held-out preference accuracy, scored the same way for both sides after training (engine's
  completion log-probs of the same tokens): DPO's implicit reward (policy - reference, the base
  with the adapter off) of chosen above rejected; ORPO's reward (mean token log-prob);
  and the share of reviews whose right word the tuned model finds likelier (label accuracy);
- training samples/s (pairs a second of the training loop alone: no loading or tokenizing);
- peak RSS of the side's whole process (ru_maxrss) up to the end of training (before scoring).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# The environment as the user gave it, before `import engine` adds its settings (the wait policy,
# THP_MEM_ALLOC_ENABLE): TRL runs in it, as a plain script would.
USER_ENV = dict(os.environ)
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))


def sst2_pairs(split: str, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """SST-2 reviews as conversational preference pairs (balanced, whole sentences for train)."""
    from sft_real import QUESTION, balanced, sst2_rows, whole_sentences

    rows = sst2_rows(split)
    if split == "train":
        rows = whole_sentences(rows)
        random.Random(seed).shuffle(rows)
        rows = balanced(rows, n)
    else:
        rows = rows[: n or None]
    pairs = []
    for r in rows:
        review = r["prompt"][len(QUESTION) + 2 :]
        right = r["completion"]
        wrong = "negative" if right == "positive" else "positive"
        pairs.append(
            {
                "prompt": [{"role": "user", "content": f"{review}\nSentiment:"}],
                "chosen": [{"role": "assistant", "content": right}],
                "rejected": [{"role": "assistant", "content": wrong}],
            }
        )
    return pairs


def fluency_pairs(split: str, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """SST-2 sentences cut in two: the prompt is the first half, chosen the real second half,
    rejected the same words shuffled (a preference a small LM can learn in one epoch)."""
    from sft_real import QUESTION, sst2_rows, whole_sentences

    rows = sst2_rows(split)
    if split == "train":
        rows = whole_sentences(rows)
    rng = random.Random(seed)
    if split == "train":
        rng.shuffle(rows)
    pairs = []
    for r in rows:
        words = r["prompt"][len(QUESTION) + 2 :].split()
        if len(words) < 8:
            continue
        cut = len(words) // 2
        rest = words[cut:]
        shuffled = rest[:]
        while shuffled == rest:
            rng.shuffle(shuffled)
        pairs.append(
            {
                "prompt": [{"role": "user", "content": "Continue: " + " ".join(words[:cut])}],
                "chosen": [{"role": "assistant", "content": " ".join(rest)}],
                "rejected": [{"role": "assistant", "content": " ".join(shuffled)}],
            }
        )
        if n and len(pairs) >= n:
            break
    return pairs


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# -- the held-out score, the same for both sides ------------------------------------------------
def score(model: Any, tokenizer: Any, eval_file: Path, loss: str, beta: float, max_length: int):
    """(preference accuracy, label accuracy) of a trained PeftModel on the held-out pairs."""
    import torch

    from engine.tasks.causal_lm.collate import CausalCollator
    from engine.tasks.causal_lm.template import ensure_chat_template
    from engine.tasks.preference.encoding import encode_pairs
    from engine.tasks.preference.forward import completion_logps
    from engine.tasks.preference.pairs import normalise_pair

    ensure_chat_template(tokenizer)
    rows = [json.loads(line) for line in eval_file.read_text().splitlines()]
    pairs = [normalise_pair(r, f"row {i}") for i, r in enumerate(rows)]
    data, _ = encode_pairs(tokenizer, pairs, max_length)
    collate = CausalCollator(tokenizer.pad_token_id or 0)
    model.eval()
    base = model.get_base_model()
    wins = right = 0
    for start in range(0, len(data), 32):
        items = [data[i] for i in range(start, min(len(data), start + 32))]
        n = len(items)
        batch = collate(
            [{"input_ids": p["input_ids"], "labels": p["labels"]} for p in items]
            + [
                {"input_ids": p["rejected_input_ids"], "labels": p["rejected_labels"]}
                for p in items
            ]
        )
        with torch.no_grad():
            pol, counts = completion_logps(base, **batch)
            with model.disable_adapter():
                ref, _ = completion_logps(base, **batch)
        right += int((pol[:n] > pol[n:]).sum())
        if loss == "dpo":
            wins += int(((pol[:n] - ref[:n]) > (pol[n:] - ref[n:])).sum())
        else:
            wins += int((pol[:n] / counts[:n] > pol[n:] / counts[n:]).sum())
    return wins / len(data), right / len(data)


# -- the two sides (each in its own process) -----------------------------------------------------
def ours(a: argparse.Namespace) -> dict[str, Any]:
    """Our engine, in this process, headless (the run a CLI `train --task preference` makes)."""
    from engine.config import RunConfig
    from engine.rundir.events import read_events
    from engine.rundir.runs import new_run_dir
    from engine.training.train import run_training

    cfg = RunConfig()
    cfg.task = "preference"
    cfg.model.model_name = a.model
    cfg.model.max_length = a.max_length
    cfg.data.data_file_path = str(a.train_file)
    cfg.data.validation_fraction = 0
    cfg.lora.lora_r, cfg.lora.lora_alpha = a.rank, 2 * a.rank
    t = cfg.training
    t.preference_loss, t.beta = a.loss, a.beta
    t.epochs, t.batch_size, t.learning_rate = a.epochs, a.batch, a.lr
    t.precision, t.threads = a.precision, a.threads
    t.eval_strategy, t.save_strategy, t.checkpoint_minutes = "no", "no", 0
    t.logging_steps = 50
    t.gradient_checkpointing = a.checkpointing
    t.memory_mode = a.memory_mode
    root = Path(tempfile.mkdtemp(prefix="pref-ours-"))
    run_dir = new_run_dir(cfg.validate(), root)
    assert run_training(run_dir) == 0, (run_dir / "engine.log").read_text()[-2000:]
    events = read_events(run_dir)
    finished = next(e for e in events if e.type == "finished")
    started = next(e for e in events if e.type == "started")
    seconds = finished.elapsed_s
    trained_rss = peak_rss_gb()  # before the scorer loads the adapter on a second base copy
    from engine.tasks.causal_lm.modeling import load_generator

    model, tok = load_generator(Path(finished.output_dir))
    pref, label = score(model, tok, a.eval_file, a.loss, a.beta, a.max_length)
    return {
        "pairs_per_s": started.train_size * a.epochs / seconds,
        "train_s": seconds,
        "accuracy": pref,
        "label_accuracy": label,
        "peak_rss_gb": trained_rss,
    }


def trl_side(a: argparse.Namespace) -> dict[str, Any]:
    """TRL's trainer with a peft LoraConfig, written from its docs (its defaults otherwise)."""
    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(a.threads or os.cpu_count() or 1)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(a.model)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    train = load_dataset("json", data_files=str(a.train_file), split="train")
    peft_config = LoraConfig(
        r=a.rank, lora_alpha=2 * a.rank, lora_dropout=0.0, target_modules="all-linear",
        task_type="CAUSAL_LM",
    )  # fmt: skip
    common = dict(
        output_dir=tempfile.mkdtemp(prefix="pref-trl-"),
        per_device_train_batch_size=a.batch,
        learning_rate=a.lr,
        num_train_epochs=a.epochs,
        max_length=a.max_length,
        beta=a.beta,
        use_cpu=True,
        bf16=a.precision == "bf16",
        report_to="none",
        save_strategy="no",
        logging_steps=50,
        seed=42,
    )
    if a.loss == "dpo":
        from trl import DPOConfig, DPOTrainer

        trainer = DPOTrainer(
            model=model, args=DPOConfig(**common), train_dataset=train,
            processing_class=tok, peft_config=peft_config,
        )  # fmt: skip
    else:
        os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        trainer = ORPOTrainer(
            model=model, args=ORPOConfig(**common), train_dataset=train,
            processing_class=tok, peft_config=peft_config,
        )  # fmt: skip
    t0 = time.monotonic()
    trainer.train()
    seconds = time.monotonic() - t0
    trained_rss = peak_rss_gb()
    pref, label = score(trainer.model, tok, a.eval_file, a.loss, a.beta, a.max_length)
    return {
        "pairs_per_s": len(train) * a.epochs / seconds,
        "train_s": seconds,
        "accuracy": pref,
        "label_accuracy": label,
        "peak_rss_gb": trained_rss,
    }


def peak_rss_gb() -> float:
    """This process's peak RSS so far (GB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def child(a: argparse.Namespace) -> None:
    """One side of one loss; prints a JSON line with its figures and peak RSS."""
    import warnings

    warnings.filterwarnings("ignore")
    out = ours(a) if a.side == "ours" else trl_side(a)
    print("RESULT " + json.dumps(out), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default=str(HERE / "out" / "sst2-decoder"))
    ap.add_argument("--losses", default="dpo,orpo")
    ap.add_argument("--train", type=int, default=2000, help="training pairs")
    ap.add_argument("--eval", type=int, default=872, help="held-out pairs (SST-2 dev)")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sides", default="ours,trl", help="ours, ours-lean (memory_mode lean), trl")
    ap.add_argument("--memory-mode", default="auto", help=argparse.SUPPRESS)  # child: ours's
    ap.add_argument(
        "--checkpointing", default="auto", help="our gradient_checkpointing (auto, true, false)"
    )
    ap.add_argument(
        "--pairs",
        default="sentiment",
        choices=["sentiment", "fluency"],
        help="sentiment: the right label word over the wrong one; fluency: a sentence's real "
        "second half over its words shuffled",
    )
    ap.add_argument(
        "--shape", default="", help="a random-weight model of this shape (bench/sft_scale.py)"
    )
    # child mode
    ap.add_argument("--side", default="")
    ap.add_argument("--loss", default="dpo")
    ap.add_argument("--train-file", type=Path)
    ap.add_argument("--eval-file", type=Path)
    a = ap.parse_args()
    if a.side:
        child(a)
        return
    if a.shape:
        import sft_scale
        from sft_real import shared

        sft_scale.SHARED = shared("sst2").parent  # also from a worktree
        a.model = str(sft_scale.make_model(a.shape))
        print(f"{a.shape} shape, random weights: the accuracies mean nothing here", flush=True)
    folder = Path(tempfile.mkdtemp(prefix="pref-bench-"))
    make = fluency_pairs if a.pairs == "fluency" else sst2_pairs
    train_file = write_jsonl(folder / "train.jsonl", make("train", a.train))
    eval_file = write_jsonl(folder / "eval.jsonl", make("dev", a.eval))
    print(
        f"{a.pairs} pairs: {a.train} training, {a.eval} held-out; {a.epochs:g} epoch, batch {a.batch}, "
        f"lr {a.lr:g}, beta {a.beta:g}, LoRA r {a.rank}, max_length {a.max_length}, "
        f"{a.precision}, {a.threads} thread(s); load: {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    env = dict(
        USER_ENV,
        HF_HUB_OFFLINE="1",
        PYTHONPATH=str(ROOT),
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS=str(a.threads),
    )
    results: dict[tuple[str, str], dict[str, Any]] = {}
    for loss in a.losses.split(","):
        for side in a.sides.split(","):
            mode = "lean" if side == "ours-lean" else "auto"
            cmd = [
                sys.executable, __file__, "--side", side.split("-")[0], "--loss", loss,
                "--memory-mode", mode,
                "--train-file", str(train_file), "--eval-file", str(eval_file),
                "--model", a.model, "--epochs", str(a.epochs), "--batch", str(a.batch),
                "--lr", str(a.lr), "--beta", str(a.beta), "--rank", str(a.rank),
                "--max-length", str(a.max_length), "--precision", a.precision,
                "--threads", str(a.threads), "--checkpointing", a.checkpointing,
            ]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                print(f"{loss} {side} failed:\n{proc.stderr[-3000:]}", flush=True)
                continue
            results[(loss, side)] = r = json.loads(line[7:])
            print(
                f"{loss:4} {side:9}: preference accuracy {r['accuracy']:.1%}, label accuracy "
                f"{r['label_accuracy']:.1%}, {r['pairs_per_s']:.1f} pairs/s "
                f"({r['train_s']:.0f} s), peak RSS {r['peak_rss_gb']:.2f} GB",
                flush=True,
            )
        for ours_side in ("ours", "ours-lean"):
            if (loss, ours_side) not in results or (loss, "trl") not in results:
                continue
            o, t = results[(loss, ours_side)], results[(loss, "trl")]
            print(
                f"{loss:4} {ours_side}/TRL: accuracy {100 * (o['accuracy'] - t['accuracy']):+.1f} points, "
                f"speed {o['pairs_per_s'] / t['pairs_per_s']:.2f}x, "
                f"peak RSS {o['peak_rss_gb'] / t['peak_rss_gb']:.2f}x",
                flush=True,
            )
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
