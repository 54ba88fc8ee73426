"""Pretrain a small Llama-shaped decoder on SST-2 sentences, for real-data SFT checks offline.

    python bench/pretrain_decoder.py                  # 4 minutes -> bench/out/sst2-decoder
    python bench/pretrain_decoder.py --minutes 8 --out /tmp/dec

No pretrained decoder can be downloaded here, so this builds one: a byte-level BPE tokenizer
(4,000 tokens, with <|endoftext|>, <|im_start|>, <|im_end|>) trained on the SST-2 training
sentences, and a 4-layer decoder (hidden 192) trained as a language model on the same sentences
packed into 128-token blocks, for a fixed wall-clock budget. It has no chat template, so the SFT
task gives it the ChatML fallback. Prints the held-out (dev sentences) loss before and after.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def sst2_dir() -> Path:
    """../shared/data/sst2 from the checkout (or /work/shared/data/sst2)."""
    for base in (ROOT.parent, ROOT.parent.parent, Path("/work")):
        if (base / "shared" / "data" / "sst2" / "train.tsv").is_file():
            return base / "shared" / "data" / "sst2"
    sys.exit("SST-2 not found: expected ../shared/data/sst2/train.tsv")


def sentences(path: Path) -> list[str]:
    """The sentence column of an SST-2 TSV."""
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    return [line.rsplit("\t", 1)[0].strip() for line in lines if "\t" in line]


def build_tokenizer(texts: list[str], out: Path, vocab: int):
    """A byte-level BPE trained on the texts, saved as a fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    fast.pad_token = fast.eos_token
    fast.save_pretrained(out)
    return fast


def blocks(tok, texts: list[str], size: int):
    """Sentences joined by EOS, packed into rows of `size` tokens."""
    import torch

    ids: list[int] = []
    for enc in tok(texts, add_special_tokens=False)["input_ids"]:
        ids += enc + [tok.eos_token_id]
    n = len(ids) // size
    return torch.tensor(ids[: n * size]).view(n, size)


def main() -> None:
    """Train and save the decoder."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(HERE / "out" / "sst2-decoder"))
    ap.add_argument("--minutes", type=float, default=4.0)
    ap.add_argument("--vocab", type=int, default=4000)
    ap.add_argument("--hidden", type=int, default=192)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--resume", action="store_true", help="continue training the model in --out")
    args = ap.parse_args()

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = sst2_dir()
    train_texts = sentences(data / "train.tsv")
    dev_texts = sentences(data / "dev.tsv")
    if args.resume:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(out)
    else:
        tok = build_tokenizer(train_texts, out, args.vocab)
    random.Random(0).shuffle(train_texts)
    train = blocks(tok, train_texts, 128)
    dev = blocks(tok, dev_texts, 128)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=args.hidden,
        intermediate_size=args.hidden * 8 // 3 // 8 * 8,
        num_hidden_layers=args.layers,
        num_attention_heads=args.hidden // 64 if args.hidden >= 128 else 2,
        num_key_value_heads=args.hidden // 64 if args.hidden >= 128 else 2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.eos_token_id,
        pad_token_id=tok.eos_token_id,
    )
    model = LlamaForCausalLM.from_pretrained(out) if args.resume else LlamaForCausalLM(config)
    print(
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, "
        f"{train.shape[0]} train blocks of 128 tokens",
        flush=True,
    )
    bf16 = (
        "avx512_bf16" in Path("/proc/cpuinfo").read_text()
        or "amx_bf16" in Path("/proc/cpuinfo").read_text()
    )

    def dev_loss() -> float:
        model.eval()
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            losses = [model(input_ids=b, labels=b).loss.item() for b in dev.split(32)]
        model.train()
        return sum(losses) / len(losses)

    print(f"dev loss before: {dev_loss():.3f}", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01, betas=(0.9, 0.95))
    budget = args.minutes * 60
    t0 = time.monotonic()
    step, batch = 0, 16
    order = torch.randperm(train.shape[0])
    while time.monotonic() - t0 < budget:
        frac = (time.monotonic() - t0) / budget
        lr = 3e-3 * min(1.0, step / 50) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for group in opt.param_groups:
            group["lr"] = lr
        start = (step * batch) % max(1, train.shape[0] - batch)
        b = train[order[start : start + batch]]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=b, labels=b).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        if step % 50 == 0:
            print(f"step {step} loss {loss.item():.3f} ({time.monotonic() - t0:.0f}s)", flush=True)
    print(f"dev loss after {step} steps ({step * batch * 128 / 1e6:.1f}M tokens): {dev_loss():.3f}")
    model.save_pretrained(out, safe_serialization=True)
    print(f"saved to {out}")


if __name__ == "__main__":
    main()
