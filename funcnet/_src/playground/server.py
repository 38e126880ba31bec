"""``python -m funcnet playground --serve``: the Playground's page, training live in JAX.

A standard-library HTTP server (``http.server.ThreadingHTTPServer``) on
127.0.0.1 serves the page (plain files in ``web/``) and a small JSON API; each
browser tab has its own :class:`PlaygroundSession`. The page polls: while it
plays it asks ``/api/step`` for the next frame as soon as it has drawn the
last, so training happens only while a tab asks for it (a closed tab stops
training at once, and its session is dropped after ``IDLE_SECONDS``), a slow
browser never queues frames, and a control change is one request. Why not
Server-Sent Events or a web framework: ``docs/playground.md``.

Endpoints (POST, JSON object in, JSON object out; errors are ``{"error": ...}``
with status 400, 404, 413 or 429, never a crash of the server):

- ``/api/start`` ``{"fragment"}`` -> ``{"session", "frame", "points"}``
- ``/api/step`` ``{"session", "epochs"?, "since"?}`` -> ``{"frame"}``
- ``/api/change`` ``{"session", "fragment"}`` -> ``{"frame", "points"?}``
- ``/api/reset`` ``{"session"}`` -> ``{"frame", "points"}``
- ``/api/stop`` ``{"session"}`` -> ``{"stopped": true}``
"""

from __future__ import annotations

import http.server
import json
import secrets
import socket
import threading
import time
import webbrowser
from importlib import resources
from typing import Any

from funcnet._src.playground.session import PlaygroundSession

IDLE_SECONDS = 30.0
"""A session no tab has asked about for this long is dropped (its tab was closed)."""

MAX_SESSIONS = 32
"""At most this many experiments at once; more get a clear error (status 429)."""

MAX_BODY = 64 * 1024
"""The largest request body accepted, in bytes."""

MAX_EPOCHS_PER_STEP = 1000
"""``/api/step`` trains at most this many epochs per request."""

STEP_BUDGET = 0.015
"""Seconds of training per frame while playing (a few epochs on the default network)."""

_FIELDS = {
    "start": {"fragment"},
    "step": {"session", "epochs", "since"},
    "change": {"session", "fragment"},
    "reset": {"session"},
    "stop": {"session"},
}
_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/playground.js": ("playground.js", "text/javascript; charset=utf-8"),
    "/playground.css": ("playground.css", "text/css; charset=utf-8"),
}


class RequestError(Exception):
    """A bad request: its HTTP status and a message for the page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Sessions:
    """The open experiments by id, dropping those no tab has asked about lately."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, PlaygroundSession] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def add(self, session: PlaygroundSession) -> str:
        with self._lock:
            self._expire()
            if len(self._sessions) >= MAX_SESSIONS:
                raise RequestError(
                    429, f"too many experiments at once (at most {MAX_SESSIONS}); close a tab."
                )
            key = secrets.token_hex(8)
            self._sessions[key] = session
            return key

    def get(self, key: Any) -> PlaygroundSession:
        with self._lock:
            self._expire()
            session = self._sessions.get(key) if isinstance(key, str) else None
        if session is None:
            raise RequestError(
                404, f"unknown session {key!r} (it stopped or expired); reload the page."
            )
        session.last_seen = time.monotonic()
        return session

    def remove(self, key: Any) -> None:
        with self._lock:
            self._sessions.pop(key, None)

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, s in self._sessions.items() if now - s.last_seen > IDLE_SECONDS]:
            del self._sessions[key]


def _fragment(body: dict) -> str:
    fragment = body.get("fragment", "")
    if not isinstance(fragment, str):
        raise RequestError(400, f"fragment must be a string, got {type(fragment).__name__}.")
    return fragment


def _integer(body: dict, name: str, default: int | None, high: int) -> int | None:
    value = body.get(name, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= high:
        raise RequestError(400, f"{name} must be an integer from 0 to {high}, got {value!r}.")
    return value


def handle(sessions: Sessions, action: str, body: Any) -> dict:
    """Answers one API request (``action`` is the path after ``/api/``)."""
    if action not in _FIELDS:
        raise RequestError(404, f"unknown endpoint /api/{action}. Endpoints: {', '.join(_FIELDS)}.")
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object.")
    unknown = sorted(set(body) - _FIELDS[action])
    if unknown:
        raise RequestError(
            400,
            f"unknown fields for /api/{action}: {', '.join(unknown)}. "
            f"Known: {', '.join(sorted(_FIELDS[action]))}.",
        )
    try:
        if action == "start":
            session = PlaygroundSession(_fragment(body))
            key = sessions.add(session)
            return {"session": key, "frame": session.frame(), "points": session.points()}
        session = sessions.get(body.get("session"))
        if action == "stop":
            sessions.remove(body["session"])
            return {"stopped": True}
        with session.lock:
            if action == "step":
                epochs = _integer(body, "epochs", None, MAX_EPOCHS_PER_STEP)
                since = _integer(body, "since", 0, 10**9) or 0
                return {"frame": session.step(epochs, STEP_BUDGET, since)}
            version = session.data_version
            frame = session.change(_fragment(body)) if action == "change" else session.reset()
            answer = {"frame": frame}
            if session.data_version != version:
                answer["points"] = session.points()
            return answer
    except ValueError as error:
        raise RequestError(400, str(error)) from None


class _Handler(http.server.BaseHTTPRequestHandler):
    server: PlaygroundHTTPServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as two writes; without this, Nagle's algorithm holds the
        # body until the browser's delayed ACK of the headers (tens of ms per frame).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per frame would flood the terminal

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, value: dict) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        if path == "/favicon.ico":
            self._send(204, b"", "image/x-icon")  # none: the browser asks anyway
            return
        if path not in _FILES:
            self._json(404, {"error": f"no page at {path}; open / instead."})
            return
        name, content_type = _FILES[path]
        body = (
            resources.files("funcnet._src.playground").joinpath("web").joinpath(name).read_bytes()
        )
        self._send(200, body, content_type)

    def do_POST(self) -> None:
        try:
            if not self.path.startswith("/api/"):
                raise RequestError(404, f"no endpoint at {self.path}; the API is under /api/.")
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self.close_connection = True
                raise RequestError(413, f"request body of {length} bytes; at most {MAX_BODY}.")
            raw = self.rfile.read(length) if length else b"{}"
            try:
                body = json.loads(raw)
            except ValueError:
                raise RequestError(400, "the request body is not valid JSON.") from None
            answer = handle(self.server.sessions, self.path[len("/api/") :], body)
        except RequestError as error:
            self._json(error.status, {"error": str(error)})
            return
        except Exception as error:  # a bug must not take the server down: say it
            self._json(500, {"error": f"internal error: {type(error).__name__}: {error}"})
            return
        self._json(200, answer)


class PlaygroundHTTPServer(http.server.ThreadingHTTPServer):
    """The page's server: one thread per request, the sessions shared."""

    daemon_threads = True

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.sessions = Sessions()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


def serve(
    fragment: str = "", port: int = 0, open_browser: bool = False, print_fn: Any = print
) -> int:
    """Serves the page on 127.0.0.1 until Ctrl-C; returns the exit status."""
    server = PlaygroundHTTPServer(port)
    address = server.url + (f"#{fragment}" if fragment else "")
    print_fn(f"Playground page: {address}")
    print_fn("Press Ctrl-C to stop the server.")
    if open_browser:
        webbrowser.open(address)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        print_fn("Stopped.")
    finally:
        server.server_close()
    return 0


__all__ = ["PlaygroundHTTPServer", "handle", "serve"]
