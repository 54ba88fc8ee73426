"""A byte-level BPE tokenizer as GGUF metadata: tokens, types, merges, pre-tokenizer, stops."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from engine.core.errors import UserError

# The split regexes of the byte-level BPE families llama.cpp knows, as tokenizer.json writes them,
# and the tokenizer.ggml.pre name llama.cpp reads for each.
LLAMA3_SPLIT = (
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
)
QWEN2_SPLIT = (
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
)
SPLITS = {LLAMA3_SPLIT: "llama-bpe", QWEN2_SPLIT: "qwen2"}
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6  # gguf.TokenType
SPM_NORMALIZER = [
    {"type": "Prepend", "prepend": "▁"},
    {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
]


@dataclass
class GgufVocab:
    """What llama.cpp needs to tokenize, format chats and stop like the transformers tokenizer."""

    pre: str
    tokens: list[str]
    types: list[int]
    merges: list[str]
    special: dict[str, int] = field(default_factory=dict)  # bos / eos / eot / pad / unk -> id
    add_bos: bool = False
    add_eos: bool = False
    chat_template: str | None = None
    model: str = "gpt2"  # "llama": SentencePiece-style (scores, byte tokens, "▁" for spaces)
    scores: list[float] = field(default_factory=list)

    def add_to(self, writer: Any) -> None:
        """Write the tokenizer keys into a gguf.GGUFWriter."""
        writer.add_tokenizer_model(self.model)
        writer.add_token_list(self.tokens)
        writer.add_token_types(self.types)
        if self.model == "gpt2":
            writer.add_tokenizer_pre(self.pre)
            writer.add_token_merges(self.merges)
        else:
            writer.add_token_scores(self.scores)
            writer.add_add_space_prefix(True)
        for kind, tid in self.special.items():
            getattr(writer, f"add_{kind}_token_id")(tid)
        writer.add_add_bos_token(self.add_bos)
        writer.add_add_eos_token(self.add_eos)
        if self.chat_template:
            writer.add_chat_template(self.chat_template)


def _refuse(why: str) -> UserError:
    return UserError(
        f"this tokenizer cannot be written to GGUF here: {why}",
        where="export --gguf",
        hint="byte-level BPE tokenizers (GPT-2, Llama-3, Qwen2/3, SmolLM) convert; for others "
        "use llama.cpp's convert_hf_to_gguf.py on the merged model (export --merged OUT)",
    )


def pre_tokenizer_name(spec: dict[str, Any] | None) -> str:
    """The llama.cpp pre-tokenizer for a tokenizer.json `pre_tokenizer`, or a UserError."""
    if not spec:
        raise _refuse("it has no pre-tokenizer")
    parts = spec.get("pretokenizers", [spec]) if spec.get("type") == "Sequence" else [spec]
    kinds = [p.get("type") for p in parts]
    last = parts[-1]
    if kinds[-1] != "ByteLevel" or last.get("add_prefix_space"):
        raise _refuse(f"its pre-tokenizer is {'+'.join(map(str, kinds))}, not byte-level")
    if kinds == ["ByteLevel"] and last.get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and parts[0].get("individual_digits"):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and not last.get("use_regex", True):
        pattern = parts[0].get("pattern", {}).get("Regex")
        if pattern in SPLITS and parts[0].get("behavior") == "Isolated":
            return SPLITS[pattern]
    raise _refuse(f"its pre-tokenizer ({'+'.join(map(str, kinds))}) is not one llama.cpp names")


def _merges(model: dict[str, Any]) -> list[str]:
    merges = model.get("merges") or []
    out = []
    for m in merges:
        pair = m.split(" ", 1) if isinstance(m, str) else m
        out.append(" ".join("".join(chr(ord(c) + 256) if c == " " else c for c in p) for p in pair))
    return out


def _adds(tokenizer: Any) -> tuple[bool, bool]:
    """Whether encoding adds BOS / EOS (read from what the tokenizer does)."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    bos = len(full) > len(plain) and full[0] == tokenizer.bos_token_id
    eos = len(full) > len(plain) and full[-1] == tokenizer.eos_token_id
    return bool(bos), bool(eos)


def build_vocab(tokenizer: Any, n_vocab: int, bos_fallback: int | None = None) -> GgufVocab:
    """The GGUF vocabulary of a fast tokenizer, padded with unused tokens to `n_vocab` rows."""
    from engine.tasks.causal_lm.template import end_of_turn_ids

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise _refuse("it is not a fast (tokenizer.json) tokenizer")
    spec = json.loads(backend.to_str())
    model = spec.get("model", {})
    spm = is_legacy_spm(spec)
    if model.get("type") != "BPE" or (model.get("byte_fallback") and not spm):
        raise _refuse(
            f"its model is {model.get('type')} (SentencePiece-style, not in the Llama-2 layout "
            "of a Prepend + Replace normalizer), not byte-level BPE"
        )
    if not spm and (spec.get("decoder") or {}).get("type") != "ByteLevel":
        raise _refuse("its decoder is not byte-level")
    pre = "default" if spm else pre_tokenizer_name(spec.get("pre_tokenizer"))
    tokens: dict[int, tuple[str, int]] = {i: (t, NORMAL) for t, i in model["vocab"].items()}
    for added in spec.get("added_tokens", []):
        kind = CONTROL if added.get("special") else USER_DEFINED
        tokens[int(added["id"])] = (added["content"], kind)
    size = max(n_vocab, max(tokens) + 1)
    if size > n_vocab:
        raise _refuse(f"it has {size} tokens, more than the model's {n_vocab} embedding rows")
    if spm:
        tokens = _spm_types(tokens, model.get("unk_token"))
    texts = [tokens.get(i, (f"[PAD{i}]", UNUSED))[0] for i in range(size)]
    types = [tokens.get(i, ("", UNUSED))[1] for i in range(size)]
    special: dict[str, int] = {}
    eos = tokenizer.eos_token_id
    if eos is None:
        raise _refuse("it has no EOS token, so generation would never stop")
    special["eos"] = int(eos)
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else bos_fallback
    special["bos"] = int(bos if bos is not None else eos)
    stops = [i for i in end_of_turn_ids(tokenizer) if i != eos]
    if stops:
        special["eot"] = int(stops[0])
    for role in ("pad", "unk"):
        tid = getattr(tokenizer, f"{role}_token_id", None)
        if tid is not None:
            special[role] = int(tid)
    add_bos, add_eos = _adds(tokenizer)
    return GgufVocab(
        pre=pre,
        tokens=texts,
        types=types,
        merges=[] if spm else _merges(model),
        special=special,
        add_bos=add_bos and tokenizer.bos_token_id is not None,
        add_eos=add_eos,
        chat_template=getattr(tokenizer, "chat_template", None) or None,
        model="llama" if spm else "gpt2",
        scores=spm_scores(texts, model) if spm else [],
    )


def is_legacy_spm(spec: dict[str, Any]) -> bool:
    """A SentencePiece BPE in Llama-2's tokenizer.json layout: byte fallback, "▁" put in by a
    Prepend + Replace normalizer (so after every special token too, as llama.cpp does), no
    pre-tokenizer."""
    model = spec.get("model", {})
    norm = spec.get("normalizer") or {}
    return (
        model.get("type") == "BPE"
        and bool(model.get("byte_fallback"))
        and norm.get("type") == "Sequence"
        and norm.get("normalizers") == SPM_NORMALIZER
        and not spec.get("pre_tokenizer")
    )


def _spm_types(tokens: dict[int, tuple[str, int]], unk: str | None) -> dict[int, tuple[str, int]]:
    """Byte tokens (<0xAB>) and the unknown token get llama.cpp's own token types."""
    out = {}
    for i, (text, kind) in tokens.items():
        if re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", text):
            kind = BYTE
        elif text == unk:
            kind = UNKNOWN
        out[i] = (text, kind)
    return out


def spm_scores(texts: list[str], model: dict[str, Any]) -> list[float]:
    """llama.cpp's SentencePiece tokenizer joins the best-scoring neighbour pair first: a token
    made by merge number r scores -r, so it merges in the transformers merge order."""
    rank: dict[str, int] = {}
    for r, m in enumerate(model.get("merges") or []):
        left, right = m.split(" ", 1) if isinstance(m, str) else m
        rank.setdefault(left + right, r)
    return [float(-rank[t]) if t in rank else -1e9 if len(t) > 1 else 0.0 for t in texts]
