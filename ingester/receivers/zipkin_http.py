"""Zipkin on 9411: `POST /api/v2/spans` (JSON or protobuf), `POST /api/v1/spans` (JSON); 202 on success."""

from __future__ import annotations

from tracelake.ingester.receivers.http import Request, Route, plain_answer
from tracelake.push import PushError

_PROTOBUF = ("application/x-protobuf", "application/protobuf")


def _unsupported(request: Request) -> PushError:
    return PushError(
        415,
        f"unsupported Content-Type {request.content_type or '(none)'!r} for {request.path}",
        reason="bad_content_type",
    )


def convert_v2(request: Request) -> bytes:
    from tracelake.codec.zipkin import zipkin_v2_json_to_otlp, zipkin_v2_proto_to_otlp

    if request.content_type in _PROTOBUF:
        return zipkin_v2_proto_to_otlp(request.body).SerializeToString()
    if request.content_type in ("application/json", "text/plain", ""):
        return zipkin_v2_json_to_otlp(request.body).SerializeToString()
    raise _unsupported(request)


def convert_v1(request: Request) -> bytes:
    from tracelake.codec.zipkin import zipkin_v1_json_to_otlp

    if request.content_type in ("application/json", "text/plain", ""):
        return zipkin_v1_json_to_otlp(request.body).SerializeToString()
    raise _unsupported(request)


ROUTES = {
    "/api/v2/spans": Route(convert_v2, plain_answer(202)),
    "/api/v1/spans": Route(convert_v1, plain_answer(202)),
}
