"""Jaeger receivers' codecs: thrift (HTTP :14268, UDP agent :6831/:6832) and gRPC api_v2 (:14250) -> OTLP.

Each entry point is a pure function from the bytes a Jaeger client sent to an OTLP
``ExportTraceServiceRequest``; anything malformed raises ``InvalidInputError``. The mapping follows the
OpenTelemetry Collector's jaeger translator, which is what Tempo runs (see :mod:`.translate`).
"""

from tracelake.codec.jaeger.translate import (
    agent_datagram_to_otlp,
    grpc_post_spans_to_otlp,
    proto_batch_to_otlp,
    thrift_batch_to_otlp,
    thrift_model_to_otlp,
)

__all__ = [
    "agent_datagram_to_otlp",
    "grpc_post_spans_to_otlp",
    "proto_batch_to_otlp",
    "thrift_batch_to_otlp",
    "thrift_model_to_otlp",
]
