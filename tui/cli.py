"""The `finetune-tui` console script: the TUI by default, headless engine commands otherwise."""

from __future__ import annotations

import argparse
import sys

APP_COMMANDS = ("attach", "serve")


def unknown_command(word: str, known: list[str]) -> str:
    """One line for a command we do not have: the close one, if any, and every command."""
    import difflib

    close = difflib.get_close_matches(word, known, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return (
        f"error: finetune-tui has no command '{word}': {hint}the commands are "
        f"{', '.join(known)} (finetune-tui COMMAND --help); list the runs with 'finetune-tui runs'"
    )


def main(argv: list[str] | None = None) -> int:
    """Dispatch: `finetune-tui [attach [RUN]]` opens the app, `serve` in a browser; train/... headless."""
    args = list(sys.argv[1:] if argv is None else argv)
    from engine.cli.parser import COMMANDS

    positional = [
        a
        for i, a in enumerate(args)
        if not a.startswith("-") and (i == 0 or args[i - 1] not in ("--runs-root", "--runs_root"))
    ]
    if positional and positional[0] in COMMANDS:
        from engine.cli.commands import main as engine_main

        return engine_main(args)
    if positional and positional[0] not in APP_COMMANDS:
        print(unknown_command(positional[0], [*APP_COMMANDS, *COMMANDS]), file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(
        prog="finetune-tui",
        description="Fine-tune Hugging Face models with LoRA on a CPU, in the terminal. "
        "Headless commands: " + ", ".join(COMMANDS) + " (finetune-tui COMMAND --help).",
    )
    parser.add_argument(
        "--runs-root",
        "--runs_root",
        dest="runs_root",
        default=None,
        help="folder of run directories",
    )
    sub = parser.add_subparsers(dest="command")
    attach = sub.add_parser("attach", help="open the monitor of a run (default: the newest)")
    attach.add_argument("run", nargs="?")
    serve = sub.add_parser(
        "serve", help="the app in a browser (one app per tab; 127.0.0.1 unless --public)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on [127.0.0.1]")
    serve.add_argument("--port", type=int, default=8000, help="port, 0 = any free one [8000]")
    serve.add_argument(
        "--runs-root",
        "--runs_root",
        dest="runs_root",
        default=argparse.SUPPRESS,
        help="folder of run directories (also accepted before `serve`)",
    )
    serve.add_argument(
        "--public",
        action="store_true",
        help="allow a non-loopback --host (reachable from the network; the token guards it)",
    )
    ns = parser.parse_args(args)

    from engine.core.errors import UserError
    from engine.rundir.runs import find_run, runs_root

    root = runs_root(ns.runs_root)
    if ns.command == "serve":
        from tui.web.serve import serve

        try:
            return serve(root, ns.host, ns.port, ns.public)
        except UserError as exc:
            print(f"error: {exc.one_line()}", file=sys.stderr)
            return 2
    attach_to = None
    if ns.command == "attach":
        try:
            attach_to = find_run(ns.run, root)
        except UserError as exc:
            print(f"error: {exc.one_line()}", file=sys.stderr)
            return 2
    from tui.app import FinetuneApp

    FinetuneApp(runs_root=root, attach_to=attach_to).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
