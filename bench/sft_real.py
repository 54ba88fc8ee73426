"""Real-data SFT checks with the decoder from bench/pretrain_decoder.py (run that first).

    python bench/sft_real.py sst2      # 2,000 SST-2 instructions, 1 epoch; dev accuracy vs majority
    python bench/sft_real.py alpaca    # 175 Alpaca seed tasks; held-out answer loss per evaluation

Each trains headless through `python -m engine.cli train --task causal-lm` with our defaults
(plus the few flags printed), in a throw-away runs root, then reads the run's events.
SST-2: the adapter answers "Is this review positive or negative?" for all 872 dev reviews
(greedy, up to 3 new tokens); an answer counts when it starts with the right word.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))
QUESTION = "Is this review positive or negative?"


def shared(*parts: str) -> Path:
    """A path under ../shared/data (from a checkout or a worktree)."""
    for base in (ROOT.parent, ROOT.parent.parent, Path("/work")):
        p = base.joinpath("shared", "data", *parts)
        if p.exists():
            return p
    sys.exit(f"not found: shared/data/{'/'.join(parts)}")


def sst2_rows(split: str, limit: int = 0) -> list[dict[str, str]]:
    """SST-2 as prompt/completion instruction records."""
    lines = shared("sst2", f"{split}.tsv").read_text(encoding="utf-8").splitlines()[1:]
    rows = []
    for line in lines[: limit or None]:
        text, label = line.rsplit("\t", 1)
        rows.append(
            {
                "prompt": f"{QUESTION}\n\n{text.strip()}",
                "completion": "positive" if label.strip() == "1" else "negative",
            }
        )
    return rows


def whole_sentences(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Only the rows that are whole sentences, not phrases cut from another row (dev reviews are
    whole sentences; SST-2's training rows are mostly phrases of about 6,900 sentences)."""
    from pretrain_decoder import grouped_documents

    texts = [r["prompt"][len(QUESTION) + 2 :] for r in rows]
    whole = {doc[0] for doc in grouped_documents(texts)}
    return [r for r, t in zip(rows, texts, strict=True) if t in whole]


def balanced(rows: list[dict[str, str]], n: int) -> list[dict[str, str]]:
    """The first n/2 rows of each answer, interleaved (SST-2's training rows are 56% positive)."""
    pos = [r for r in rows if r["completion"] == "positive"][: n // 2]
    neg = [r for r in rows if r["completion"] == "negative"][: n - n // 2]
    return [r for pair in zip(pos, neg, strict=True) for r in pair]


def first_token_margins(model: Any, tok: Any, chats: list[Any]) -> list[float]:
    """Logit of the first token of "positive" minus that of "negative", where the answer starts."""
    import torch

    from engine.tasks.causal_lm.template import prompt_text

    pos, neg = (tok(w, add_special_tokens=False)["input_ids"][0] for w in ("positive", "negative"))
    side, tok.padding_side = tok.padding_side, "left"
    out: list[float] = []
    for i in range(0, len(chats), 64):
        texts = [prompt_text(tok, c) for c in chats[i : i + 64]]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            last = model(**enc).logits[:, -1].float()
        out += (last[:, pos] - last[:, neg]).tolist()
    tok.padding_side = side
    return out


def rank_auc(pos: list[float], neg: list[float]) -> float:
    """Share of (positive, negative) review pairs whose margins are in the right order."""
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / max(1, len(pos) * len(neg))


def train(root: Path, model: str, data: Path, *flags: str) -> Path:
    """Run `engine.cli train` headless; returns the run directory."""
    cmd = [
        sys.executable, "-m", "engine.cli", "--runs-root", str(root), "train",
        "--task", "causal-lm", "--model_name", model, "--data_file_path", str(data), *flags,
    ]  # fmt: skip
    print("$", " ".join(cmd[2:]), flush=True)
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    print(f"trained in {time.monotonic() - t0:.0f}s")
    return max(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def events(run: Path) -> list[dict]:
    """The run's events as dicts."""
    return [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines() if line]


def sst2(
    model: str,
    rows: int,
    keep: str = "",
    lr: str = "",
    extra: tuple[str, ...] = (),
    even: bool = False,
    sentences: bool = False,
) -> None:
    """Train on SST-2 instructions; score dev answers against the majority class."""
    from engine.tasks import get_task
    from engine.tasks.causal_lm.formats import Chat
    from engine.tasks.causal_lm.generation import Sampling, generate

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(keep) if keep else Path(tmp)
        tmp_path.mkdir(parents=True, exist_ok=True)
        data = tmp_path / "sst2-instructions.jsonl"
        pool = whole_sentences(sst2_rows("train")) if sentences else sst2_rows("train")
        picked = balanced(pool, rows) if even else pool[:rows]
        data.write_text("\n".join(json.dumps(r) for r in picked) + "\n")
        run = train(
            tmp_path / "runs", model, data, "--epochs", "1", "--max_length", "96",
            "--validation_fraction", "0", *(["--learning_rate", lr] if lr else []),
            "--eval_strategy", "no", "--save_strategy", "no", *extra,
        )  # fmt: skip
        steps = [e for e in events(run) if e["type"] == "step"]
        tps = [e["tokens_per_s"] for e in steps if e.get("tokens_per_s")]
        print(f"train loss {steps[0]['loss']:.3f} -> {steps[-1]['loss']:.3f}; "
              f"median {sorted(tps)[len(tps) // 2]:.0f} tokens/s")  # fmt: skip
        final = next(e for e in events(run) if e["type"] == "finished")
        gen_model, tok = get_task("causal-lm").load_for_inference(Path(final["output_dir"]))
        dev = sst2_rows("dev")
        chats = [Chat([{"role": "user", "content": r["prompt"]}]) for r in dev]
        answers: list[str] = []
        for i in range(0, len(chats), 64):
            answers += generate(gen_model, tok, chats[i : i + 64], Sampling(max_new_tokens=3))
        margins = first_token_margins(gen_model, tok, chats)
    gold = [r["completion"] for r in dev]
    auc = rank_auc([m for m, g in zip(margins, gold, strict=True) if g == "positive"],
                   [m for m, g in zip(margins, gold, strict=True) if g == "negative"])  # fmt: skip
    print(f"first answer token: ranks positive reviews above negative ones with AUC {auc:.3f}; "
          f"mean logit margin positive-negative {sum(margins) / len(margins):+.2f}")  # fmt: skip
    right = sum(a.strip().lower().startswith(g) for a, g in zip(answers, gold, strict=True))
    majority = max(gold.count("positive"), gold.count("negative")) / len(gold)
    said_positive = sum(a.strip().lower().startswith("positive") for a in answers)
    print(f"answered positive {said_positive}, negative {len(answers) - said_positive}")
    other = sum(not a.strip().lower().startswith(("positive", "negative")) for a in answers)
    print(f"dev accuracy {right / len(gold):.3f} (majority class {majority:.3f}); "
          f"{other} answers were neither word")  # fmt: skip


def alpaca(model: str, epochs: int, keep: str = "") -> None:
    """Train on the 175 Alpaca seed tasks; print the held-out answer loss at each evaluation."""
    with tempfile.TemporaryDirectory() as tmp:
        run = train(
            Path(keep or tmp) / "runs", model, shared("alpaca-seed", "seed_tasks.json"),
            "--epochs", str(epochs), "--max_length", "256", "--validation_fraction", "0.15",
            "--batch_size", "8", "--save_strategy", "no",
        )  # fmt: skip
        evals = [e for e in events(run) if e["type"] == "eval"]
        for e in evals:
            m = e["metrics"]
            print(f"step {e['step']:4d}: held-out answer loss {m['loss']:.3f}, "
                  f"perplexity {m.get('perplexity', float('nan')):.1f}, token accuracy {m['accuracy']:.3f}")  # fmt: skip
        samples = [e for e in events(run) if e["type"] == "sample"][-2:]
        for s in samples:
            print(
                f"- {s['prompt'][:70]!r}\n  ref {s['reference'][:70]!r}\n  got {s['generated'][:70]!r}"
            )


def main() -> None:
    """Parse arguments and run one check."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("check", choices=("sst2", "alpaca"))
    ap.add_argument("--model", default=str(HERE / "out" / "sst2-decoder"))
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument(
        "--balanced", action="store_true", help="sst2: as many positive as negative rows"
    )
    ap.add_argument(
        "--sentences", action="store_true", help="sst2: train on whole sentences, not phrases"
    )
    ap.add_argument("--keep", default="", help="keep the data and runs in this folder")
    ap.add_argument("--lr", default="", help="learning rate for sst2 (default: ours, 1e-3)")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args = ap.parse_args(argv[:cut])
    args.flags = argv[cut + 1 :]  # more `train` flags, after --
    if args.check == "sst2":
        sst2(
            args.model, args.rows, keep=args.keep, lr=args.lr, extra=tuple(args.flags),
            even=args.balanced, sentences=args.sentences,
        )  # fmt: skip
    else:
        alpaca(args.model, args.epochs, args.keep)


if __name__ == "__main__":
    main()
