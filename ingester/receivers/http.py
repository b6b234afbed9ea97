"""A small ASGI app shared by the HTTP receivers (OTLP/HTTP, Zipkin, Jaeger thrift over HTTP).

Plain ASGI rather than a framework: a receiver's hot path is read body, convert, push, answer, and
every microsecond of routing is paid per request. Pushing runs in a thread pool (decoding releases
the GIL) so the event loop keeps accepting while spans are decoded and written to the WAL.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

from tracelake.asgi import Receive, Request, Response, Send
from tracelake.asgi import lifespan as _lifespan
from tracelake.asgi import send_response as _send
from tracelake.errors import InvalidInputError
from tracelake.ingester import metrics
from tracelake.push import TENANT_HEADER, PushError, PushResult, SpanPusher, resolve_tenant

log = logging.getLogger(__name__)


# A route turns a request into OTLP bytes (raising InvalidInputError/PushError) and builds the answer.
Convert = Callable[[Request], bytes]
Answer = Callable[[Request, PushResult | None, PushError | None], Response]


@dataclass
class Route:
    convert: Convert
    answer: Answer


class HTTPReceiver:
    def __init__(
        self,
        name: str,
        routes: dict[str, Route],
        pusher: SpanPusher,
        executor: Executor,
        *,
        multitenancy_enabled: bool,
        max_body_bytes: int,
    ) -> None:
        self.name = name
        self.routes = routes
        self.pusher = pusher
        self.executor = executor
        self.multitenancy_enabled = multitenancy_enabled
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        route = self.routes.get(scope["path"])
        if route is None:
            await _send(
                send, Response(404, f"no such path {scope['path']}; try {', '.join(self.routes)}\n".encode())
            )
            return
        if scope["method"] != "POST":
            await _send(send, Response(405, b"only POST is accepted\n", headers=(("allow", "POST"),)))
            return
        headers = Request.from_scope(scope).headers
        declared = headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._refuse(send, route, headers, scope["path"], self._too_large(int(declared)))
            return
        try:
            body = await _read_body(receive, self.max_body_bytes)
        except PushError as exc:
            await self._refuse(send, route, headers, scope["path"], exc)
            return
        request = Request.from_scope(scope, body)
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self.executor, self._handle, route, request)
            response = route.answer(request, result, None)
            metrics.receiver_requests.labels(self.name, "ok").inc()
        except PushError as exc:
            response = route.answer(request, None, exc)
            metrics.receiver_requests.labels(self.name, exc.reason).inc()
        except Exception:
            log.exception("receiver failed", extra={"receiver": self.name})
            error = PushError(500, "internal error; the request was not accepted", reason="internal")
            response = route.answer(request, None, error)
            metrics.receiver_requests.labels(self.name, "internal").inc()
        await _send(send, response)

    def _too_large(self, size: int) -> PushError:
        return PushError(
            413,
            f"body of {size} bytes exceeds the limit of {self.max_body_bytes} bytes",
            reason="request_too_large",
        )

    async def _refuse(
        self, send: Send, route: Route, headers: dict[str, str], path: str, error: PushError
    ) -> None:
        metrics.receiver_requests.labels(self.name, error.reason).inc()
        await _send(send, route.answer(Request("POST", path, headers, b""), None, error))

    def _handle(self, route: Route, request: Request) -> PushResult:
        tenant = resolve_tenant(request.headers.get(TENANT_HEADER.lower()), self.multitenancy_enabled)
        request.body = decompress(request, self.max_body_bytes)
        try:
            otlp = route.convert(request)
        except InvalidInputError as exc:
            raise PushError(400, str(exc), reason="invalid_request") from exc
        return self.pusher.push(tenant, otlp, protocol=self.name)


def decompress(request: Request, limit: int) -> bytes:
    """The body without its Content-Encoding (gzip, deflate), refusing to inflate past ``limit``."""
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return request.body
    if encoding not in ("gzip", "deflate"):
        raise PushError(
            415, f"unsupported Content-Encoding {encoding!r} (use gzip or none)", reason="bad_encoding"
        )
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(request.body, limit + 1)
    except zlib.error as exc:
        raise PushError(400, f"body is not valid {encoding}: {exc}", reason="invalid_request") from exc
    if len(out) > limit or inflater.unconsumed_tail:
        raise PushError(
            413, f"decompressed body exceeds the limit of {limit} bytes", reason="request_too_large"
        )
    if not inflater.eof:
        raise PushError(400, f"body is truncated {encoding}", reason="invalid_request")
    return out


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise PushError(400, "client disconnected", reason="disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PushError(413, f"body exceeds the limit of {limit} bytes", reason="request_too_large")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def retry_headers(error: PushError) -> tuple[tuple[str, str], ...]:
    return (("retry-after", str(int(error.retry_after))),) if error.retry_after else ()


def plain_answer(success_status: int = 202) -> Answer:
    """Zipkin's and Jaeger's style: an empty success, a text error."""

    def answer(request: Request, result: PushResult | None, error: PushError | None) -> Response:
        if error is not None:
            return Response(error.status, (str(error) + "\n").encode(), headers=retry_headers(error))
        return Response(success_status)

    return answer
