"""The few ASGI pieces every HTTP server of tracelake shares (receivers, the query API).

Plain ASGI rather than a framework: these paths are hot, and a request/response pair of dataclasses
is all the routing they need.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tracelake import __version__

Send = Callable[[dict], Awaitable[None]]
Receive = Callable[[], Awaitable[dict]]


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes = b""
    query: dict[str, str] = field(default_factory=dict)  # first value of each parameter

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    @classmethod
    def from_scope(cls, scope: dict, body: bytes = b"") -> Request:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        raw_query = scope.get("query_string", b"").decode("latin-1")
        query = {k: v[0] for k, v in parse_qs(raw_query, keep_blank_values=True).items()}
        return cls(scope["method"], scope["path"], headers, body, query)


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


async def send_response(send: Send, response: Response) -> None:
    headers = [
        (b"content-type", response.content_type.encode()),
        (b"content-length", str(len(response.body)).encode()),
    ]
    headers += [(k.encode(), v.encode()) for k, v in response.headers]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


async def lifespan(receive: Receive, send: Send) -> None:
    """Answer the lifespan protocol (nothing to set up: services start before their servers)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


GZIP_MIN_BYTES = 1024
_COMPRESSIBLE = ("application/json", "application/protobuf", "text/")


def gzip_if_accepted(request: Request, response: Response) -> Response:
    """Tempo answers gzip to clients that accept it (Grafana does): a trace's JSON shrinks ~10x.
    Level 1: most of the gain for a fraction of the CPU."""
    accepted = request.headers.get("accept-encoding", "")
    if (
        len(response.body) < GZIP_MIN_BYTES
        or "gzip" not in accepted
        or not response.content_type.startswith(_COMPRESSIBLE)
        or any(k.lower() == "content-encoding" for k, _ in response.headers)
    ):
        return response
    body = gzip.compress(response.body, compresslevel=1, mtime=0)
    headers = (*response.headers, ("content-encoding", "gzip"), ("vary", "Accept-Encoding"))
    return Response(response.status, body, response.content_type, headers)


def status_response(path: str) -> Response | None:
    """What every tracelake HTTP server answers alike: ``/metrics``, ``/api/echo`` and build info
    (Tempo's keys; our own version, semver so Grafana's feature checks work)."""
    if path == "/metrics":
        return Response(200, generate_latest(), CONTENT_TYPE_LATEST)
    if path == "/api/echo":
        return Response(200, b"echo")
    if path in ("/api/status/buildinfo", "/status/buildinfo"):
        info = {
            "version": __version__,
            "revision": "",
            "branch": "",
            "buildUser": "",
            "buildDate": "",
            "goVersion": "",
        }
        return Response(200, json.dumps(info).encode(), "application/json")
    return None
