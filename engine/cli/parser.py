"""The command line's grammar: every command and its flags (argparse)."""

from __future__ import annotations

import argparse

from engine.cli.config_flags import add_config_flags
from engine.cli.queue_commands import add_queue_parser, add_sweep_flag

COMMANDS = ("train", "runs", "resume", "stop", "predict", "export", "preflight", "join", "queue")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every headless command."""
    # No abbreviations: a typo such as --learning_rat must be an error, not a silent guess.
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="finetune-tui",
        description="Fine-tune Hugging Face models with LoRA on a CPU. "
        "With no command, opens the terminal UI.",
    )
    parser.add_argument(
        "--runs-root",
        "--runs_root",
        dest="runs_root",
        default=None,
        help="folder of run directories (default: $FINETUNE_TUI_RUNS or the user data folder)",
    )
    sub = parser.add_subparsers(dest="command")

    train = sub.add_parser("train", allow_abbrev=False, help="train headless, printing progress")
    train.add_argument("--config", help="a TOML config (flags override its values)")
    train.add_argument("--task", help="classification, causal-lm or preference [classification]")
    train.add_argument(
        "--save-config",
        "--save_config",
        dest="save_config",
        help="write the resolved config to this TOML file and exit",
    )
    train.add_argument(
        "--detach", action="store_true", help="run the engine in the background and return at once"
    )
    train.add_argument(
        "--queue",
        action="store_true",
        help="add to the run queue instead (starts at once when no run is training)",
    )
    add_sweep_flag(train)
    add_config_flags(train)
    add_queue_parser(sub)

    pre = sub.add_parser(
        "preflight",
        allow_abbrev=False,
        help="time a few steps: speed, run-time and memory estimate",
    )
    pre.add_argument("--config")
    pre.add_argument("--task", help="classification, causal-lm or preference [classification]")
    pre.add_argument("--steps", type=int, default=6, help="timed steps [6]")
    add_config_flags(pre)

    sub.add_parser("runs", allow_abbrev=False, help="list runs").add_argument(
        "--json", action="store_true"
    )

    res = sub.add_parser(
        "resume", allow_abbrev=False, help="continue a run from its last checkpoint"
    )
    res.add_argument("run", nargs="?", help="run id (or unique part of it); default newest")
    res.add_argument("--detach", action="store_true")

    stop = sub.add_parser(
        "stop", allow_abbrev=False, help="ask a running run to stop (saves first)"
    )
    stop.add_argument("run", nargs="?")

    pred = sub.add_parser("predict", allow_abbrev=False, help="predict labels with a run's adapter")
    pred.add_argument(
        "run", nargs="?", help="run id, adapter folder or merged model folder (default: newest)"
    )
    pred.add_argument("texts", nargs="*", help="texts to classify")
    pred.add_argument("--file", help="a data file of texts (JSON / JSONL / CSV / TSV / Parquet)")
    pred.add_argument("--text-column", "--text_column", dest="text_column", default="")
    pred.add_argument("--out", help="write predictions here (.jsonl or .csv); default stdout")
    pred.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    pred.add_argument("--threads", type=int, default=0)
    pred.add_argument(
        "--max_new_tokens", "--max-new-tokens", type=int, default=128, help="causal-lm [128]"
    )
    pred.add_argument("--temperature", type=float, default=0.0, help="causal-lm: 0 = greedy [0]")
    pred.add_argument("--top_p", "--top-p", type=float, default=1.0, help="causal-lm [1.0]")
    pred.add_argument("--system", default="", help="causal-lm: a system prompt")
    pred.add_argument(
        "--column_map", "--column-map", default="", help="causal-lm: as data.column_map"
    )

    join = sub.add_parser(
        "join", help="let this machine take part in a run started on machine 0 (several machines)"
    )
    join.add_argument("address", metavar="HOST:PORT", help="machine 0's master_addr:master_port")
    join.add_argument("--node_rank", "--node-rank", type=int, required=True, help="1..nnodes-1")
    join.add_argument("--nnodes", type=int, required=True, help="machines in all, with machine 0")
    join.add_argument("--nproc", default="1", help="training processes on this machine [1]")
    join.add_argument("--threads", type=int, default=None, help="threads per process [cores/nproc]")
    join.add_argument(
        "--gloo_socket_ifname", "--gloo-socket-ifname", default=None, help="network interface"
    )
    join.add_argument("--max_restarts", "--max-restarts", type=int, default=None)
    join.add_argument("--detach", action="store_true", help="run in the background")

    exp = sub.add_parser(
        "export", allow_abbrev=False, help="copy the adapter and/or write a merged model"
    )
    exp.add_argument("run")
    exp.add_argument("--merged", metavar="OUT", help="write a merged full model to OUT")
    exp.add_argument("--adapter", metavar="OUT", help="copy the adapter folder to OUT")
    exp.add_argument(
        "--overwrite", action="store_true", help="write into a folder that holds other files"
    )
    exp.add_argument(
        "--gguf",
        nargs="?",
        const="",
        default=None,
        metavar="OUT",
        help="causal-lm: the merged model as OUT/model.gguf + an Ollama Modelfile (needs the "
        "gguf extra; a bare --gguf beside --merged runs a local llama.cpp converter instead)",
    )
    exp.add_argument(
        "--gguf_lora",
        "--gguf-lora",
        metavar="OUT",
        help="causal-lm: the adapter alone as OUT/adapter.gguf (a GGUF LoRA) over OUT/base.gguf",
    )
    exp.add_argument(
        "--gguf_base",
        "--gguf-base",
        metavar="FILE",
        help="with --gguf_lora: use this base model GGUF instead of writing OUT/base.gguf",
    )
    exp.add_argument(
        "--gguf_type",
        "--gguf-type",
        default="bf16",
        choices=["bf16", "f16", "q8_0", "q4_k_m", "f32"],
        help="GGUF weights: bf16 (default), f16, q8_0, q4_k_m (llama.cpp's quantizer), f32",
    )
    exp.add_argument(
        "--llama-cpp",
        "--llama_cpp",
        dest="llama_cpp",
        default="",
        help="llama.cpp folder or its convert_hf_to_gguf.py [$FINETUNE_TUI_LLAMA_CPP]",
    )
    return parser
