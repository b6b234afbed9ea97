"""OTLP/HTTP: ``POST /v1/traces`` with protobuf or JSON bodies, answered as the OTLP spec says.

Success is 200 with an ``ExportTraceServiceResponse`` (``partial_success`` when spans were refused);
failures carry a ``google.rpc.Status`` (400 undecodable, 401 no tenant, 413 too large, 415 wrong type,
429 with Retry-After, 503 unavailable), in the request's encoding.
"""

from __future__ import annotations

import json

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from tracelake.errors import InvalidInputError
from tracelake.ingester.receivers.http import Request, Response, Route, retry_headers
from tracelake.otlp import otlp_json_to_request
from tracelake.otlp.wire import encode_varint, len_field
from tracelake.push import PushError, PushResult

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_GRPC_CODE = {400: 3, 401: 16, 403: 7, 404: 5, 413: 8, 415: 3, 429: 8, 500: 13, 503: 14}


def convert(request: Request) -> bytes:
    if request.content_type in (PROTOBUF, "application/protobuf"):
        return request.body
    if request.content_type == JSON:
        # RecursionError: deep nesting is the client's fault (400), not an internal error (500).
        try:
            document = json.loads(request.body)
        except RecursionError:
            raise InvalidInputError("body is JSON nested too deeply") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"body is not valid JSON: {exc}") from exc
        try:
            return otlp_json_to_request(document).SerializeToString()
        except RecursionError:
            raise InvalidInputError("OTLP JSON nested too deeply") from None
    raise PushError(
        415,
        f"unsupported Content-Type {request.content_type or '(none)'!r}: use {PROTOBUF} or {JSON}",
        reason="bad_content_type",
    )


def status_body(code: int, message: str, as_json: bool) -> bytes:
    """A ``google.rpc.Status`` (code, message): OTLP's error body."""
    if as_json:
        return json.dumps({"code": code, "message": message}).encode()
    return encode_varint(1 << 3) + encode_varint(code) + len_field(2, message.encode())


def answer(request: Request, result: PushResult | None, error: PushError | None) -> Response:
    as_json = request.content_type == JSON
    content_type = JSON if as_json else PROTOBUF
    if error is not None:
        body = status_body(_GRPC_CODE.get(error.status, 2), str(error), as_json)
        return Response(error.status, body, content_type, retry_headers(error))
    response = ExportTraceServiceResponse()
    if result is not None and result.rejected_spans:
        response.partial_success.rejected_spans = result.rejected_spans
        response.partial_success.error_message = result.message()
    if as_json:
        body = json_format.MessageToJson(response, indent=None).encode()
    else:
        body = response.SerializeToString()
    return Response(200, body, content_type)


ROUTES = {"/v1/traces": Route(convert, answer)}
