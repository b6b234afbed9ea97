"""OTLP/JSON <-> protobuf for traces.

OTLP/JSON is protobuf's canonical JSON mapping with a few deviations that the OpenTelemetry
spec mandates, the one that matters being that trace and span ids are hex strings rather than
base64 (``bytesValue`` attributes stay base64). We therefore rewrite the ids and let
``google.protobuf.json_format`` do everything else, so enum names or numbers, 64-bit integers as
strings or numbers and camelCase or snake_case keys are all accepted exactly as protobuf does.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from typing import Any

from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from tracelake.errors import InvalidInputError

_HEX = re.compile(r"[0-9a-fA-F]*")
_MAX_SHOWN = 60

# (camelCase, snake_case) spellings; json_format accepts both, so we must rewrite both.
_RESOURCE_SPANS = ("resourceSpans", "resource_spans")
_SCOPE_SPANS = ("scopeSpans", "scope_spans")
# OTLP before v0.19 (still written by old SDKs and collectors) used these names.
_LEGACY_SCOPE_SPANS = ("instrumentationLibrarySpans", "instrumentation_library_spans")
_LEGACY_SCOPE = ("instrumentationLibrary", "instrumentation_library")
_SPAN_ID_FIELDS = (
    ("traceId", "trace_id"),
    ("spanId", "span_id"),
    ("parentSpanId", "parent_span_id"),
)
_LINK_ID_FIELDS = (("traceId", "trace_id"), ("spanId", "span_id"))


def otlp_json_to_request(obj: Any) -> ExportTraceServiceRequest:
    """Decode an OTLP/JSON traces object (ExportTraceServiceRequest or TracesData shape).

    Unknown fields are ignored so files from newer SDKs still import; an object that has keys
    but no ``resourceSpans`` is rejected because it is almost certainly not traces (e.g. logs).
    """
    fixed = _fix_request(obj)
    try:
        return json_format.ParseDict(fixed, ExportTraceServiceRequest(), ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, AttributeError) as exc:
        where, why = _locate_parse_error(fixed, ExportTraceServiceRequest.DESCRIPTOR, "")
        if not where:
            raise InvalidInputError(f"invalid OTLP JSON: {_clean(why or str(exc))}") from exc
        raise InvalidInputError(f"invalid OTLP JSON at {where}: {_clean(why)}") from exc


def request_to_otlp_json(msg: ExportTraceServiceRequest | TracesData) -> dict[str, Any]:
    """Encode as spec-compliant OTLP/JSON: camelCase keys, hex ids, integer enums.

    64-bit integers come out as decimal strings (protobuf's JSON mapping, which OTLP/JSON
    keeps) so values above 2**53 survive JavaScript clients.
    """
    if not isinstance(msg, (ExportTraceServiceRequest, TracesData)):
        raise TypeError(f"expected ExportTraceServiceRequest or TracesData, got {type(msg).__name__}")
    out = json_format.MessageToDict(msg, use_integers_for_enums=True)
    for rs in out.get("resourceSpans", ()):
        for ss in rs.get("scopeSpans", ()):
            for span in ss.get("spans", ()):
                _ids_to_hex(span, ("traceId", "spanId", "parentSpanId"))
                for link in span.get("links", ()):
                    _ids_to_hex(link, ("traceId", "spanId"))
    return out


# --- decoding helpers ----------------------------------------------------------------


def _fix_request(obj: Any) -> dict[str, Any]:
    """Return a copy of ``obj`` with hex ids turned into base64, leaving the input untouched."""
    if not isinstance(obj, dict):
        raise InvalidInputError(f"OTLP JSON must be an object, got {_json_type(obj)}")
    if obj and not any(k in obj for k in _RESOURCE_SPANS):
        keys = ", ".join(sorted(str(k) for k in obj)[:5])
        raise InvalidInputError(f"not OTLP traces JSON: no resourceSpans key (keys: {keys})")
    out = dict(obj)
    for key, items in _lists(obj, _RESOURCE_SPANS, ""):
        out[key] = [_fix_resource_spans(rs, f"{key}[{i}]") for i, rs in enumerate(items)]
    return out


def _fix_resource_spans(rs: Any, path: str) -> dict[str, Any]:
    _require_object(rs, path)
    out = dict(rs)
    for key, items in _lists(rs, _SCOPE_SPANS, path):
        out[key] = [_fix_scope_spans(ss, f"{path}.{key}[{i}]") for i, ss in enumerate(items)]
    for key, items in _lists(rs, _LEGACY_SCOPE_SPANS, path):
        del out[key]
        converted = []
        for i, ss in enumerate(items):
            fixed = _fix_scope_spans(ss, f"{path}.{key}[{i}]")
            for old in _LEGACY_SCOPE:
                if old in fixed:
                    fixed["scope"] = fixed.pop(old)
            converted.append(fixed)
        out["scopeSpans"] = list(out.get("scopeSpans") or []) + converted
    return out


def _fix_scope_spans(ss: Any, path: str) -> dict[str, Any]:
    _require_object(ss, path)
    out = dict(ss)
    for key, spans in _lists(ss, ("spans",), path):
        out[key] = [_fix_span(span, f"{path}.{key}[{i}]") for i, span in enumerate(spans)]
    return out


def _fix_span(span: Any, path: str) -> dict[str, Any]:
    _require_object(span, path)
    out = dict(span)
    _ids_to_base64(out, _SPAN_ID_FIELDS, path)
    for key, links in _lists(span, ("links",), path):
        fixed_links = []
        for i, link in enumerate(links):
            link_path = f"{path}.{key}[{i}]"
            _require_object(link, link_path)
            fixed = dict(link)
            _ids_to_base64(fixed, _LINK_ID_FIELDS, link_path)
            fixed_links.append(fixed)
        out[key] = fixed_links
    return out


def _ids_to_base64(obj: dict[str, Any], fields: tuple[tuple[str, str], ...], path: str) -> None:
    for spellings in fields:
        for key in spellings:
            value = obj.get(key)
            if value is None:
                continue  # absent, or null which json_format treats as unset
            if not isinstance(value, str):
                raise InvalidInputError(
                    f"invalid OTLP JSON at {path}.{key}: expected a hex string, got {_json_type(value)}"
                )
            if len(value) % 2 or not _HEX.fullmatch(value):
                raise InvalidInputError(
                    f"invalid OTLP JSON at {path}.{key}: not a hex id: {_shorten(value)!r}"
                )
            obj[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")


def _lists(obj: dict[str, Any], keys: tuple[str, ...], path: str) -> Iterator[tuple[str, list[Any]]]:
    """Yield (key, list) for each spelling present; null counts as absent, like json_format."""
    for key in keys:
        value = obj.get(key)
        if value is None:
            continue
        if not isinstance(value, list):
            where = f"{path}.{key}" if path else key
            raise InvalidInputError(
                f"invalid OTLP JSON at {where}: expected an array, got {_json_type(value)}"
            )
        yield key, value


def _require_object(value: Any, path: str) -> None:
    if not isinstance(value, dict):
        raise InvalidInputError(f"invalid OTLP JSON at {path}: expected an object, got {_json_type(value)}")


def _locate_parse_error(value: Any, desc: Descriptor, path: str) -> tuple[str, str]:
    """Find the innermost element json_format rejects, since its own message has no indexes.

    Only runs after a failure, so re-parsing sub-trees is affordable.
    """
    error = _parse_error(value, desc)
    if error is None:
        return "", ""
    if isinstance(value, dict):
        for key, child in value.items():
            field = _field(desc, key)
            if field is None or field.type != FieldDescriptor.TYPE_MESSAGE:
                continue
            child_path = f"{path}.{key}" if path else key
            items = child if isinstance(child, list) else [child]
            for i, item in enumerate(items):
                item_path = f"{child_path}[{i}]" if isinstance(child, list) else child_path
                where, why = _locate_parse_error(item, field.message_type, item_path)
                if why:
                    return where, why
    return path, error


def _parse_error(value: Any, desc: Descriptor) -> str | None:
    cls = message_factory.GetMessageClass(desc)
    try:
        json_format.ParseDict(value, cls(), ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, AttributeError) as exc:
        return str(exc)
    return None


def _field(desc: Descriptor, key: str) -> FieldDescriptor | None:
    return desc.fields_by_camelcase_name.get(key) or desc.fields_by_name.get(key)


# --- encoding helpers ----------------------------------------------------------------


def _ids_to_hex(obj: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        if key in obj:
            try:
                obj[key] = base64.b64decode(obj[key], validate=True).hex()
            except binascii.Error as exc:  # MessageToDict always emits valid base64
                raise AssertionError(f"json_format emitted invalid base64 for {key}") from exc


# --- message formatting --------------------------------------------------------------


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _shorten(value: str) -> str:
    return value if len(value) <= _MAX_SHOWN else value[:_MAX_SHOWN] + "..."


def _clean(message: str) -> str:
    """Keep error text on one line and drop json_format's trailing dots."""
    return " ".join(message.split()).rstrip(".")
