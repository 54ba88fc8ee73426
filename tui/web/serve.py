"""`finetune-tui serve`: check the address, make the token, bind, print the URL once, serve."""

from __future__ import annotations

import errno
import shlex
import socket
import sys
from pathlib import Path

from engine.core.errors import UserError
from tui.web.access import check_bind, is_loopback, new_token

TITLE = "finetune-tui"


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or a UserError saying why not (in use, no such address)."""
    where = f"{host}:{port}"
    if not 0 <= port <= 65535:
        raise UserError("the port must be 0..65535", where="--port", hint="e.g. --port 8000")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise UserError(
            f"no such address ({exc.strerror})", where=where, hint="check --host"
        ) from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UserError(
                "the port is already in use",
                where=where,
                hint="pick another with --port, or stop what listens there",
            ) from None
        raise UserError(
            f"cannot listen there ({exc.strerror or exc})",
            where=where,
            hint="check --host and --port (ports below 1024 need root)",
        ) from None
    sock.setblocking(False)
    return sock


def app_command(root: Path) -> str:
    """The shell command textual-serve runs once per browser tab: this app on the same runs root."""
    return "exec " + shlex.join([sys.executable, "-m", "tui.web.tab", str(root)])


def browser_url(host: str, port: int, token: str) -> str:
    """The address to open, token included (a wildcard bind is shown as this machine's name)."""
    shown = socket.gethostname() if host in ("0.0.0.0", "::") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/?token={token}"


def serve(root: Path, host: str, port: int, public: bool) -> int:
    """Serve the app until Ctrl+C; user mistakes raise UserError (exit 2 in the CLI)."""
    check_bind(host, public)
    try:
        from tui.web.server import AppServer
    except ImportError as exc:
        raise UserError(
            f"serving in a browser needs textual-serve; {exc.name or 'a part of it'} is not installed",
            where="serve",
            hint="pip install 'finetune-tui[web]'",
        ) from None
    sock = bind(host, port)
    token, token_file = new_token(root)
    port = sock.getsockname()[1]
    if not is_loopback(host):
        print(
            f"warning: serving on {host}:{port} over plain HTTP: anyone who reaches this address "
            "and has the URL below drives the app as you. Prefer the default 127.0.0.1 and "
            "`ssh -L`.",
            file=sys.stderr,
            flush=True,
        )
    print(f"finetune-tui in a browser: {browser_url(host, port, token)}", flush=True)
    print(f"  runs root {root}; the token (new at each start) is also in {token_file}")
    if is_loopback(host):
        print(f"  from your own computer: ssh -L {port}:localhost:{port} THIS_SERVER, then open it")
    print("  Ctrl+C stops serving; runs started from a tab keep training", flush=True)
    AppServer(app_command(root), sock, token, TITLE).serve()
    return 0
