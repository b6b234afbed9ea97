"""Jaeger's gRPC model (jaeger-idl proto/api_v2 model.proto and collector.proto), built without protoc.

The descriptors are assembled in Python (``FileDescriptorProto``) in a private pool under the package
``tracelake.jaeger.api_v2``, so they can never clash with another copy of Jaeger's protos in the
process. They are wire-compatible with, but not identical to, the real ones, on purpose:

* string fields are declared ``bytes``: Jaeger's gogoproto code accepts invalid UTF-8 while upb refuses
  the whole message, so we take the bytes and decode them leniently ourselves;
* enums are declared ``int32`` (same varint encoding), so unknown enum values reach the translator,
  which maps them the way the collector does.

Field numbers (model.proto / collector.proto):
    KeyValue{1 key, 2 v_type, 3 v_str, 4 v_bool, 5 v_int64, 6 v_float64, 7 v_binary}
    Log{1 timestamp, 2 fields}
    SpanRef{1 trace_id, 2 span_id, 3 ref_type}
    Process{1 service_name, 2 tags}
    Span{1 trace_id, 2 span_id, 3 operation_name, 4 references, 5 flags, 6 start_time, 7 duration,
         8 tags, 9 logs, 10 process, 11 process_id, 12 warnings}
    Batch{1 spans, 2 process}
    PostSpansRequest{1 batch}
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, duration_pb2, message_factory, timestamp_pb2
from google.protobuf.message import DecodeError

from tracelake.errors import InvalidInputError

PACKAGE = "tracelake.jaeger.api_v2"

# ValueType
VALUE_STRING = 0
VALUE_BOOL = 1
VALUE_INT64 = 2
VALUE_FLOAT64 = 3
VALUE_BINARY = 4

_F = descriptor_pb2.FieldDescriptorProto
_OPTIONAL = _F.LABEL_OPTIONAL
_REPEATED = _F.LABEL_REPEATED

_MESSAGES: dict[str, list[tuple[str, int, int, str | None, int]]] = {
    # name: [(field, number, type, message type name or None, label)]
    "KeyValue": [
        ("key", 1, _F.TYPE_BYTES, None, _OPTIONAL),
        ("v_type", 2, _F.TYPE_INT32, None, _OPTIONAL),
        ("v_str", 3, _F.TYPE_BYTES, None, _OPTIONAL),
        ("v_bool", 4, _F.TYPE_BOOL, None, _OPTIONAL),
        ("v_int64", 5, _F.TYPE_INT64, None, _OPTIONAL),
        ("v_float64", 6, _F.TYPE_DOUBLE, None, _OPTIONAL),
        ("v_binary", 7, _F.TYPE_BYTES, None, _OPTIONAL),
    ],
    "Log": [
        ("timestamp", 1, _F.TYPE_MESSAGE, ".google.protobuf.Timestamp", _OPTIONAL),
        ("fields", 2, _F.TYPE_MESSAGE, "KeyValue", _REPEATED),
    ],
    "SpanRef": [
        ("trace_id", 1, _F.TYPE_BYTES, None, _OPTIONAL),
        ("span_id", 2, _F.TYPE_BYTES, None, _OPTIONAL),
        ("ref_type", 3, _F.TYPE_INT32, None, _OPTIONAL),
    ],
    "Process": [
        ("service_name", 1, _F.TYPE_BYTES, None, _OPTIONAL),
        ("tags", 2, _F.TYPE_MESSAGE, "KeyValue", _REPEATED),
    ],
    "Span": [
        ("trace_id", 1, _F.TYPE_BYTES, None, _OPTIONAL),
        ("span_id", 2, _F.TYPE_BYTES, None, _OPTIONAL),
        ("operation_name", 3, _F.TYPE_BYTES, None, _OPTIONAL),
        ("references", 4, _F.TYPE_MESSAGE, "SpanRef", _REPEATED),
        ("flags", 5, _F.TYPE_UINT32, None, _OPTIONAL),
        ("start_time", 6, _F.TYPE_MESSAGE, ".google.protobuf.Timestamp", _OPTIONAL),
        ("duration", 7, _F.TYPE_MESSAGE, ".google.protobuf.Duration", _OPTIONAL),
        ("tags", 8, _F.TYPE_MESSAGE, "KeyValue", _REPEATED),
        ("logs", 9, _F.TYPE_MESSAGE, "Log", _REPEATED),
        ("process", 10, _F.TYPE_MESSAGE, "Process", _OPTIONAL),
        ("process_id", 11, _F.TYPE_BYTES, None, _OPTIONAL),
        ("warnings", 12, _F.TYPE_BYTES, None, _REPEATED),
    ],
    "Batch": [
        ("spans", 1, _F.TYPE_MESSAGE, "Span", _REPEATED),
        ("process", 2, _F.TYPE_MESSAGE, "Process", _OPTIONAL),
    ],
    "PostSpansRequest": [
        ("batch", 1, _F.TYPE_MESSAGE, "Batch", _OPTIONAL),
    ],
}


def _build_classes() -> dict[str, Any]:
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    pool.AddSerializedFile(duration_pb2.DESCRIPTOR.serialized_pb)
    fdp = descriptor_pb2.FileDescriptorProto(
        name="tracelake/jaeger/api_v2.proto",
        package=PACKAGE,
        syntax="proto3",
        dependency=["google/protobuf/timestamp.proto", "google/protobuf/duration.proto"],
    )
    for msg_name, fields in _MESSAGES.items():
        msg = fdp.message_type.add(name=msg_name)
        for name, number, ftype, type_name, label in fields:
            field = msg.field.add(name=name, number=number, type=ftype, label=label)
            if type_name is not None:
                field.type_name = type_name if type_name.startswith(".") else f".{PACKAGE}.{type_name}"
    pool.Add(fdp)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))
        for name in _MESSAGES
    }


_CLASSES = _build_classes()
KeyValue: Any = _CLASSES["KeyValue"]
Log: Any = _CLASSES["Log"]
SpanRef: Any = _CLASSES["SpanRef"]
Process: Any = _CLASSES["Process"]
Span: Any = _CLASSES["Span"]
Batch: Any = _CLASSES["Batch"]
PostSpansRequest: Any = _CLASSES["PostSpansRequest"]


def parse_post_spans_request(data: bytes) -> Any:
    """Parse a serialized ``PostSpansRequest`` (the gRPC message, without its 5-byte frame)."""
    request = PostSpansRequest()
    try:
        request.ParseFromString(bytes(data))
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise InvalidInputError(f"undecodable jaeger PostSpansRequest protobuf: {exc}") from exc
    return request
