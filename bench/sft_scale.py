"""Instruction tuning at real sizes: ours vs a plain TRL SFTTrainer script, side by side in one run.

    python bench/sft_scale.py                                # SmolLM2-135M shape, bf16 where native
    python bench/sft_scale.py --shapes smollm2-135m qwen2.5-0.5b llama-3.2-1b --precision fp32
    python bench/sft_scale.py --sides ours --rows 24        # ours only, a few steps

No pretrained decoder of these sizes can be downloaded here, so each shape is a randomly
initialised model built from the real config (layers, widths, heads, vocabulary, tied or untied
head), saved as bf16 safetensors as the real checkpoints are, with a byte-level BPE tokenizer
trained in this script (its ids are a subset of the model's vocabulary, as Qwen's 151,665 tokens
are of its 151,936 rows). The rows are Alpaca-like: a prompt of ~90 and an answer of ~140 tokens on
average, built from SST-2 sentences. Figures per side: samples/s and real tokens/s of training
time, peak RSS of the whole process tree (polled), the share of this machine's matmul peak
(measured in the same run on a 4096x576 @ 576x1536 product), and the held-out answer loss after the
same rows, scored by the same code for every side.

"Model FLOPs" for the share count what LoRA training must do: forward and input-gradient matmuls
of every frozen linear (4 x params per real token), the output layer on the answer tokens only,
and attention's two products; recomputation (gradient checkpointing) is not counted as useful.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
OUT = HERE / "out"
# The environment as the user gave it, before `import engine` adds its settings (the wait policy,
# THP_MEM_ALLOC_ENABLE): the TRL script runs in it, as it would on its own.
USER_ENV = dict(os.environ)
# ../shared/data from the checkout, or from a parent of it (for worktrees)
SHARED = next(
    (p / "shared" / "data" for p in ROOT.parents if (p / "shared" / "data" / "sst2").is_dir()),
    ROOT.parent / "shared" / "data",
)

# The real configs' shapes (hub config.json of each model).
SHAPES: dict[str, dict[str, Any]] = {
    "smollm2-135m": dict(
        hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
        num_key_value_heads=3, vocab_size=49152, max_position_embeddings=8192,
        rope_theta=100000.0, tie_word_embeddings=True, rms_norm_eps=1e-5, kind="llama",
    ),
    "qwen2.5-0.5b": dict(
        hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
        num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768,
        rope_theta=1000000.0, tie_word_embeddings=True, rms_norm_eps=1e-6, kind="qwen2",
    ),
    "llama-3.2-1b": dict(
        hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
        num_key_value_heads=8, vocab_size=128256, max_position_embeddings=131072,
        rope_theta=500000.0, tie_word_embeddings=True, rms_norm_eps=1e-5, kind="llama",
        head_dim=64,
    ),
}  # fmt: skip


def sentences() -> list[str]:
    """SST-2 training sentences (the words of the synthetic rows)."""
    lines = (SHARED / "sst2" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [line.split("\t")[0] for line in lines if line.count(" ") >= 6]


def make_tokenizer(folder: Path) -> Any:
    """A byte-level BPE tokenizer of 8,000 tokens with ChatML tokens, trained on SST-2 text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=8000,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(sentences()[:20000], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    fast.save_pretrained(folder)
    return fast


def make_model(shape: str) -> Path:
    """The shape's random-init model in bench/out (built once, bf16 safetensors)."""
    import torch
    import transformers as tf

    folder = OUT / f"shape-{shape}"
    if (folder / "config.json").is_file():
        return folder
    spec = dict(SHAPES[shape])
    kind = spec.pop("kind")
    tmp = folder.with_name(folder.name + ".tmp")
    tok = make_tokenizer(tmp)
    from engine.tasks.causal_lm.template import ensure_chat_template

    ensure_chat_template(tok)  # ChatML in the tokenizer, so TRL and ours render the same text
    tok.save_pretrained(tmp)
    config_cls, model_cls = {
        "llama": (tf.LlamaConfig, tf.LlamaForCausalLM),
        "qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM),
    }[kind]
    config = config_cls(**spec, eos_token_id=tok.eos_token_id, bos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    with torch.device("cpu"):
        model = model_cls(config).to(torch.bfloat16)
    model.save_pretrained(tmp, safe_serialization=True)
    del model
    tmp.rename(folder)
    return folder


def make_rows(n: int, seed: int, tok: Any) -> list[dict[str, str]]:
    """Alpaca records whose prompt and answer token counts follow ~90 and ~140 on average."""
    rng = random.Random(seed)
    pool = sentences()

    def text(tokens: int) -> str:
        out, count = [], 0
        while count < tokens:
            s = rng.choice(pool)
            out.append(s)
            count += len(tok(s)["input_ids"])
        return " ".join(out)

    rows = []
    for _ in range(n):
        p = max(12, int(rng.lognormvariate(4.4, 0.45)))  # median ~81, mean ~90
        a = max(8, int(rng.lognormvariate(4.8, 0.5)))  # median ~122, mean ~140
        rows.append({"instruction": text(p), "input": "", "output": text(a)})
    return rows


class PeakRss:
    """Polls the summed RSS of a process and its children until stopped."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._stop.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs))
            except psutil.Error:
                pass
            time.sleep(0.1)

    def stop(self) -> int:
        """The peak seen, in bytes."""
        self._stop.set()
        self._thread.join()
        return self.peak


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> int:
    """Run a command to the end; its process tree's peak RSS."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    meter = PeakRss(proc.pid)
    code = proc.wait()
    peak = meter.stop()
    if code:
        raise SystemExit(f"{cmd[:4]}... failed with exit code {code}")
    return peak


def run_ours(model: Path, train: Path, out: Path, args: argparse.Namespace) -> dict:
    """`engine.cli train --task causal-lm` with our defaults plus the bench's batch and length."""
    cmd = [
        sys.executable, "-m", "engine.cli", "--runs-root", str(out), "train",
        "--task", "causal-lm", "--model_name", str(model), "--data_file_path", str(train),
        "--epochs", "1", "--batch_size", str(args.batch_size), "--learning_rate", str(args.lr),
        "--max_length", str(args.max_length), "--validation_fraction", "0",
        "--save_strategy", "no", "--logging_steps", "1", "--precision", args.precision,
        *args.ours_flags,
    ]  # fmt: skip
    peak = run_measured(cmd)
    run = next(p for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))
    events = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines() if x]
    done = next(e for e in events if e["type"] == "finished")
    steps = [e for e in events if e["type"] == "step"]
    logs = [e["message"] for e in events if e["type"] == "log"]
    return {
        "seconds": steps[-1]["elapsed_s"],
        "peak": peak,
        "adapter": done["output_dir"],
        "log": logs,
    }


def trl_role(tmp: Path, args: argparse.Namespace) -> None:
    """The plain TRL script (in its own process): load, SFTTrainer with a LoraConfig, train."""
    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    bf16 = args.precision == "bf16"
    tok = AutoTokenizer.from_pretrained(tmp / "model")
    model = AutoModelForCausalLM.from_pretrained(
        tmp / "model", dtype=torch.bfloat16 if bf16 else torch.float32
    )

    def conversational(row: dict) -> dict:
        return {
            "prompt": [{"role": "user", "content": row["instruction"]}],
            "completion": [{"role": "assistant", "content": row["output"]}],
        }

    ds = load_dataset("json", data_files=str(tmp / "train.jsonl"), split="train")
    ds = ds.map(conversational, remove_columns=ds.column_names)
    config = SFTConfig(
        output_dir=str(tmp / "trl-out"),
        use_cpu=True,
        bf16=bf16,
        per_device_train_batch_size=args.batch_size,
        gradient_checkpointing=args.trl_checkpointing,
        learning_rate=args.lr,
        num_train_epochs=1,
        max_length=args.max_length,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )
    peft = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(
        model=model, args=config, train_dataset=ds, processing_class=tok, peft_config=peft
    )
    result = trainer.train()
    trainer.model.save_pretrained(tmp / "trl-adapter")
    (tmp / "trl.json").write_text(json.dumps({"seconds": result.metrics["train_runtime"]}))


def run_trl(tmp: Path, args: argparse.Namespace, checkpointing: bool) -> dict:
    """The TRL script in a child process, measured from outside."""
    cmd = [
        sys.executable, __file__, "--role", "trl", "--dir", str(tmp),
        "--batch-size", str(args.batch_size), "--lr", str(args.lr),
        "--max-length", str(args.max_length), "--precision", args.precision,
    ] + (["--trl-checkpointing"] if checkpointing else [])  # fmt: skip
    peak = run_measured(cmd, env=dict(USER_ENV, HF_HUB_OFFLINE="1"))
    result = json.loads((tmp / "trl.json").read_text())
    adapter = tmp / f"trl-adapter-{int(checkpointing)}"
    (tmp / "trl-adapter").rename(adapter)
    return {"seconds": result["seconds"], "peak": peak, "adapter": str(adapter)}


def encoded(tok: Any, rows: list[dict[str, str]], max_length: int) -> Any:
    """The rows as our causal-LM encoder tokenizes them (ChatML, answer-only labels)."""
    from engine.tasks.causal_lm.encoding import encode_chats
    from engine.tasks.causal_lm.formats import normalise_all

    chats, _ = normalise_all(rows, ["instruction", "input", "output"])
    data, _ = encode_chats(tok, chats, max_length)
    return data


def heldout_loss(adapter: str, model: Path, held: Any, tok: Any, precision: str) -> float:
    """Mean answer-token loss of an adapter on the held-out rows (the same code for every side)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from engine.tasks.causal_lm.collate import CausalCollator

    base = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    net = PeftModel.from_pretrained(base, adapter).eval()
    collate = CausalCollator(tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    total, count = 0.0, 0
    with (
        torch.inference_mode(),
        torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"),
    ):
        for i in range(len(held)):
            batch = collate([held[i]])
            logits = net(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            ).logits
            labels = batch["labels"][:, 1:]
            total += float(
                torch.nn.functional.cross_entropy(
                    logits[:, :-1].float().transpose(1, 2), labels, reduction="sum"
                )
            )
            count += int((labels != -100).sum())
    return total / count


def matmul_peak(dtype: Any, seconds: float = 3.0) -> float:
    """GFLOP/s of a 4096x576 @ 576x1536 product in `dtype` (best of a few timed batches)."""
    import torch

    a, b = torch.randn(4096, 576).to(dtype), torch.randn(576, 1536).to(dtype)
    flops = 2 * 4096 * 576 * 1536
    a @ b
    best, end = 0.0, time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.perf_counter()
        for _ in range(5):
            a @ b
        best = max(best, 5 * flops / (time.perf_counter() - t0) / 1e9)
    return best


def model_flops(shape: str, data: Any) -> float:
    """Useful FLOPs of one pass of LoRA training over `data` (see the module docstring)."""
    s = SHAPES[shape]
    h, inter, layers = s["hidden_size"], s["intermediate_size"], s["num_hidden_layers"]
    heads, kv = s["num_attention_heads"], s["num_key_value_heads"]
    head_dim = s.get("head_dim", h // heads)
    linear = layers * (h * heads * head_dim * 2 + 2 * h * kv * head_dim + 3 * h * inter)
    lengths = data.lengths()
    tokens = int(lengths.sum())
    attention = sum(4 * layers * heads * head_dim * int(n) ** 2 for n in lengths)  # QK^T, PV
    answers = data.trained_tokens
    return 4 * linear * tokens + 2 * attention + 4 * h * s["vocab_size"] * answers


def main() -> None:
    """Build the shapes, train every side on each, and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", nargs="+", default=["smollm2-135m"], choices=list(SHAPES))
    ap.add_argument("--sides", nargs="+", default=["ours", "trl", "trl-nockpt"])
    ap.add_argument("--rows", type=int, default=96)
    ap.add_argument("--held", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=12)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--precision", default="", help="bf16 or fp32 (default: bf16 where native)")
    ap.add_argument("--ours-flags", nargs=argparse.REMAINDER, default=[])
    ap.add_argument("--role", choices=("trl",), help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    ap.add_argument("--trl-checkpointing", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role == "trl":
        trl_role(Path(args.dir), args)
        return
    from engine.core.hardware import native_bf16

    args.precision = args.precision or ("bf16" if native_bf16() else "fp32")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    def measure_peaks() -> dict[str, float]:
        found = {"bf16": matmul_peak(torch.bfloat16)} if native_bf16() else {}
        found["fp32"] = matmul_peak(torch.float32)
        return found

    peaks = measure_peaks()
    print(
        "matmul peak (4096x576 @ 576x1536): "
        + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peaks.items()),
        flush=True,
    )
    table = []
    for shape in args.shapes:
        model = make_model(shape)
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(model)
        with tempfile.TemporaryDirectory() as name:
            tmp = Path(name)
            os.symlink(model, tmp / "model")
            rows = make_rows(args.rows + args.held, seed=0, tok=tok)
            train = tmp / "train.jsonl"
            train.write_text("\n".join(json.dumps(r) for r in rows[: args.rows]) + "\n")
            from engine.tasks.causal_lm.template import ensure_chat_template

            ensure_chat_template(tok)
            data = encoded(tok, rows[: args.rows], args.max_length)
            held = encoded(tok, rows[args.rows :], args.max_length)
            flops = model_flops(shape, data)
            for side in args.sides:
                t0 = time.monotonic()
                if side == "ours":
                    result = run_ours(model, train, tmp / "ours", args)
                    for line in result["log"]:
                        print(f"  ours: {line}", flush=True)
                else:
                    result = run_trl(tmp, args, checkpointing=side == "trl")
                result["loss"] = heldout_loss(result["adapter"], model, held, tok, args.precision)
                s = result["seconds"]
                row = {
                    "shape": shape,
                    "side": side,
                    "samples_s": args.rows / s,
                    "tokens_s": data.tokens / s,
                    "peak_gb": result["peak"] / 1024**3,
                    "share": flops / s / 1e9 / peaks[args.precision],
                    "loss": result["loss"],
                    "wall": time.monotonic() - t0,
                }
                table.append(row)
                print(
                    f"{shape:14} {side:11} {row['samples_s']:7.2f} samples/s "
                    f"{row['tokens_s']:7.0f} tokens/s  peak {row['peak_gb']:5.2f} GB  "
                    f"{row['share']:6.1%} of {args.precision} peak  held-out loss "
                    f"{row['loss']:.4f}  ({row['wall']:.0f}s)",
                    flush=True,
                )
    # The machine is shared: a peak measured under load would flatter the shares. Measure again
    # after the runs and keep the higher figure of each.
    again = measure_peaks()
    for key, value in again.items():
        if value > peaks[key]:
            for row in table:
                if args.precision == key:
                    row["share"] *= peaks[key] / value
            peaks[key] = value
    print(
        "matmul peak, best of before and after: "
        + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peaks.items())
    )
    print(f"\n{args.precision}, batch {args.batch_size}, max_length {args.max_length}, "
          f"{args.rows} rows, 1 epoch")  # fmt: skip
    print(f"{'shape':14} {'side':11} {'samples/s':>9} {'tokens/s':>9} {'peak RSS':>9} "
          f"{'% peak':>7} {'held-out':>9}")  # fmt: skip
    for r in table:
        print(f"{r['shape']:14} {r['side']:11} {r['samples_s']:9.2f} {r['tokens_s']:9.0f} "
              f"{r['peak_gb']:7.2f}GB {r['share']:7.1%} {r['loss']:9.4f}")  # fmt: skip
    for shape in args.shapes:
        side = {r["side"]: r for r in table if r["shape"] == shape}
        if "ours" in side:
            for other in ("trl", "trl-nockpt"):
                if other in side:
                    print(f"{shape}: ours / {other} samples/s = "
                          f"{side['ours']['samples_s'] / side[other]['samples_s']:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
