"""Pretrain a small Llama-shaped decoder on SST-2 sentences, for real-data SFT checks offline.

    python bench/pretrain_decoder.py                  # 8 minutes -> bench/out/sst2-decoder
    python bench/pretrain_decoder.py --minutes 4 --out /tmp/dec
    python bench/pretrain_decoder.py --docs shuffled --chat-tokens --minutes 10   # the older recipe

No pretrained decoder can be downloaded here, so this builds one: a byte-level BPE tokenizer
(4,000 tokens, with <|endoftext|>) trained on the SST-2 training sentences, and a 4-layer decoder
(hidden 192) trained as a language model for a fixed wall-clock budget. Documents are each
sentence followed by the phrases SST-2 cut from it (see grouped_documents), packed into 128-token
blocks; 5% of the documents are held out and the checkpoint with the lowest held-out loss is kept.
Its chat template is EOS_TEMPLATE (each turn's text, then EOS); `--chat-tokens` instead gives it
<|im_start|> / <|im_end|> and no template, so the SFT task uses its ChatML fallback.
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


def grouped_documents(phrases: list[str]) -> list[list[str]]:
    """SST-2's phrases put back under the sentence they were cut from: [sentence, *phrases].

    SST-2's training rows are every phrase of about 6,900 sentences. Packed at random, the
    model learns those phrases by heart; grouped, what follows each end-of-text is a phrase of
    the text before it, so the state after a text has to carry what the text said.
    """
    parents: list[str] = []
    children: list[list[str]] = []
    by_word: dict[str, list[int]] = {}
    for phrase in sorted(set(phrases), key=len, reverse=True):
        first = phrase.split()[0] if phrase.split() else ""
        home = next((i for i in by_word.get(first, ()) if f" {phrase} " in f" {parents[i]} "), None)
        if home is None:
            words = set(phrase.split())
            parents.append(phrase)
            children.append([])
            for word in words:
                by_word.setdefault(word, []).append(len(parents) - 1)
        else:
            children[home].append(phrase)
    return [[parent, *kids] for parent, kids in zip(parents, children, strict=True)]


# Each turn's text then EOS, and the answer straight after: the state at an EOS is the one
# pretraining taught to carry what the text before it said (see grouped_documents).
EOS_TEMPLATE = "{% for message in messages %}{{ message['content'] + eos_token }}{% endfor %}"


def build_tokenizer(texts: list[str], out: Path, vocab: int, chat_tokens: bool = False):
    """A byte-level BPE trained on the texts, saved as a fast tokenizer.

    With `chat_tokens` it holds <|im_start|> / <|im_end|> (never seen in training) and no
    template, so the SFT task uses its ChatML fallback; else it gets EOS_TEMPLATE."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=["<|endoftext|>"] + (["<|im_start|>", "<|im_end|>"] if chat_tokens else []),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    fast.pad_token = fast.eos_token
    if not chat_tokens:
        fast.chat_template = EOS_TEMPLATE
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


def texts_of(docs: list[list[str]], seed: int) -> list[str]:
    """The documents in a shuffled order, each as its texts (sentence first, phrases shuffled)."""
    rng = random.Random(seed)
    order = list(docs)
    rng.shuffle(order)
    out: list[str] = []
    for doc in order:
        kids = doc[1:]
        rng.shuffle(kids)
        out += [doc[0], *kids]
    return out


def main() -> None:
    """Train and save the decoder (the one with the lowest held-out loss)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(HERE / "out" / "sst2-decoder"))
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--vocab", type=int, default=4000)
    ap.add_argument("--hidden", type=int, default=192)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--block", type=int, default=128, help="tokens per training row")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument(
        "--docs", choices=("grouped", "shuffled"), default="grouped",
        help="grouped: each sentence followed by its phrases; shuffled: every phrase on its own",
    )  # fmt: skip
    ap.add_argument(
        "--chat-tokens", action="store_true",
        help="put <|im_start|> and <|im_end|> in the vocabulary (never trained) and use the "
        "ChatML fallback template instead of EOS_TEMPLATE",
    )  # fmt: skip
    ap.add_argument("--resume", action="store_true", help="continue training the model in --out")
    args = ap.parse_args()

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    phrases = sentences(sst2_dir() / "train.tsv")
    docs = grouped_documents(phrases) if args.docs == "grouped" else [[p] for p in phrases]
    random.Random(0).shuffle(docs)
    held_out = docs[: max(1, len(docs) // 20)]  # 5% of the documents pick the checkpoint
    docs = docs[len(held_out) :]
    if args.resume:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(out)
    else:
        tok = build_tokenizer(texts_of(docs, 0), out, args.vocab, args.chat_tokens)
    held = blocks(tok, texts_of(held_out, 0), args.block)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=args.hidden,
        intermediate_size=args.hidden * 8 // 3 // 8 * 8,
        num_hidden_layers=args.layers,
        num_attention_heads=max(2, args.hidden // 64),
        num_key_value_heads=max(2, args.hidden // 64),
        max_position_embeddings=512,
        tie_word_embeddings=True,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.eos_token_id,
        pad_token_id=tok.eos_token_id,
    )
    model = LlamaForCausalLM.from_pretrained(out) if args.resume else LlamaForCausalLM(config)
    print(
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters; "
        f"{len(docs)} documents ({args.docs}), {len(held_out)} held out",
        flush=True,
    )
    cpu = Path("/proc/cpuinfo").read_text()
    bf16 = "avx512_bf16" in cpu or "amx_bf16" in cpu

    def held_out_loss() -> float:
        model.eval()
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            losses = [model(input_ids=b, labels=b).loss.item() for b in held.split(32)]
        model.train()
        return sum(losses) / len(losses)

    best = held_out_loss()
    print(f"held-out loss before: {best:.3f}", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1, betas=(0.9, 0.95))
    budget = args.minutes * 60
    t0 = time.monotonic()
    step, batch, epoch = 0, 16, 0
    train = blocks(tok, texts_of(docs, 1), args.block)
    at = 0
    while time.monotonic() - t0 < budget:
        if at + batch > train.shape[0]:  # a new epoch: new document order, new packing
            epoch += 1
            train, at = blocks(tok, texts_of(docs, epoch + 1), args.block), 0
        frac = (time.monotonic() - t0) / budget
        lr = args.lr * min(1.0, step / 50) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for group in opt.param_groups:
            group["lr"] = lr
        b = train[at : at + batch]
        at += batch
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=b, labels=b).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        if step % 200 == 0:
            now = held_out_loss()
            kept = now < best
            if kept:
                best = now
                model.save_pretrained(out, safe_serialization=True)
            print(
                f"step {step} (epoch {epoch + 1}) loss {loss.item():.3f}, held-out {now:.3f}"
                f"{' (kept)' if kept else ''} ({time.monotonic() - t0:.0f}s)",
                flush=True,
            )
    now = held_out_loss()
    if now < best:
        best = now
        model.save_pretrained(out, safe_serialization=True)
    tokens = step * batch * args.block / 1e6
    print(f"{step} steps, {tokens:.1f}M tokens; best held-out loss {best:.3f}; saved to {out}")


if __name__ == "__main__":
    main()
