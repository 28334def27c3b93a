"""A reverse proxy on 127.0.0.1 that can answer for the server behind it, like a gateway does.

Put in front of the Steady mock of Stripe's spec, it forwards every request unchanged, except
that queued faults answer first: a status, headers and a body in any shape (an HTML page,
``{"error": "..."}``, plain text, nothing), which is what a load balancer or API gateway in
front of Stripe sends when Stripe (or the gateway) is busy or down.
"""

from __future__ import annotations

import http.client
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Answer:
    status: int
    body: str = ""
    content_type: str = "text/plain"
    headers: dict[str, str] = field(default_factory=dict)


class FaultProxy:
    """``FaultProxy(upstream_url)``: ``.url`` forwards to ``upstream_url``; ``.fail(Answer, times=n)``."""

    def __init__(self, upstream: str) -> None:
        target = urlsplit(upstream)
        self.upstream = (target.hostname or "127.0.0.1", target.port or 80)
        self.faults: deque[Answer] = deque()
        self.served: list[tuple[str, str, int]] = []  # (method, path, status) of every answer
        self.fired = 0  # faults answered
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy._lock:
                    fault = proxy.faults.popleft() if proxy.faults else None
                if fault is not None:
                    with proxy._lock:
                        proxy.fired += 1
                    self._send(fault.status, {"Content-Type": fault.content_type, **fault.headers},
                               fault.body.encode())
                    return
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    answer = conn.getresponse()
                    data = answer.read()
                    self._send(answer.status, {k: v for k, v in answer.getheaders()
                                               if k.lower() not in ("transfer-encoding", "connection",
                                                                    "content-length")}, data)
                finally:
                    conn.close()

            def _send(self, status: int, headers: dict[str, str], data: bytes) -> None:
                proxy.served.append((self.command, self.path.split("?")[0], status))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def fail(self, answer: Answer, *, times: int = 1) -> None:
        with self._lock:
            self.faults.extend([answer] * times)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
