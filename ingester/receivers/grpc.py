"""gRPC receivers: OTLP ``TraceService/Export`` (4317) and Jaeger ``CollectorService/PostSpans`` (14250).

Generic handlers on raw bytes: no generated stubs, the message is converted by the same code as every
other receiver. gzip request compression is handled by gRPC itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from tracelake.errors import InvalidInputError
from tracelake.ingester import metrics
from tracelake.push import TENANT_HEADER, PushError, PushResult, SpanPusher, resolve_tenant

log = logging.getLogger(__name__)

_STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}

# (service, method) -> (convert request bytes to OTLP bytes, build the response bytes)
Method = tuple[Callable[[bytes], bytes], Callable[[PushResult], bytes]]


def _otlp_response(result: PushResult) -> bytes:
    response = ExportTraceServiceResponse()
    if result.rejected_spans:
        response.partial_success.rejected_spans = result.rejected_spans
        response.partial_success.error_message = result.message()
    return response.SerializeToString()


def _jaeger_convert(request: bytes) -> bytes:
    from tracelake.codec.jaeger import grpc_post_spans_to_otlp

    return grpc_post_spans_to_otlp(request).SerializeToString()


OTLP_SERVICE = ("opentelemetry.proto.collector.trace.v1.TraceService", "Export")
JAEGER_SERVICE = ("jaeger.api_v2.CollectorService", "PostSpans")
METHODS: dict[str, tuple[tuple[str, str], Method]] = {
    "otlp_grpc": (OTLP_SERVICE, (lambda request: request, _otlp_response)),
    "jaeger_grpc": (JAEGER_SERVICE, (_jaeger_convert, lambda result: b"")),
}


def build_server(
    name: str,
    endpoint: str,
    pusher: SpanPusher,
    executor: Executor,
    *,
    multitenancy_enabled: bool,
    max_message_bytes: int,
) -> grpc.aio.Server:
    (service, method_name), (convert, respond) = METHODS[name]

    def handle(request: bytes, tenant_header: str | None) -> bytes:
        tenant = resolve_tenant(tenant_header, multitenancy_enabled)
        try:
            otlp = convert(request)
        except InvalidInputError as exc:
            raise PushError(400, str(exc), reason="invalid_request") from exc
        return respond(pusher.push(tenant, otlp, protocol=name))

    async def call(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        tenant_header = dict(context.invocation_metadata() or ()).get(TENANT_HEADER.lower())
        try:
            response = await asyncio.get_running_loop().run_in_executor(
                executor, handle, request, tenant_header
            )
        except PushError as exc:
            metrics.receiver_requests.labels(name, exc.reason).inc()
            await context.abort(_STATUS.get(exc.status, grpc.StatusCode.INTERNAL), str(exc))
        except Exception:
            log.exception("receiver failed", extra={"receiver": name})
            metrics.receiver_requests.labels(name, "internal").inc()
            await context.abort(grpc.StatusCode.INTERNAL, "internal error; the request was not accepted")
        metrics.receiver_requests.labels(name, "ok").inc()
        return response

    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
    )
    handler = grpc.unary_unary_rpc_method_handler(call)  # no (de)serializers: raw bytes both ways
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, {method_name: handler}),))
    if server.add_insecure_port(endpoint) == 0:
        raise OSError(f"cannot listen on {endpoint} for {name}")
    return server
