"""textual-serve's aiohttp server with our access guard, our page and a clean shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from pathlib import Path
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from aiohttp.web_runner import GracefulExit
from textual_serve.server import Server

from tui.web.access import cookie_name, token_matches

TEMPLATES = Path(__file__).resolve().parent / "templates"
FORBIDDEN = (
    "finetune-tui: this page needs its access token. Open the URL that `finetune-tui serve` "
    "printed when it started (the token is also in .serve-token in the runs folder).\n"
)
# Nothing of ours loads from elsewhere; no other site may frame the page (clickjacking).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self' ws: wss:; "
    "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


class AppServer(Server):
    """One app process per browser tab, reachable only with the token (query once, then cookie)."""

    def __init__(self, command: str, sock: socket.socket, token: str, title: str) -> None:
        host, port = sock.getsockname()[:2]
        super().__init__(command, host=host, port=port, title=title, templates_path=TEMPLATES)
        self.sock = sock
        self.token = token
        self.cookie = cookie_name(port)
        self._sessions: set[asyncio.Task[Any]] = set()

    def initialize_logging(self) -> None:
        """Warnings and errors only (textual-serve logs every session at INFO)."""
        super().initialize_logging()
        logging.getLogger().setLevel(logging.WARNING)

    async def _make_app(self) -> web.Application:
        """textual-serve's routes behind our guard."""
        app = await super()._make_app()
        app.middlewares.append(self._guard)
        return app

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """403 without the token; a token in the URL becomes a cookie and leaves the address bar."""
        from_query = token_matches(self.token, request.query.get("token"))
        if from_query and request.method == "GET" and request.path == "/":
            query = request.query.copy()
            del query["token"]
            response = web.Response(
                status=303, headers={"Location": str(request.rel_url.with_query(query))}
            )
            response.set_cookie(self.cookie, self.token, httponly=True, samesite="Strict", path="/")
            response.headers.update(SECURITY_HEADERS)
            return response
        if not (from_query or token_matches(self.token, request.cookies.get(self.cookie))):
            return web.Response(status=403, text=FORBIDDEN, headers=SECURITY_HEADERS)
        origin = request.headers.get("Origin")
        if request.path == "/ws" and origin and origin != f"{request.scheme}://{request.host}":
            # Browsers let any page open a websocket anywhere: only our own page may drive the app.
            return web.Response(status=403, text="finetune-tui: foreign origin\n")
        response = await handler(request)
        if not response.prepared:
            response.headers.update(SECURITY_HEADERS)
        return response

    @aiohttp_jinja2.template("index.html")
    async def handle_index(self, request: web.Request) -> dict[str, Any]:
        """The page, with URLs relative to the address the browser used (any forwarded port)."""
        scheme = "wss" if request.secure else "ws"
        try:
            font_size = int(request.query.get("fontsize", "16"))
        except ValueError:
            font_size = 16
        return {
            "title": self.title,
            "static_url": "/static/",
            "ws_url": f"{scheme}://{request.host}/ws",
            "font_size": max(8, min(font_size, 40)),
        }

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        """One app process per websocket; remembered so a shutdown can close it."""
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        try:
            return await super().handle_websocket(request)
        finally:
            self._sessions.discard(task)

    async def on_startup(self, app: web.Application) -> None:
        """Print nothing: `serve` printed the address and token already."""

    async def on_shutdown(self, app: web.Application) -> None:
        """Close every tab's session, so each app process quits (training runs keep going)."""
        for task in list(self._sessions):
            task.cancel()
        if self._sessions:
            await asyncio.wait(list(self._sessions), timeout=10)

    def serve(self, debug: bool = False) -> None:
        """Serve on the already bound socket until Ctrl+C or SIGTERM."""
        self.debug = debug
        self.initialize_logging()
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)

        def request_exit() -> None:
            raise GracefulExit()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, request_exit)
        web.run_app(
            self._make_app(),
            sock=self.sock,
            handle_signals=False,
            loop=loop,
            print=None,
            shutdown_timeout=5,
        )
