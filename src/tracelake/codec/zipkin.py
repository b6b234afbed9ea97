"""Zipkin request bodies -> OTLP ``ExportTraceServiceRequest``, so Zipkin clients can push to tracelake.

Three entry points, one per body format Tempo's Zipkin receiver accepts:

* ``zipkin_v2_json_to_otlp``  -- ``POST /api/v2/spans``, ``application/json`` (a JSON list of v2 spans)
* ``zipkin_v2_proto_to_otlp`` -- ``POST /api/v2/spans``, ``application/x-protobuf`` (``zipkin.proto3``
  ``ListOfSpans``)
* ``zipkin_v1_json_to_otlp``  -- ``POST /api/v1/spans``, ``application/json`` (v1 model: annotations and
  binaryAnnotations)

The mapping follows the OpenTelemetry Collector's Zipkin receiver, because that is what Tempo 2.7.2 runs
(opentelemetry-collector-contrib ``pkg/translator/zipkin``: ``zipkinv2/to_translator.go``,
``zipkinv1/json.go``, ``zipkinv1/status_code.go``; zipkin-go ``model`` and ``proto/zipkin_proto3`` for the
decoding it relies on). Rules implemented:

v2 (JSON and protobuf)
  * ids: hex (JSON) or big-endian bytes (proto), left-padded with zeros -- a 64-bit trace id becomes 16
    bytes ``00..00<id>`` (design.md §4); a missing or all-zero ``parentId``, or one equal to ``id``, gives
    an empty ``parent_span_id``.
  * resource: ``localEndpoint.serviceName`` -> ``service.name`` (or the key named by the
    ``otlp.service.name.source`` tag); tags whose key is a resource semantic-convention name (semconv
    1.6.1 list: ``service.*``, ``telemetry.sdk.*``, ``host.*``, ``k8s.*``, ...) plus ``opencensus.starttime``
    / ``opencensus.exporterversion`` / ``opencensus.resourcetype`` move to the resource (a ``service.name``
    tag wins over the endpoint, as in the collector). One ``ResourceSpans`` per distinct resource.
  * scope: ``otel.scope.name``/``otel.scope.version`` (newer SDKs), else ``otel.library.name``/
    ``otel.library.version`` -> ``InstrumentationScope``; all four are removed from the attributes. One
    ``ScopeSpans`` per distinct scope within a resource.
  * kind: CLIENT/SERVER/PRODUCER/CONSUMER map across; otherwise a ``span.kind`` tag is removed and, when
    it says ``internal``, gives INTERNAL; anything else is UNSPECIFIED.
  * status: ``otel.status_code`` (``STATUS_CODE_*`` or ``Unset``/``Ok``/``Error``; other values -> UNSET)
    and ``otel.status_description`` set the status and are removed; an ``error`` tag with any value then
    forces ERROR and is removed only when it is ``"true"`` (so the message stays empty -- what Tempo shows).
  * ``w3c.tracestate`` tag -> ``trace_state`` (removed).
  * attributes: every remaining tag as a string; then endpoints: local ipv4/ipv6 -> ``net.host.ip``,
    local port > 0 -> ``net.host.port`` (int), remote serviceName -> ``peer.service``, remote ipv4/ipv6 ->
    ``net.peer.ip``, remote port > 0 -> ``net.peer.port`` (int); ipv6 wins over ipv4.
  * time: start = timestamp µs * 1000, end = (timestamp + duration) * 1000. A JSON span without a
    timestamp gets start 0, end = duration, and ``otel.zipkin.absentField.startTime = true``; a protobuf
    span with timestamp 0 just gets start 0 (zipkin-go's proto decoder turns 0 into the Unix epoch, which
    the collector does not treat as absent).
  * events: one per annotation at its timestamp, named by its value; a value in the collector's own
    ``name|{json attributes}|dropped count`` encoding is unpacked into name, attributes and
    dropped_attributes_count.
  * links: none; ``debug`` and ``shared`` are not recorded (the collector drops them too).

v1 JSON
  * kind from the first core annotation: cs/cr -> CLIENT, sr/ss -> SERVER, ms -> PRODUCER, mr -> CONSUMER;
    core annotations are not turned into events, every other annotation is (name = value).
  * resource: the endpoint of the first core annotation that has a serviceName -> ``service.name`` plus
    ``ipv4``/``ipv6``/``port`` (strings) when present; failing that, the serviceName of the last binary
    annotation endpoint, then the ``lc`` value, then ``unknown-service``. One resource per endpoint; one
    empty scope.
  * binary annotations -> string attributes (``lc`` is renamed ``component``); status from, in priority:
    ``census.status_code`` (0 -> OK, else ERROR), integer ``otel.status_code`` (with
    ``otel.status_description``), ``error`` (-> ERROR, message from the census/otel description),
    ``http.status_code`` (100-399 -> UNSET, else ERROR, message from ``http.status_message``). The
    census/otel status tags and ``error`` are removed.
  * time: the span's timestamp/duration when timestamp != 0, else the earliest and latest annotation
    timestamps; with neither, start = end = now and ``otel.zipkin.absentField.startTime = true``.

Deliberate differences from the collector: output order is first-seen rather than sorted by service; the
grouping key is the whole resource (service name *and* resource tags), not the service name alone, and
resource tags on spans without a service name move to the resource instead of being dropped; an annotation
value that merely contains ``|`` keeps its full text as the event name (the collector truncates it or fails
the request); ``otel.scope.*`` tags are read as well as ``otel.library.*``; v1 binary annotation values that
are JSON booleans or numbers are accepted as strings (the collector rejects the body); ids are accepted at
any hex length up to 32/16 characters and zero ids are left for the caller's OTLP id validation.
"""

from __future__ import annotations

import ipaddress
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from tracelake.codec import zipkin_proto
from tracelake.errors import InvalidInputError
from tracelake.otlp.builder import scope_spans_for

__all__ = ["zipkin_v1_json_to_otlp", "zipkin_v2_json_to_otlp", "zipkin_v2_proto_to_otlp"]

_MAX_U64 = (1 << 64) - 1
_MAX_I64 = (1 << 63) - 1
_HEX = re.compile(r"[0-9a-fA-F]+")
_DECIMAL = re.compile(r"[+-]?[0-9]+")

# Attribute keys the collector's translators read or write.
_ABSENT_START = "otel.zipkin.absentField.startTime"
_SERVICE_NAME_SOURCE = "otlp.service.name.source"
_TRACE_STATE = "w3c.tracestate"
_SPAN_KIND_TAG = "span.kind"
_SCOPE_NAME_KEYS = ("otel.scope.name", "otel.library.name")
_SCOPE_VERSION_KEYS = ("otel.scope.version", "otel.library.version")

# Resource attribute names of semantic conventions v1.6.1 (the collector's
# GetResourceSemanticConventionAttributeNames) plus the OpenCensus leftovers it also treats as resource keys.
_RESOURCE_KEYS = frozenset(
    {
        "cloud.provider",
        "cloud.account.id",
        "cloud.region",
        "cloud.availability_zone",
        "cloud.platform",
        "aws.ecs.container.arn",
        "aws.ecs.cluster.arn",
        "aws.ecs.launchtype",
        "aws.ecs.task.arn",
        "aws.ecs.task.family",
        "aws.ecs.task.revision",
        "aws.eks.cluster.arn",
        "aws.log.group.names",
        "aws.log.group.arns",
        "aws.log.stream.names",
        "aws.log.stream.arns",
        "container.name",
        "container.id",
        "container.runtime",
        "container.image.name",
        "container.image.tag",
        "deployment.environment",
        "device.id",
        "device.model.identifier",
        "device.model.name",
        "faas.name",
        "faas.id",
        "faas.version",
        "faas.instance",
        "faas.max_memory",
        "host.id",
        "host.name",
        "host.type",
        "host.arch",
        "host.image.name",
        "host.image.id",
        "host.image.version",
        "k8s.cluster.name",
        "k8s.node.name",
        "k8s.node.uid",
        "k8s.namespace.name",
        "k8s.pod.uid",
        "k8s.pod.name",
        "k8s.container.name",
        "k8s.replicaset.uid",
        "k8s.replicaset.name",
        "k8s.deployment.uid",
        "k8s.deployment.name",
        "k8s.statefulset.uid",
        "k8s.statefulset.name",
        "k8s.daemonset.uid",
        "k8s.daemonset.name",
        "k8s.job.uid",
        "k8s.job.name",
        "k8s.cronjob.uid",
        "k8s.cronjob.name",
        "os.type",
        "os.description",
        "os.name",
        "os.version",
        "process.pid",
        "process.executable.name",
        "process.executable.path",
        "process.command",
        "process.command_line",
        "process.command_args",
        "process.owner",
        "process.runtime.name",
        "process.runtime.version",
        "process.runtime.description",
        "service.name",
        "service.namespace",
        "service.instance.id",
        "service.version",
        "telemetry.sdk.name",
        "telemetry.sdk.language",
        "telemetry.sdk.version",
        "telemetry.auto.version",
        "webengine.name",
        "webengine.version",
        "webengine.description",
        "opencensus.starttime",
        "opencensus.exporterversion",
        "opencensus.resourcetype",
    }
)

_V2_KIND = {
    "CLIENT": Span.SPAN_KIND_CLIENT,
    "SERVER": Span.SPAN_KIND_SERVER,
    "PRODUCER": Span.SPAN_KIND_PRODUCER,
    "CONSUMER": Span.SPAN_KIND_CONSUMER,
}
_PROTO_KIND = {
    zipkin_proto.KIND_CLIENT: Span.SPAN_KIND_CLIENT,
    zipkin_proto.KIND_SERVER: Span.SPAN_KIND_SERVER,
    zipkin_proto.KIND_PRODUCER: Span.SPAN_KIND_PRODUCER,
    zipkin_proto.KIND_CONSUMER: Span.SPAN_KIND_CONSUMER,
}
_V1_CORE_KIND = {
    "cs": Span.SPAN_KIND_CLIENT,
    "cr": Span.SPAN_KIND_CLIENT,
    "ms": Span.SPAN_KIND_PRODUCER,
    "mr": Span.SPAN_KIND_CONSUMER,
    "ss": Span.SPAN_KIND_SERVER,
    "sr": Span.SPAN_KIND_SERVER,
}
_OTEL_STATUS_CODE = {
    "STATUS_CODE_UNSET": Status.STATUS_CODE_UNSET,
    "STATUS_CODE_OK": Status.STATUS_CODE_OK,
    "STATUS_CODE_ERROR": Status.STATUS_CODE_ERROR,
    "Unset": Status.STATUS_CODE_UNSET,
    "Ok": Status.STATUS_CODE_OK,
    "Error": Status.STATUS_CODE_ERROR,
}
_V1_UNKNOWN_SERVICE = "unknown-service"


# ---------------------------------------------------------------------------------------------------------
# Small shared helpers


def _show(value: Any) -> str:
    """A short, quoted rendering of a bad input value for an error message."""
    text = value if isinstance(value, str) else json.dumps(value) if _jsonable(value) else repr(value)
    if len(text) > 64:
        text = text[:61] + "..."
    return f'"{text}"'


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _hex_id(value: Any, name: str, size: int, where: str) -> bytes:
    """Hex id -> ``size`` bytes, left-padded with zeros (Zipkin pads short ids the same way)."""
    if not isinstance(value, str):
        raise InvalidInputError(f"{where}: {name} must be a hex string, got {_show(value)}")
    if not value:
        raise InvalidInputError(f"{where}: {name} is empty")
    if not _HEX.fullmatch(value):
        raise InvalidInputError(f"{where}: {name} {_show(value)} is not hex")
    if len(value) > size * 2:
        raise InvalidInputError(f"{where}: {name} {_show(value)} is longer than {size * 2} hex characters")
    return bytes.fromhex(value.rjust(size * 2, "0"))


def _bytes_id(value: bytes, name: str, size: int, where: str) -> bytes:
    if len(value) > size:
        raise InvalidInputError(f"{where}: {name} is {len(value)} bytes, at most {size} expected")
    return value.rjust(size, b"\0")


def _parent(parent: bytes, span_id: bytes) -> bytes:
    """Zero or self-referencing parents mean "root" in Zipkin."""
    if not parent.strip(b"\0") or parent == span_id:
        return b""
    return parent


def _int(value: Any, name: str, where: str) -> int:
    """A non-negative JSON integer (absent/null -> 0); integral floats such as ``1.7e15`` are accepted."""
    if value is None:
        return 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > _MAX_U64:
        raise InvalidInputError(f"{where}: {name} {_show(value)} is not a non-negative integer")
    return value


def _nanos(micros: int, name: str, where: str) -> int:
    nanos = micros * 1000
    if nanos > _MAX_U64:
        raise InvalidInputError(f"{where}: {name} {micros} µs is out of range")
    return nanos


def _str(value: Any, name: str, where: str) -> str:
    """A JSON string field (absent/null -> "")."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInputError(f"{where}: {name} must be a string, got {_show(value)}")
    return value


def _obj(value: Any, name: str, where: str) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidInputError(f"{where}: {name} must be a JSON object, got {_show(value)}")
    return value


def _list(value: Any, name: str, where: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidInputError(f"{where}: {name} must be a JSON list, got {_show(value)}")
    return value


def _load_json_list(body: bytes, what: str) -> list:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidInputError(f"{what}: body is not valid JSON: {exc}") from None
    if not isinstance(data, list):
        raise InvalidInputError(f"{what}: body must be a JSON list of spans, got {type(data).__name__}")
    return data


def _ip_text(text: str, name: str, where: str) -> str | None:
    """Canonical text of an IP (Go ``net.IP.String``: v4-mapped v6 prints as v4); "" -> None."""
    if not text:
        return None
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidInputError(f"{where}: {name} {_show(text)} is not an IP address") from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def _ip_bytes(raw: bytes, name: str, where: str) -> str | None:
    if not raw:
        return None
    if len(raw) not in (4, 16):
        raise InvalidInputError(f"{where}: {name} is {len(raw)} bytes, 4 or 16 expected")
    addr = ipaddress.ip_address(raw)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def _set_attrs(target: Any, attrs: dict[str, str | int | bool]) -> None:
    """Append ``attrs`` to a repeated KeyValue field, keeping each Python type (str/int/bool)."""
    for key, value in attrs.items():
        kv = target.add(key=key)
        if isinstance(value, bool):
            kv.value.bool_value = value
        elif isinstance(value, int):
            kv.value.int_value = value
        else:
            kv.value.string_value = value


def _json_attr(value: Any) -> AnyValue | None:
    """One value of an annotation's JSON attributes, typed like the collector's jsonMapToAttributeMap."""
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int) and -_MAX_I64 - 1 <= value <= _MAX_I64:
        return AnyValue(int_value=value)
    if isinstance(value, (int, float)):
        if isinstance(value, float) and value.is_integer() and -(2.0**63) <= value < 2.0**63:
            return AnyValue(int_value=int(value))
        return AnyValue(double_value=float(value))
    return None


def _add_event(span: Span, time_ns: int, value: str) -> None:
    """Annotation -> event; unpacks ``name|{json}|dropped`` (how the collector's exporter encodes events)."""
    event = span.events.add(time_unix_nano=time_ns, name=value)
    parts = value.split("|")
    if len(parts) < 3 or not parts[-1].isdigit() or not parts[-1].isascii():
        return
    try:
        attrs = json.loads("|".join(parts[1:-1]))
    except (ValueError, RecursionError):
        return
    dropped = int(parts[-1])
    if not isinstance(attrs, dict) or dropped > 0xFFFFFFFF:
        return
    event.name = parts[0]
    event.dropped_attributes_count = dropped
    for key, raw in attrs.items():
        any_value = _json_attr(raw)
        if any_value is not None:
            event.attributes.append(KeyValue(key=key, value=any_value))


class _Grouper:
    """Collects spans into one ResourceSpans per distinct resource and one ScopeSpans per scope in it."""

    def __init__(self) -> None:
        self.request = ExportTraceServiceRequest()
        self._resources: dict[tuple, tuple[ResourceSpans, dict[tuple[str, str], ScopeSpans]]] = {}

    def spans(self, resource: dict[str, str], scope: tuple[str, str]) -> Any:
        key = tuple(sorted(resource.items()))
        entry = self._resources.get(key)
        if entry is None:
            resource_spans = self.request.resource_spans.add()
            _set_attrs(resource_spans.resource.attributes, resource)
            entry = (resource_spans, {})
            self._resources[key] = entry
        resource_spans, scopes = entry
        return scope_spans_for(resource_spans, scopes, scope).spans


# ---------------------------------------------------------------------------------------------------------
# v2: both encodings decode into _V2Span, then share one translation


@dataclass(slots=True)
class _Endpoint:
    service_name: str = ""
    ipv4: str | None = None
    ipv6: str | None = None
    port: int = 0


@dataclass(slots=True)
class _V2Span:
    trace_id: bytes
    span_id: bytes
    parent_id: bytes
    name: str
    kind: int  # OTLP kind from the Zipkin kind; UNSPECIFIED when Zipkin had none
    start_ns: int
    end_ns: int
    start_absent: bool
    local: _Endpoint | None
    remote: _Endpoint | None
    annotations: list[tuple[int, str]] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)


def _v2_status(tags: dict[str, str], status: Status) -> None:
    if "otel.status_code" in tags:
        status.code = _OTEL_STATUS_CODE.get(tags.pop("otel.status_code"), Status.STATUS_CODE_UNSET)
        if "otel.status_description" in tags:
            status.message = tags.pop("otel.status_description")
    if "error" in tags:
        status.code = Status.STATUS_CODE_ERROR
        if tags["error"] == "true":
            del tags["error"]


def _not_unicode(where: str) -> InvalidInputError:
    # JSON "\\udXXX" escapes can smuggle lone surrogates in, which protobuf strings cannot hold.
    return InvalidInputError(f"{where}: a string is not valid Unicode (lone surrogate)")


def _v2_to_otlp(spans: list[tuple[str, _V2Span]]) -> ExportTraceServiceRequest:
    grouper = _Grouper()
    for where, zspan in spans:
        try:
            _add_v2_span(grouper, zspan)
        except UnicodeEncodeError:
            raise _not_unicode(where) from None
    return grouper.request


def _add_v2_span(grouper: _Grouper, zspan: _V2Span) -> None:
    tags = dict(zspan.tags)

    resource: dict[str, str] = {}
    source = tags.pop(_SERVICE_NAME_SOURCE, "")
    if zspan.local is not None and zspan.local.service_name:
        resource[source or "service.name"] = zspan.local.service_name
    for key in [key for key in tags if key in _RESOURCE_KEYS]:
        resource[key] = tags.pop(key)

    scope_name = next((tags[k] for k in _SCOPE_NAME_KEYS if k in tags), "")
    scope_version = next((tags[k] for k in _SCOPE_VERSION_KEYS if k in tags), "")
    for key in (*_SCOPE_NAME_KEYS, *_SCOPE_VERSION_KEYS):
        tags.pop(key, None)

    span = grouper.spans(resource, (scope_name, scope_version)).add(
        trace_id=zspan.trace_id,
        span_id=zspan.span_id,
        parent_span_id=_parent(zspan.parent_id, zspan.span_id),
        name=zspan.name,
        start_time_unix_nano=zspan.start_ns,
        end_time_unix_nano=zspan.end_ns,
    )
    if _TRACE_STATE in tags:
        span.trace_state = tags.pop(_TRACE_STATE)
    kind = zspan.kind
    if kind == Span.SPAN_KIND_UNSPECIFIED and tags.pop(_SPAN_KIND_TAG, None) == "internal":
        kind = Span.SPAN_KIND_INTERNAL
    span.kind = kind
    _v2_status(tags, span.status)

    attrs: dict[str, str | int | bool] = dict(tags)
    for endpoint, prefix in ((zspan.local, "net.host"), (zspan.remote, "net.peer")):
        if endpoint is None:
            continue
        if prefix == "net.peer" and endpoint.service_name:
            attrs["peer.service"] = endpoint.service_name
        if endpoint.ipv4 is not None:
            attrs[f"{prefix}.ip"] = endpoint.ipv4
        if endpoint.ipv6 is not None:
            attrs[f"{prefix}.ip"] = endpoint.ipv6
        if endpoint.port > 0:
            attrs[f"{prefix}.port"] = endpoint.port
    if zspan.start_absent:
        attrs[_ABSENT_START] = True
    _set_attrs(span.attributes, attrs)

    for time_ns, value in zspan.annotations:
        _add_event(span, time_ns, value)


def _json_endpoint(value: Any, name: str, where: str) -> _Endpoint | None:
    obj = _obj(value, name, where)
    if obj is None:
        return None
    port = obj.get("port")
    if port is None:
        port = 0
    if isinstance(port, bool) or not isinstance(port, int):
        raise InvalidInputError(f"{where}: {name}.port {_show(port)} is not an integer")
    return _Endpoint(
        service_name=_str(obj.get("serviceName"), f"{name}.serviceName", where),
        ipv4=_ip_text(_str(obj.get("ipv4"), f"{name}.ipv4", where), f"{name}.ipv4", where),
        ipv6=_ip_text(_str(obj.get("ipv6"), f"{name}.ipv6", where), f"{name}.ipv6", where),
        port=port,
    )


def _json_v2_span(obj: dict, where: str) -> _V2Span:
    if "traceId" not in obj or obj["traceId"] is None:
        raise InvalidInputError(f"{where}: traceId is missing")
    if "id" not in obj or obj["id"] is None:
        raise InvalidInputError(f"{where}: id is missing")
    trace_id = _hex_id(obj["traceId"], "traceId", 16, where)
    span_id = _hex_id(obj["id"], "id", 8, where)
    parent = obj.get("parentId")
    parent_id = _hex_id(parent, "parentId", 8, where) if parent not in (None, "") else b""

    kind = obj.get("kind")
    if kind is not None and not isinstance(kind, str):
        raise InvalidInputError(f"{where}: kind must be a string, got {_show(kind)}")
    timestamp = _int(obj.get("timestamp"), "timestamp", where)
    duration = _int(obj.get("duration"), "duration", where)

    annotations = []
    for j, item in enumerate(_list(obj.get("annotations"), "annotations", where)):
        annotation = _obj(item, f"annotations[{j}]", where)
        if annotation is None:
            continue
        ts = _int(annotation.get("timestamp"), f"annotations[{j}].timestamp", where)
        value = _str(annotation.get("value"), f"annotations[{j}].value", where)
        annotations.append((_nanos(ts, f"annotations[{j}].timestamp", where), value))

    tags_obj = _obj(obj.get("tags"), "tags", where) or {}
    tags: dict[str, str] = {}
    for key, value in tags_obj.items():
        if not isinstance(value, str):
            raise InvalidInputError(f"{where}: tag {_show(key)} has a non-string value {_show(value)}")
        tags[key] = value

    return _V2Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_id=parent_id,
        name=_str(obj.get("name"), "name", where),
        kind=_V2_KIND.get(kind or "", Span.SPAN_KIND_UNSPECIFIED),
        start_ns=_nanos(timestamp, "timestamp", where),
        end_ns=_nanos(timestamp + duration, "timestamp + duration", where),
        start_absent=timestamp == 0,
        local=_json_endpoint(obj.get("localEndpoint"), "localEndpoint", where),
        remote=_json_endpoint(obj.get("remoteEndpoint"), "remoteEndpoint", where),
        annotations=annotations,
        tags=tags,
    )


def zipkin_v2_json_to_otlp(body: bytes) -> ExportTraceServiceRequest:
    """Decode a Zipkin v2 JSON body (a list of spans) into OTLP; raises InvalidInputError if malformed."""
    spans = []
    for i, item in enumerate(_load_json_list(body, "zipkin v2")):
        where = f"zipkin v2 span {i}"
        if item is None:
            continue
        if not isinstance(item, dict):
            raise InvalidInputError(f"{where}: must be a JSON object, got {_show(item)}")
        spans.append((where, _json_v2_span(item, where)))
    return _v2_to_otlp(spans)


def _proto_endpoint(message: Any, name: str, where: str) -> _Endpoint:
    return _Endpoint(
        service_name=message.service_name,
        ipv4=_ip_bytes(message.ipv4, f"{name}.ipv4", where),
        ipv6=_ip_bytes(message.ipv6, f"{name}.ipv6", where),
        port=message.port,
    )


def zipkin_v2_proto_to_otlp(body: bytes) -> ExportTraceServiceRequest:
    """Decode a Zipkin ``zipkin.proto3`` ListOfSpans body into OTLP; raises InvalidInputError if malformed."""
    try:
        message = zipkin_proto.ListOfSpans.FromString(body)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise InvalidInputError(f"zipkin v2 protobuf: body does not parse as ListOfSpans: {exc}") from None
    spans = []
    for i, pspan in enumerate(message.spans):
        where = f"zipkin v2 protobuf span {i}"
        if not pspan.trace_id:
            raise InvalidInputError(f"{where}: trace_id is missing")
        if not pspan.id:
            raise InvalidInputError(f"{where}: id is missing")
        spans.append(
            (
                where,
                _V2Span(
                    trace_id=_bytes_id(pspan.trace_id, "trace_id", 16, where),
                    span_id=_bytes_id(pspan.id, "id", 8, where),
                    parent_id=_bytes_id(pspan.parent_id, "parent_id", 8, where) if pspan.parent_id else b"",
                    name=pspan.name,
                    kind=_PROTO_KIND.get(pspan.kind, Span.SPAN_KIND_UNSPECIFIED),
                    start_ns=_nanos(pspan.timestamp, "timestamp", where),
                    end_ns=_nanos(pspan.timestamp + pspan.duration, "timestamp + duration", where),
                    start_absent=False,
                    local=(
                        _proto_endpoint(pspan.local_endpoint, "local_endpoint", where)
                        if pspan.HasField("local_endpoint")
                        else None
                    ),
                    remote=(
                        _proto_endpoint(pspan.remote_endpoint, "remote_endpoint", where)
                        if pspan.HasField("remote_endpoint")
                        else None
                    ),
                    annotations=[
                        (_nanos(a.timestamp, f"annotations[{j}].timestamp", where), a.value)
                        for j, a in enumerate(pspan.annotations)
                    ],
                    tags=dict(pspan.tags),
                ),
            )
        )
    return _v2_to_otlp(spans)


# ---------------------------------------------------------------------------------------------------------
# v1 JSON


def _int32_text(value: str) -> int | None:
    """Go's strconv.ParseInt + int32 range check, as the collector's attribToStatusCode does."""
    if not _DECIMAL.fullmatch(value):
        return None
    number = int(value)
    return number if -(1 << 31) <= number < (1 << 31) else None


class _V1Status:
    """The collector's zipkinv1 statusMapper: several tag families, one winner."""

    def __init__(self) -> None:
        self.census_code: int | None = None
        self.census_message = ""
        self.otel_code: int | None = None
        self.otel_message = ""
        self.http_code: int | None = None
        self.http_message = ""
        self.error = False

    def consume(self, key: str, value: str) -> bool:
        """Record a status-bearing tag; True when the tag must not become an attribute."""
        if key == "census.status_code":
            code = _int32_text(value)
            if code is not None:
                self.census_code = Status.STATUS_CODE_OK if code == 0 else Status.STATUS_CODE_ERROR
            return True
        if key in ("census.status_description", "opencensus.status_description"):
            self.census_message = value
            return True
        if key == "otel.status_code":
            self.otel_code = _int32_text(value)
            return True
        if key == "otel.status_description":
            self.otel_message = value
            return True
        if key == "http.status_code":
            code = _int32_text(value)
            if code is not None:
                self.http_code = Status.STATUS_CODE_UNSET if 100 <= code < 400 else Status.STATUS_CODE_ERROR
        elif key == "http.status_message":
            self.http_message = value
        elif key == "error":
            self.error = True
            return True
        return False

    def apply(self, status: Status) -> None:
        if self.census_code is not None:
            code, message = self.census_code, self.census_message
        elif self.otel_code is not None:
            code, message = self.otel_code, self.otel_message
        elif self.error:
            code, message = Status.STATUS_CODE_ERROR, self.census_message or self.otel_message
        elif self.http_code is not None:
            code, message = self.http_code, self.http_message
        else:
            return
        status.code = code
        status.message = message


def _v1_endpoint(value: Any, name: str, where: str) -> dict[str, Any] | None:
    obj = _obj(value, name, where)
    if obj is None:
        return None
    port = obj.get("port")
    if port is None:
        port = 0
    if isinstance(port, bool) or not isinstance(port, int) or not -(1 << 31) <= port < (1 << 31):
        raise InvalidInputError(f"{where}: {name}.port {_show(port)} is not a 32-bit integer")
    return {
        "serviceName": _str(obj.get("serviceName"), f"{name}.serviceName", where),
        "ipv4": _str(obj.get("ipv4"), f"{name}.ipv4", where),
        "ipv6": _str(obj.get("ipv6"), f"{name}.ipv6", where),
        "port": port,
    }


def _v1_value(value: Any, name: str, where: str) -> str:
    """A binary annotation value as a string; v1 clients also send JSON booleans and numbers."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    raise InvalidInputError(f"{where}: {name} must be a string, boolean or number, got {_show(value)}")


def _v1_time(micros: int, name: str, where: str) -> int:
    return _nanos(micros, name, where) if micros > 0 else 0


def zipkin_v1_json_to_otlp(body: bytes, *, now_ns: int | None = None) -> ExportTraceServiceRequest:
    """Decode a Zipkin v1 JSON body into OTLP; raises InvalidInputError if malformed.

    ``now_ns`` is the time given to spans with neither a timestamp nor annotations (default: the clock),
    a parameter so the conversion stays deterministic under test.
    """
    grouper = _Grouper()
    now = time.time_ns() if now_ns is None else now_ns
    for i, obj in enumerate(_load_json_list(body, "zipkin v1")):
        where = f"zipkin v1 span {i}"
        if obj is None:
            continue
        if not isinstance(obj, dict):
            raise InvalidInputError(f"{where}: must be a JSON object, got {_show(obj)}")
        try:
            _add_v1_span(grouper, obj, where, now)
        except UnicodeEncodeError:
            raise _not_unicode(where) from None
    return grouper.request


def _add_v1_span(grouper: _Grouper, obj: dict, where: str, now_ns: int) -> None:
    if obj.get("traceId") is None:
        raise InvalidInputError(f"{where}: traceId is missing")
    if obj.get("id") is None:
        raise InvalidInputError(f"{where}: id is missing")
    span = Span(
        trace_id=_hex_id(obj["traceId"], "traceId", 16, where),
        span_id=_hex_id(obj["id"], "id", 8, where),
        name=_str(obj.get("name"), "name", where),
    )
    parent = obj.get("parentId")
    if parent not in (None, ""):
        span.parent_span_id = _parent(_hex_id(parent, "parentId", 8, where), b"")

    # Annotations: kind and endpoint from the first core annotation; the rest become events.
    endpoint: dict[str, Any] | None = None
    kind_set = False
    earliest, latest = None, None
    for j, item in enumerate(_list(obj.get("annotations"), "annotations", where)):
        annotation = _obj(item, f"annotations[{j}]", where)
        if annotation is None:
            continue
        value = _str(annotation.get("value"), f"annotations[{j}].value", where)
        if not value:
            continue
        ts = _int(annotation.get("timestamp"), f"annotations[{j}].timestamp", where)
        ann_endpoint = _v1_endpoint(annotation.get("endpoint"), f"annotations[{j}].endpoint", where)
        core_kind = _V1_CORE_KIND.get(value)
        if core_kind is not None:
            if endpoint is None and ann_endpoint is not None and ann_endpoint["serviceName"]:
                endpoint = ann_endpoint
            if not kind_set:
                span.kind = core_kind
                kind_set = True
        time_ns = _v1_time(ts, f"annotations[{j}].timestamp", where)
        if earliest is None or ts < earliest:
            earliest = ts
            span.start_time_unix_nano = time_ns
        if latest is None or ts > latest:
            latest = ts
            span.end_time_unix_nano = time_ns
        if core_kind is None:
            span.events.add(time_unix_nano=time_ns, name=value)
    if endpoint is None:
        endpoint = {"serviceName": _V1_UNKNOWN_SERVICE, "ipv4": "", "ipv6": "", "port": 0}

    # Binary annotations: attributes, status, and a fallback service name.
    status = _V1Status()
    fallback_service = ""
    local_component = ""
    attrs: dict[str, str | int | bool] = {}
    for j, item in enumerate(_list(obj.get("binaryAnnotations"), "binaryAnnotations", where)):
        binary = _obj(item, f"binaryAnnotations[{j}]", where)
        if binary is None:
            continue
        bin_endpoint = _v1_endpoint(binary.get("endpoint"), f"binaryAnnotations[{j}].endpoint", where)
        if bin_endpoint is not None and bin_endpoint["serviceName"]:
            fallback_service = bin_endpoint["serviceName"]
        key = _str(binary.get("key"), f"binaryAnnotations[{j}].key", where)
        value = _v1_value(binary.get("value"), f"binaryAnnotations[{j}].value", where)
        if key == "lc":
            key = "component"
            local_component = value
        if status.consume(key, value):
            continue
        attrs[key] = value
    status.apply(span.status)
    fallback_service = fallback_service or local_component
    if endpoint["serviceName"] == _V1_UNKNOWN_SERVICE and fallback_service:
        endpoint = {**endpoint, "serviceName": fallback_service}

    timestamp = _int(obj.get("timestamp"), "timestamp", where)
    duration = _int(obj.get("duration"), "duration", where)
    if timestamp != 0:
        span.start_time_unix_nano = _nanos(timestamp, "timestamp", where)
        span.end_time_unix_nano = _nanos(timestamp + duration, "timestamp + duration", where)
    if span.start_time_unix_nano == 0:
        span.start_time_unix_nano = span.end_time_unix_nano = now_ns
        attrs[_ABSENT_START] = True
    _set_attrs(span.attributes, attrs)

    resource = {"service.name": endpoint["serviceName"]}
    if endpoint["ipv4"]:
        resource["ipv4"] = endpoint["ipv4"]
    if endpoint["ipv6"]:
        resource["ipv6"] = endpoint["ipv6"]
    if endpoint["port"]:
        resource["port"] = str(endpoint["port"])
    grouper.spans(resource, ("", "")).append(span)
