"""Time from opening `finetune-tui serve`'s URL in headless Chromium to the setup form, plus a screenshot.

    python bench/serve_first_frame.py [--repeats 5] [--size 1280x800] [--screenshot /tmp/serve.png]

Starts `finetune-tui serve --port 0` on an empty runs root, then for each repeat opens a new
Chromium tab (Debian's `chromium`, headless, driven over the DevTools protocol) at the printed URL.
A script injected before the page loads watches the app's websocket: the first frame is the moment
the bytes received contain the setup form's marks (the same marks as bench/first_frame.py), counted
from the navigation's start (token redirect, page, static files, a new app process, its first draw).
The last repeat's page is saved as a PNG.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
READY_MARKS = ("Model", "Training", "Start")
WATCH = """
window.__ff = {text: "", first: null, ready: null, marks: READY_MARKS};
const NativeWebSocket = window.WebSocket;
window.WebSocket = function (...args) {
  const ws = new NativeWebSocket(...args);
  const decoder = new TextDecoder();
  ws.addEventListener("message", (e) => {
    const now = performance.now();
    if (typeof e.data === "string") return;
    if (window.__ff.first === null) window.__ff.first = now;
    if (window.__ff.ready !== null) return;
    window.__ff.text += decoder.decode(e.data, {stream: true});
    if (window.__ff.marks.every((m) => window.__ff.text.includes(m))) window.__ff.ready = now;
  });
  return ws;
};
window.WebSocket.prototype = NativeWebSocket.prototype;
""".replace("READY_MARKS", json.dumps(READY_MARKS))


class Tab:
    """One page target of Chromium, spoken to over the DevTools websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0

    async def call(self, method: str, **params: object) -> dict:
        """Send one command and wait for its answer (events in between are skipped)."""
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        while True:
            msg = json.loads((await self.ws.receive()).data)
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})


def start_serve(runs: str) -> tuple[subprocess.Popen, str]:
    """`finetune-tui serve --port 0` in its own process group; returns it and the printed URL."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "--runs-root", runs, "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"(http://\S+)", line)
    if not match:
        os.killpg(proc.pid, signal.SIGKILL)
        raise RuntimeError(f"serve printed {line!r}")
    return proc, match.group(1)


def start_chromium(size: str) -> tuple[subprocess.Popen, str, str]:
    """Headless Chromium with the DevTools protocol on a free port; returns it and its address."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        raise SystemExit("needs Debian's chromium: apt-get install chromium")
    profile = tempfile.mkdtemp(prefix="ff-chromium-")
    proc = subprocess.Popen(
        [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--window-size={size.replace('x', ',')}",
            "--remote-debugging-port=0",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        match = re.search(r"DevTools listening on ws://([^/]+)/", line)
        if match:
            return proc, match.group(1), profile
    raise RuntimeError("chromium printed no DevTools address")


async def one_open(session: aiohttp.ClientSession, devtools: str, url: str, shot: str) -> dict:
    """Open the URL in a new tab; seconds to the first app bytes and to the setup form."""
    async with session.put(f"http://{devtools}/json/new?about:blank") as resp:
        target = await resp.json()
    async with session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
        tab = Tab(ws)
        await tab.call("Page.enable")
        await tab.call("Page.addScriptToEvaluateOnNewDocument", source=WATCH)
        await tab.call("Page.navigate", url=url)
        deadline = time.monotonic() + 60
        state: dict = {}
        while time.monotonic() < deadline:
            result = await tab.call(
                "Runtime.evaluate",
                expression="window.__ff ? JSON.stringify({first: __ff.first, ready: __ff.ready, "
                "title: document.title}) : null",
                returnByValue=True,
            )
            value = result.get("result", {}).get("value")
            state = json.loads(value) if value else {}
            if state.get("ready") is not None:
                break
            await asyncio.sleep(0.05)
        else:
            raise RuntimeError(f"no setup form within 60 s: {state}")
        if shot:
            await asyncio.sleep(1.0)  # let the canvas paint and the fade-in end
            png = await tab.call("Page.captureScreenshot", format="png")
            Path(shot).write_bytes(base64.b64decode(png["data"]))
        await tab.call("Page.close")
    return state


async def measure(url: str, devtools: str, repeats: int, shot: str) -> list[dict]:
    """Open the page `repeats` times, one tab after another."""
    async with aiohttp.ClientSession() as session:
        states = []
        for i in range(repeats):
            states.append(await one_open(session, devtools, url, shot if i == repeats - 1 else ""))
            await asyncio.sleep(0.5)  # the closed tab's app process quits
        return states


def main() -> None:
    """Print each open's times and the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", default="1280x800")
    parser.add_argument("--screenshot", default="/tmp/serve-first-frame.png")
    args = parser.parse_args()
    runs = tempfile.mkdtemp(prefix="ff-serve-runs-")
    serve, url = start_serve(runs)
    chromium, devtools, profile = start_chromium(args.size)
    try:
        states = asyncio.run(measure(url, devtools, args.repeats, args.screenshot))
    finally:
        for proc in (chromium, serve):
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        shutil.rmtree(profile, ignore_errors=True)
        shutil.rmtree(runs, ignore_errors=True)
    for i, s in enumerate(states, 1):
        print(
            f"open {i}: first app bytes {s['first'] / 1000:.2f} s, setup form "
            f"{s['ready'] / 1000:.2f} s (title {s['title']!r})"
        )
    print(
        f"median over {len(states)}: first bytes {statistics.median(s['first'] for s in states) / 1000:.2f} s, "
        f"setup form {statistics.median(s['ready'] for s in states) / 1000:.2f} s"
    )
    print(f"screenshot of the last open: {args.screenshot}")


if __name__ == "__main__":
    main()
