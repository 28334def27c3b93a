"""Serve a :class:`~subledger.core.sandbox.app.Sandbox` over HTTP/1.1 on 127.0.0.1.

The standard library's threading server is enough and gives full control over the
socket, which fault injection needs: a dropped connection is closed without a byte of
response, a timeout holds the socket open until the client gives up.

    with SandboxServer(StripeSandbox()) as server:      # port 0: an ephemeral port
        client = stripe.StripeClient("sk_test_x", base_addresses={"api": server.url})
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from subledger.core.sandbox.app import Sandbox
from subledger.core.sandbox.wire import Headers, Request

log = logging.getLogger(__name__)

LOCALHOST = "127.0.0.1"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_DELETE = do_PUT = do_PATCH = do_GET

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle's algorithm and
        # the client's delayed ACK add ~40 ms to every keep-alive request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.untrack(self.connection)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        request = Request(
            method=self.command.upper(),
            target=self.path,
            headers=Headers(self.headers.items()),
            body=self._read_body(),
        )
        outcome = self.server.sandbox.process(request)
        if outcome.action == "drop":
            self._abort()
            return
        if outcome.action == "hang":
            self.server.stopping.wait(outcome.hang_seconds)
            self._abort()
            return
        response = outcome.response
        assert response is not None
        payload = response.encode()
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(payload)))
        for key, value in response.headers.items():
            if key.lower() not in ("content-type", "content-length"):
                self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _abort(self) -> None:
        """Close the connection without answering (what a crashed proxy looks like)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.stopping = threading.Event()
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, conn: socket.socket) -> None:
        with self._open_lock:
            self._open.add(conn)

    def untrack(self, conn: socket.socket) -> None:
        with self._open_lock:
            self._open.discard(conn)

    def close_all(self) -> None:
        with self._open_lock:
            conns = list(self._open)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class SandboxServer:
    """A running (or startable) HTTP server for one sandbox.

    Args:
        sandbox: the sandbox to serve.
        host: interface to bind; the default (and the only one tests use) is 127.0.0.1.
        port: 0 picks a free ephemeral port; read the result from :attr:`port` / :attr:`url`.
    """

    def __init__(self, sandbox: Sandbox, *, host: str = LOCALHOST, port: int = 0) -> None:
        self.sandbox = sandbox
        self._httpd = _Server((host, port), sandbox)
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL to point an SDK at, e.g. ``http://127.0.0.1:53121``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> SandboxServer:
        """Serve in a background daemon thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                name=f"sandbox-{self.sandbox.name}-{self.port}", daemon=True,
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (the CLI's mode)."""
        try:
            self._httpd.serve_forever(poll_interval=0.2)
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop serving, release held (timed-out) requests and close every connection."""
        self._httpd.stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.close_all()
        self._httpd.server_close()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
