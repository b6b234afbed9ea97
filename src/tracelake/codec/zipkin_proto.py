"""Message classes for Zipkin's ``zipkin.proto3`` wire format (``ListOfSpans``), built without protoc.

The descriptors are written here from the published field numbers (openzipkin/zipkin-api ``zipkin.proto``)
and registered in a private descriptor pool under the package ``tracelake.zipkin2``, so they can never clash
with another copy of the Zipkin schema loaded into the default pool. Only the field numbers and wire types
matter for decoding; the names are ours.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_PACKAGE = "tracelake.zipkin2"

_F = descriptor_pb2.FieldDescriptorProto
_OPTIONAL = _F.LABEL_OPTIONAL
_REPEATED = _F.LABEL_REPEATED


def _field(
    message: descriptor_pb2.DescriptorProto,
    name: str,
    number: int,
    type_: int,
    label: int = _OPTIONAL,
    type_name: str = "",
) -> None:
    field = message.field.add(name=name, number=number, type=type_, label=label)
    if type_name:
        field.type_name = f".{_PACKAGE}.{type_name}"


def _build_file() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(
        name="tracelake/zipkin2.proto", package=_PACKAGE, syntax="proto3"
    )

    endpoint = file.message_type.add(name="Endpoint")
    _field(endpoint, "service_name", 1, _F.TYPE_STRING)
    _field(endpoint, "ipv4", 2, _F.TYPE_BYTES)
    _field(endpoint, "ipv6", 3, _F.TYPE_BYTES)
    _field(endpoint, "port", 4, _F.TYPE_INT32)

    annotation = file.message_type.add(name="Annotation")
    _field(annotation, "timestamp", 1, _F.TYPE_FIXED64)
    _field(annotation, "value", 2, _F.TYPE_STRING)

    span = file.message_type.add(name="Span")
    kind = span.enum_type.add(name="Kind")
    for value_name, number in (
        ("SPAN_KIND_UNSPECIFIED", 0),
        ("CLIENT", 1),
        ("SERVER", 2),
        ("PRODUCER", 3),
        ("CONSUMER", 4),
    ):
        kind.value.add(name=value_name, number=number)
    tags_entry = span.nested_type.add(name="TagsEntry")
    tags_entry.options.map_entry = True
    _field(tags_entry, "key", 1, _F.TYPE_STRING)
    _field(tags_entry, "value", 2, _F.TYPE_STRING)

    _field(span, "trace_id", 1, _F.TYPE_BYTES)
    _field(span, "parent_id", 2, _F.TYPE_BYTES)
    _field(span, "id", 3, _F.TYPE_BYTES)
    _field(span, "kind", 4, _F.TYPE_ENUM, type_name="Span.Kind")
    _field(span, "name", 5, _F.TYPE_STRING)
    _field(span, "timestamp", 6, _F.TYPE_FIXED64)
    _field(span, "duration", 7, _F.TYPE_UINT64)
    _field(span, "local_endpoint", 8, _F.TYPE_MESSAGE, type_name="Endpoint")
    _field(span, "remote_endpoint", 9, _F.TYPE_MESSAGE, type_name="Endpoint")
    _field(span, "annotations", 10, _F.TYPE_MESSAGE, _REPEATED, "Annotation")
    _field(span, "tags", 11, _F.TYPE_MESSAGE, _REPEATED, "Span.TagsEntry")
    _field(span, "debug", 12, _F.TYPE_BOOL)
    _field(span, "shared", 13, _F.TYPE_BOOL)

    list_of_spans = file.message_type.add(name="ListOfSpans")
    _field(list_of_spans, "spans", 1, _F.TYPE_MESSAGE, _REPEATED, "Span")
    return file


_POOL = descriptor_pool.DescriptorPool()
_FILE = _POOL.Add(_build_file())


def _message_class(name: str) -> type:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{_PACKAGE}.{name}"))


Endpoint = _message_class("Endpoint")
Annotation = _message_class("Annotation")
Span = _message_class("Span")
ListOfSpans = _message_class("ListOfSpans")

# Zipkin proto3 Span.Kind numbers.
KIND_UNSPECIFIED = 0
KIND_CLIENT = 1
KIND_SERVER = 2
KIND_PRODUCER = 3
KIND_CONSUMER = 4
