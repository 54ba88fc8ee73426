"""Who may reach `serve`: the bind address check, the access token and its file."""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from pathlib import Path

from engine.core.errors import UserError

TOKEN_FILE = ".serve-token"
LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback IP literals (127.0.0.0/8, ::1); False for anything else."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(host: str, public: bool) -> None:
    """Refuse a non-loopback address unless `--public` was given (a UserError, one line)."""
    if not host.strip():
        raise UserError(
            "an empty host listens on every address",
            where="--host",
            hint="leave --host out for 127.0.0.1, or give an address with --public",
        )
    if not public and not is_loopback(host):
        raise UserError(
            f"{host} is not a loopback address, so anyone who can reach this machine could "
            "drive the app as you",
            where="--host",
            hint="keep the default 127.0.0.1 and use `ssh -L 8000:localhost:8000 SERVER`, "
            "or add --public to bind it anyway: the URL then needs its token",
        )


def new_token(root: Path) -> tuple[str, Path]:
    """A fresh random token, written to ROOT/.serve-token readable by this user only (0600)."""
    token = secrets.token_urlsafe(24)
    path = root / TOKEN_FILE
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.fchmod(fd, 0o600)  # an older file may have had wider permissions
            os.write(fd, (token + "\n").encode())
        finally:
            os.close(fd)
    except OSError as exc:
        raise UserError(
            f"cannot write the access token ({exc.strerror or exc})",
            where=str(path),
            hint="check the runs folder's permissions, or pick another with --runs-root",
        ) from None
    return token, path


def token_matches(expected: str, supplied: str | None) -> bool:
    """Compare a supplied token with the expected one in constant time."""
    if not supplied:
        return False
    return hmac.compare_digest(expected.encode(), supplied.encode())


def cookie_name(port: int) -> str:
    """The cookie that carries the token after the first page load (per port: cookies ignore it)."""
    return f"finetune_tui_serve_{port}"
