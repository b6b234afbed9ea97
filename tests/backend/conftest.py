"""Real-HTTP helpers for the S3 error tests: a scripted stub/proxy server on 127.0.0.1.

The backend is exercised over real sockets (no in-process mocking of boto3 or pyarrow), so retries,
timeouts and error parsing are the ones a user gets.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest


@dataclass(frozen=True)
class Reply:
    """What the stub answers instead of forwarding."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (to provoke read timeouts)
    # Forward the request anyway and drop the real answer: a request that succeeded on the server
    # but whose response the client never saw.
    forward_first: bool = False


def s3_error(status: int, code: str, message: str) -> Reply:
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        "<RequestId>stub</RequestId></Error>"
    ).encode()
    return Reply(status=status, body=xml, headers={"Content-Type": "application/xml"})


# Decides the answer to the n-th request (0-based): a Reply, or None to forward upstream.
Script = Callable[[int, str, str], Reply | None]

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "expect"}


class HttpStub:
    """A threaded HTTP server that answers per ``script`` and forwards the rest to ``upstream``."""

    def __init__(self, script: Script, upstream: str | None = None) -> None:
        self.script = script
        self.upstream = urlsplit(upstream) if upstream else None
        self.requests: list[tuple[str, str]] = []
        self.replied: list[int] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with stub._lock:
                    index = len(stub.requests)
                    stub.requests.append((self.command, self.path))
                reply = stub.script(index, self.command, self.path)
                if reply is None:
                    reply = stub._forward(self.command, self.path, dict(self.headers), body)
                else:
                    stub.replied.append(index)
                    if reply.forward_first:
                        stub._forward(self.command, self.path, dict(self.headers), body)
                    if reply.delay and stub._released.wait(reply.delay):
                        return
                self.send_response(reply.status)
                length = str(len(reply.body))
                for name, value in reply.headers.items():
                    if name.lower() == "content-length":
                        # a forwarded HEAD has no body but must keep the object's length
                        length = value if self.command == "HEAD" else length
                    else:
                        self.send_header(name, value)
                self.send_header("Content-Length", length)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(reply.body)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        """Pass the request on unchanged (Host included, so SigV4 signatures stay valid)."""
        if self.upstream is None:
            return s3_error(500, "InternalError", "stub has no upstream")
        conn_cls = (
            http.client.HTTPSConnection if self.upstream.scheme == "https" else http.client.HTTPConnection
        )
        conn = conn_cls(self.upstream.netloc, timeout=30)
        try:
            sent = {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP | {"content-length"}}
            conn.request(method, path, body=body or None, headers=sent)
            response = conn.getresponse()
            data = response.read()
            kept = {k: v for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP}
            return Reply(status=response.status, body=data, headers=kept)
        finally:
            conn.close()

    def stop(self) -> None:
        self._released.set()
        self.server.shutdown()
        self.server.server_close()


class StubFactory:
    """What the ``http_stub`` fixture gives: start stubs, build replies (no imports from conftest)."""

    Reply = Reply
    s3_error = staticmethod(s3_error)

    def __init__(self) -> None:
        self.started: list[HttpStub] = []

    def start(self, script: Script, upstream: str | None = None) -> HttpStub:
        stub = HttpStub(script, upstream)
        self.started.append(stub)
        return stub


@pytest.fixture
def http_stub() -> Iterator[StubFactory]:
    """``http_stub.start(script, upstream=None)`` runs a stub on 127.0.0.1, stopped after the test."""
    factory = StubFactory()
    yield factory
    for stub in factory.started:
        stub.stop()
