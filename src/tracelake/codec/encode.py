"""The span table -> OTLP ``TracesData``: how a stored trace is handed back.

Runs per trace (tens to thousands of spans), so a plain loop over rows is fine here; spans are regrouped
under their resource and scope in the order they first appear.
"""

from __future__ import annotations

import pyarrow as pa
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, TracesData

from tracelake.codec.attributes_wire import set_any_value
from tracelake.model.schema import DEDICATED_SPAN_ATTRIBUTES, AttrType

_DEDICATED_COLUMN = {key: column for key, column, _ in DEDICATED_SPAN_ATTRIBUTES}
_DEDICATED_TYPE = {key: attr_type for key, _, attr_type in DEDICATED_SPAN_ATTRIBUTES}


def _span_from_row(row: dict) -> Span:
    span = Span(
        trace_id=row["trace_id"],
        span_id=row["span_id"],
        parent_span_id=row["parent_span_id"],
        trace_state=row["trace_state"],
        flags=row["flags"],
        name=row["name"],
        kind=row["kind"],
        start_time_unix_nano=row["start_time_unix_nano"],
        end_time_unix_nano=row["end_time_unix_nano"],
        dropped_attributes_count=row["dropped_attributes_count"],
        dropped_events_count=row["dropped_events_count"],
        dropped_links_count=row["dropped_links_count"],
    )
    for item in row["attributes"]:
        kv = span.attributes.add(key=item["key"])
        attr_type = item["type"]
        if attr_type == AttrType.DEDICATED:
            key = item["key"]
            value = row[_DEDICATED_COLUMN[key]]
            attr_type = _DEDICATED_TYPE[key]
            item = {"str": value, "int": value}
        if attr_type != AttrType.EMPTY:
            set_any_value(kv.value, attr_type, item)
    if row["status_code"] or row["status_message"]:
        span.status.code = row["status_code"]
        span.status.message = row["status_message"]
    if row["events"] or row["links"]:
        span.MergeFromString(row["events"] + row["links"])
    return span


def spans_to_traces_data(table: pa.Table) -> TracesData:
    """Rebuild OTLP from span rows (``SPAN_SCHEMA`` columns), grouped by resource and scope.

    A span stored twice (replicated writes, a client's retry, the same span in two blocks) is returned
    once: rows equal in every field, resource and scope included, are dropped after the first.
    """
    data = TracesData()
    seen: set[tuple[bytes, str, bytes, str, bytes]] = set()
    resources: dict[tuple[bytes, str], ResourceSpans] = {}
    scopes: dict[tuple[bytes, str, bytes, str], ScopeSpans] = {}
    for row in table.to_pylist():
        resource_key = (row["resource"], row["resource_schema_url"])
        rs = resources.get(resource_key)
        if rs is None:
            rs = data.resource_spans.add(schema_url=row["resource_schema_url"])
            if row["resource"]:
                rs.resource.CopyFrom(Resource.FromString(row["resource"]))
            resources[resource_key] = rs
        scope_key = (*resource_key, row["scope"], row["scope_schema_url"])
        ss = scopes.get(scope_key)
        if ss is None:
            ss = rs.scope_spans.add(schema_url=row["scope_schema_url"])
            if row["scope"]:
                ss.scope.CopyFrom(InstrumentationScope.FromString(row["scope"]))
            scopes[scope_key] = ss
        span = _span_from_row(row)
        identity = (*scope_key, span.SerializeToString(deterministic=True))
        if identity not in seen:
            seen.add(identity)
            ss.spans.append(span)
    return data
