"""Jaeger thrift over HTTP on 14268: ``POST /api/traces`` with a binary-thrift ``Batch``; 202 on success."""

from __future__ import annotations

from tracelake.ingester.receivers.http import Request, Route, plain_answer
from tracelake.push import PushError

_THRIFT = ("application/x-thrift", "application/vnd.apache.thrift.binary")


def convert(request: Request) -> bytes:
    from tracelake.codec.jaeger import thrift_batch_to_otlp

    if request.content_type not in _THRIFT:
        raise PushError(
            415,
            f"unsupported Content-Type {request.content_type or '(none)'!r}: use application/x-thrift",
            reason="bad_content_type",
        )
    return thrift_batch_to_otlp(request.body).SerializeToString()


ROUTES = {"/api/traces": Route(convert, plain_answer(202))}
