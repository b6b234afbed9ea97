"""Talking to ``tracelake serve`` in tests: raw HTTP and gRPC requests, and what the server stored."""

from __future__ import annotations

import http.client
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from tests.server.harness import Server

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def rpc_status(self) -> Status:
        """The ``google.rpc.Status`` error body, in the encoding the Content-Type says."""
        content_type = self.headers.get("content-type", "")
        if content_type == "application/json":
            document = json.loads(self.body)
            assert set(document) == {"code", "message"}, document
            return Status(code=document["code"], message=document["message"])
        assert content_type == "application/x-protobuf", content_type
        return Status.FromString(self.body)

    def export_response(self) -> ExportTraceServiceResponse:
        assert self.status == 200, (self.status, self.body)
        if self.headers.get("content-type") == "application/json":
            document = json.loads(self.body or b"{}")
            response = ExportTraceServiceResponse()
            partial = document.get("partialSuccess", {})
            response.partial_success.rejected_spans = int(partial.get("rejectedSpans", 0))
            response.partial_success.error_message = partial.get("errorMessage", "")
            return response
        return ExportTraceServiceResponse.FromString(self.body)


def send(
    server: Server,
    body: bytes | Iterator[bytes] = b"",
    headers: dict[str, str] | None = None,
    *,
    method: str = "POST",
    path: str = "/v1/traces",
) -> Reply:
    """One HTTP request to the OTLP/HTTP receiver; an iterator body goes out chunked (no Content-Length)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.ports["otlp_http"], timeout=30)
    try:
        conn.request(method, path, body, headers or {}, encode_chunked=not isinstance(body, bytes))
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def export_grpc(server: Server, body: bytes, tenant: str | None = None) -> bytes:
    """One raw-bytes OTLP/gRPC Export call; raises ``grpc.RpcError`` on refusal."""
    with grpc.insecure_channel(f"127.0.0.1:{server.ports['otlp_grpc']}") as channel:
        metadata = (("x-scope-orgid", tenant),) if tenant else None
        return channel.unary_unary(EXPORT)(body, timeout=30, metadata=metadata)


def grpc_error(server: Server, body: bytes, tenant: str | None = None) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        export_grpc(server, body, tenant)
    return info.value


def stored(server: Server, tenant: str = "single-tenant") -> Counter[tuple[bytes, bytes]]:
    """(trace id, span id) of every span in the backend's blocks of ``tenant``, with counts."""
    spans = server.stored_spans(tenant)
    return Counter(zip(spans["trace_id"].to_pylist(), spans["span_id"].to_pylist(), strict=True))


def requests_total(server: Server, receiver: str, outcome: str) -> float:
    return server.metric("tracelake_receiver_requests_total", receiver=receiver, outcome=outcome)


def post(
    server: Server, body: bytes, tenant: str | None = None, content_type: str = "application/x-protobuf"
) -> Reply:
    """One OTLP/HTTP request with a Content-Type and, optionally, a tenant."""
    headers = {"Content-Type": content_type}
    if tenant is not None:
        headers["X-Scope-OrgID"] = tenant
    return send(server, body, headers)
