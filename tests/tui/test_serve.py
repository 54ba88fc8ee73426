"""`finetune-tui serve`: the page, the token, the bind checks, and one real app session per tab."""

from __future__ import annotations

import asyncio
import contextlib
import http.cookiejar
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

pytest.importorskip("textual_serve")
import aiohttp  # noqa: E402 (textual-serve's dependency)

ROOT = Path(__file__).resolve().parents[2]  # the repository
SETUP_MARKS = ("Model", "Training", "Start")


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")


def _serve_cmd(root: Path, *flags: str) -> list[str]:
    return [sys.executable, "-m", "tui.cli", "--runs-root", str(root), "serve", *flags]


class Served:
    """A running `serve` process (own process group, so its app processes die with it)."""

    def __init__(self, root: Path, *flags: str) -> None:
        self.proc = subprocess.Popen(
            _serve_cmd(root, *flags),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        line = self.proc.stdout.readline() if ready else ""
        match = re.search(r"http://\S+:(\d+)/\?token=(\S+)", line)
        if not match:
            self.kill()
            pytest.fail(f"serve printed {line!r}; stderr: {self.proc.stderr.read()!r}")
        self.port = int(match.group(1))
        self.token = match.group(2)
        self.base = f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """Stop the server and everything in its process group, whatever state it is in."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=15)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """`serve --port 0` (a free loopback port) on an empty runs root."""
    server = Served(tmp_path / "runs", "--port", "0")
    try:
        yield server
    finally:
        server.kill()


def _status(url: str, opener: urllib.request.OpenerDirector | None = None) -> int:
    try:
        with (opener or urllib.request.build_opener()).open(url, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _browser() -> urllib.request.OpenerDirector:
    """An opener that keeps cookies, as a browser does."""
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor())


def test_page_needs_the_token_then_a_cookie(served: Served, tmp_path: Path) -> None:
    token_file = tmp_path / "runs" / ".serve-token"
    assert token_file.read_text().strip() == served.token
    assert token_file.stat().st_mode & 0o777 == 0o600
    for path in ("/", "/?token=wrong", "/static/js/textual.js", "/ws", "/download/x"):
        assert _status(served.base + path) == 403, path

    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with browser.open(f"{served.base}/?token={served.token}", timeout=30) as resp:
        html = resp.read().decode()
        assert resp.status == 200
        assert resp.url == served.base + "/"  # the token left the address bar
        assert resp.headers["X-Frame-Options"] == "DENY"
    assert "<title>finetune-tui</title>" in html
    assert f'data-session-websocket-url="ws://127.0.0.1:{served.port}/ws"' in html
    assert "googleapis" not in html  # nothing loads from elsewhere
    assert [c.name for c in jar] == [f"finetune_tui_serve_{served.port}"]
    assert _status(served.base + "/static/js/textual.js", browser) == 200
    # Through `ssh -L 9000:localhost:PORT` the browser says 127.0.0.1:9000: the page follows it.
    forwarded = urllib.request.Request(served.base + "/", headers={"Host": "127.0.0.1:9000"})
    with browser.open(forwarded, timeout=30) as resp:
        assert 'data-session-websocket-url="ws://127.0.0.1:9000/ws"' in resp.read().decode()
    assert _status(served.base + "/static/fonts/RobotoMono-VariableFont_wght.ttf", browser) == 200


async def _read_until(ws: aiohttp.ClientWebSocketResponse, marks: tuple[str, ...]) -> str:
    """The app's output until every mark has appeared in it (60 s at most)."""
    text = ""
    while not all(mark in text for mark in marks):
        msg = await asyncio.wait_for(ws.receive(), timeout=60)
        assert msg.type == aiohttp.WSMsgType.BINARY, msg
        text += msg.data.decode("utf-8", "replace")
    return text


def _apps(server: Served) -> list[psutil.Process]:
    """The app processes the server started (one per open tab)."""
    return psutil.Process(server.proc.pid).children(recursive=True)


def _until(check: Callable[[], bool]) -> bool:
    """Poll until `check` holds (no clock here: pytest-timeout ends a test that hangs)."""
    while not check():
        time.sleep(0.1)
    return True


def _client(server: Served) -> aiohttp.ClientSession:
    """A client that holds the server's cookie, as a browser does after the first page load."""
    return aiohttp.ClientSession(cookies={f"finetune_tui_serve_{server.port}": server.token})


def test_a_tab_shows_the_setup_form_and_only_our_page_may_open_one(served: Served) -> None:
    async def tab() -> str:
        async with _client(served) as client:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await client.ws_connect(
                    f"{served.base}/ws", headers={"Origin": "http://evil.example"}
                )
            assert refused.value.status == 403
            async with client.ws_connect(
                f"{served.base}/ws?width=100&height=30", headers={"Origin": served.base}
            ) as ws:
                return await _read_until(ws, SETUP_MARKS)

    assert "Training" in asyncio.run(tab())


@pytest.fixture
def served_runs(tmp_path: Path) -> Iterator[Served]:
    """`serve` on a runs root holding one finished run (the app opens the run list)."""
    from tests.fakeruns import make_fake_run

    make_fake_run(tmp_path / "runs", "webtab", "finished")
    server = Served(tmp_path / "runs", "--port", "0")
    try:
        yield server
    finally:
        server.kill()


def test_two_tabs_are_two_apps_on_the_same_runs(served_runs: Served) -> None:
    async def two_tabs() -> None:
        async with (
            _client(served_runs) as client,
            client.ws_connect(f"{served_runs.base}/ws") as one,
            client.ws_connect(f"{served_runs.base}/ws") as two,
        ):
            await asyncio.gather(_read_until(one, ("webtab",)), _read_until(two, ("webtab",)))
            apps = _apps(served_runs)
            assert len(apps) == 2
            await one.close()
            # Closing a tab ends its app and only its app; the other tab still answers.
            assert await asyncio.to_thread(_until, lambda: len(_apps(served_runs)) == 1)
            await two.send_json(["resize", {"width": 90, "height": 28}])
            await _read_until(two, ("webtab",))

    asyncio.run(two_tabs())
    assert _until(lambda: not _apps(served_runs))


def test_a_killed_server_leaves_no_app_behind(served_runs: Served) -> None:
    async def tab_then_kill() -> list[psutil.Process]:
        async with (
            _client(served_runs) as client,
            client.ws_connect(f"{served_runs.base}/ws") as ws,
        ):
            await _read_until(ws, ("webtab",))
            apps = _apps(served_runs)
            os.kill(served_runs.proc.pid, signal.SIGKILL)
            return apps

    apps = asyncio.run(tab_then_kill())
    assert len(apps) == 1
    _, alive = psutil.wait_procs(apps, 30)
    assert not alive


def test_stopping_the_server_ends_open_tabs(served_runs: Served) -> None:
    async def tab_then_stop() -> tuple[int, list[psutil.Process]]:
        async with (
            _client(served_runs) as client,
            client.ws_connect(f"{served_runs.base}/ws") as ws,
        ):
            await _read_until(ws, ("webtab",))
            apps = _apps(served_runs)
            os.kill(served_runs.proc.pid, signal.SIGTERM)
            async for _ in ws:  # the app's last frames, then the server closes the tab
                pass
            assert ws.closed
            return await asyncio.to_thread(served_runs.proc.wait, 30), apps

    code, apps = asyncio.run(tab_then_stop())
    assert code == 0 and len(apps) == 1
    _, alive = psutil.wait_procs(apps, 30)
    assert not alive


def test_public_bind_warns_and_still_needs_the_token(tmp_path: Path) -> None:
    server = Served(tmp_path / "runs", "--host", "0.0.0.0", "--public", "--port", "0")
    try:
        assert _status(server.base + "/") == 403
        assert _status(f"{server.base}/?token={server.token}x") == 403
        assert _status(f"{server.base}/?token={server.token}", _browser()) == 200
    finally:
        server.kill()
    assert "warning: serving on 0.0.0.0" in server.proc.stderr.read()


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.org", "::"])
def test_non_loopback_without_public_is_refused(tmp_path: Path, host: str) -> None:
    out = subprocess.run(
        _serve_cmd(tmp_path / "runs", "--host", host, "--port", "0"),
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a loopback address" in lines[0] and "--public" in lines[0]
    assert not (tmp_path / "runs" / ".serve-token").exists()


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        out = subprocess.run(  # --runs-root after `serve` works too
            [
                sys.executable,
                "-m",
                "tui.cli",
                "serve",
                "--runs-root",
                str(tmp_path),
                "--port",
                str(port),
            ],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=60,
        )
    assert out.returncode == 2
    assert out.stderr.strip() == (
        f"error: 127.0.0.1:{port}: the port is already in use "
        "(pick another with --port, or stop what listens there)"
    )


def test_loopback_names() -> None:
    from tui.web.access import is_loopback

    assert all(is_loopback(h) for h in ("localhost", "127.0.0.1", "127.8.0.1", "::1", "[::1]"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "localhost.evil.org"))


@pytest.mark.skipif(
    shutil.which("chromium") is None, reason="needs Debian's chromium (apt-get install chromium)"
)
def test_a_real_browser_draws_the_setup_form(tmp_path: Path) -> None:
    shot = tmp_path / "serve.png"
    out = subprocess.run(
        [sys.executable, "bench/serve_first_frame.py", "--repeats", "1", "--screenshot", str(shot)],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=ROOT,
        timeout=180,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "setup form" in out.stdout and "title 'finetune-tui'" in out.stdout
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000  # a drawn page, not a blank one


def test_without_textual_serve_one_line_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tui.cli import main

    monkeypatch.delitem(sys.modules, "tui.web.server", raising=False)
    monkeypatch.setitem(sys.modules, "textual_serve.server", None)  # import fails
    assert main(["--runs-root", str(tmp_path / "runs"), "serve", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install 'finetune-tui[web]'" in err
    assert not (tmp_path / "runs" / ".serve-token").exists()
