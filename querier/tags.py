"""Tag names and tag values (``/api/search/tags``, ``/api/v2/search/tags`` and their ``/values``).

Grafana's query builder, TraceQL autocomplete, template variables and ad-hoc filters are fed from
here (contract §2.4). Everything is read column-wise from each block's ``data.parquet``: only the
columns a question needs, distinct values via Arrow compute, Python loops only per distinct value
(e.g. one ``Resource`` parse per distinct serialized resource).

Sources, as Tempo: the ingesters' memory and recent blocks always; the backend's blocks only when the
request has a time range (``start``/``end``), which Grafana sends.

``q`` (v2 tag values) narrows the values to spans matching the TraceQL query, exactly: block row
groups hold whole traces; in the ingesters' memory the candidate traces are gathered and sorted first
(search/recent.py).

``duration``-like intrinsics have no values (as in Tempo). Tag names of a block are computed once
and kept with its reader (blocks never change).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tracelake.codec.attributes_wire import unpack_attributes
from tracelake.db import TraceDB
from tracelake.encoding.v1.find_trace import BlockReader
from tracelake.errors import InvalidInputError
from tracelake.model.schema import DEDICATED_SPAN_ATTRIBUTES, AttrType
from tracelake.query import RecentTraces
from tracelake.search.recent import candidate_traces, whole_traces
from tracelake.search.request import count_param
from tracelake.traceql.ast import Query, SpansetFilter
from tracelake.traceql.evaluate import check_supported, columns_for, evaluate
from tracelake.traceql.frame import Entries, SpanFrame, attribute_entries, resource_of, scope_of
from tracelake.traceql.parser import parse

# What Tempo 2.7 lists for the intrinsic scope (search_tags_v2_range.json), in its order.
INTRINSIC_TAGS: tuple[str, ...] = (
    "duration",
    "event:name",
    "event:timeSinceStart",
    "instrumentation:name",
    "instrumentation:version",
    "kind",
    "name",
    "rootName",
    "rootServiceName",
    "span:duration",
    "span:kind",
    "span:name",
    "span:status",
    "span:statusMessage",
    "status",
    "statusMessage",
    "trace:duration",
    "trace:rootName",
    "trace:rootService",
    "traceDuration",
)
V2_SCOPES = ("intrinsic", "resource", "span", "event", "link", "instrumentation")  # Tempo's order
KNOWN_SCOPES = ("resource", "span", "intrinsic", "event", "link", "instrumentation")
_ATTRIBUTE_SCOPES = ("resource.", "span.", "event.", "link.", "instrumentation.", ".")
STATUS_KEYWORDS = ("error", "ok", "unset")
KIND_KEYWORDS = ("unspecified", "internal", "server", "client", "producer", "consumer")
_DEDICATED = {key: (column, type_) for key, column, type_ in DEDICATED_SPAN_ATTRIBUTES}

TypedValue = tuple[str, str]  # (Tempo type name, value as Tempo renders it)


class TagError(ValueError):
    """A request the tag API rejects with 400 (the message is Tempo's wording where known)."""


@dataclass
class _Scan:
    """Bytes of compressed column chunks read, reported as Tempo's ``inspectedBytes``."""

    inspected: int = 0
    readers: list[BlockReader] = field(default_factory=list)
    recent: list[pa.Table] = field(default_factory=list)  # SPAN_SCHEMA tables from the ingesters
    query: Query | None = None  # ``q``: only spans matching it count

    def tables(self, columns: list[str]) -> Iterator[pa.Table]:
        """``columns`` of every span scanned, in single-chunk tables: blocks' row groups, then the
        ingesters' batches; only the spans matching ``query`` when there is one."""
        if self.query is None:
            yield from self._block_tables(columns)
            yield from self._recent_tables(columns)
            return
        extra = [c for c in columns_for(self.query, with_spans=False) if c not in columns]
        for table in self._block_tables(columns + extra):  # whole traces: exact
            yield table.filter(pa.array(evaluate(self.query, SpanFrame(table)).spans)).select(columns)
        recent = [t for t in self.recent if t.num_rows]
        found = candidate_traces(recent, self.query) if recent else []
        if len(found):
            rows = whole_traces(recent, found)  # the candidates, sorted: evaluated exactly
            self.inspected += rows.nbytes
            matching = rows.filter(pa.array(evaluate(self.query, SpanFrame(rows)).spans))
            for batch in matching.select([c for c in columns if c in matching.column_names]).to_batches():
                yield pa.Table.from_batches([batch])

    def _recent_tables(self, columns: list[str]) -> Iterator[pa.Table]:
        for table in self.recent:
            selected = table.select([c for c in dict.fromkeys(columns) if c in table.column_names])
            self.inspected += selected.nbytes
            for batch in selected.to_batches():
                yield pa.Table.from_batches([batch])

    def _block_tables(
        self, columns: list[str], readers: list[BlockReader] | None = None
    ) -> Iterator[pa.Table]:
        wanted = set(columns)
        for reader in self.readers if readers is None else readers:
            pf = reader.parquet()
            names = set(pf.schema_arrow.names)
            present = [c for c in columns if c in names]
            for group in range(pf.num_row_groups):
                meta = pf.metadata.row_group(group)
                for j in range(meta.num_columns):
                    chunk = meta.column(j)
                    if chunk.path_in_schema.split(".")[0] in wanted:
                        self.inspected += chunk.total_compressed_size
                table = pf.read_row_group(group, columns=present, use_threads=False)
                # one chunk per column from here on: chunks may carry different dictionaries
                for batch in table.to_batches():
                    yield pa.Table.from_batches([batch])


def narrowing_query(text: str) -> Query | None:
    """``q`` of a v2 tag values request, or None when absent, ``{}`` or unusable.

    Grafana sends the builder's other filters while the user edits one, so ``q`` may be half-typed;
    like Tempo (best-effort matcher extraction) an unparsable ``q`` narrows nothing rather than
    failing the drop-down.
    """
    if not text.strip():
        return None
    try:
        query = parse(text)
        check_supported(query)
    except InvalidInputError:
        return None
    if query.expr == SpansetFilter(None) and not query.stages:
        return None
    return query


def scan(
    db: TraceDB,
    recent: RecentTraces | None,
    tenants: list[str],
    seconds: tuple[int, int] | None,
    query: Query | None = None,
) -> _Scan:
    """What a tag request reads: the ingesters' data, plus, with a time range, the backend's blocks
    overlapping it (Tempo's rule: no range, ingesters only)."""
    readers = []
    tables: list[pa.Table] = []
    for tenant in tenants:
        metas = {}
        if recent is not None:
            tables += recent.recent_spans(tenant)
            metas.update((m.block_id, m) for m in recent.recent_blocks(tenant))
        if seconds is not None:
            metas.update((m.block_id, m) for m in db.block_list(tenant).metas)
        for meta in metas.values():
            if seconds is None or (
                meta.end_unix_nano >= seconds[0] * 10**9 and meta.start_unix_nano <= seconds[1] * 10**9
            ):
                readers.append(db.reader(meta))
    return _Scan(readers=readers, recent=tables, query=query)


# ---------------------------------------------------------------- reading columns


def _strings(array: pa.Array | pa.ChunkedArray) -> set[str]:
    """Distinct non-empty strings of a (possibly dictionary-encoded) string column."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks else pa.array([], pa.string())
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    return {v for v in pc.unique(array.drop_null()).to_pylist() if v}


def _flat_attributes(table: pa.Table) -> pa.StructArray:
    column = unpack_attributes(table["attributes"])  # block rows hold wire bytes
    column = column.combine_chunks() if column.num_chunks else pa.array([], column.type)
    return column.flatten()


def _keys(flat: pa.StructArray) -> pa.Array:
    keys = flat.field("key")
    return keys.dictionary_decode() if pa.types.is_dictionary(keys.type) else keys


def _distinct_blobs(column: pa.ChunkedArray) -> list[bytes]:
    distinct = pc.unique(column.combine_chunks())
    if pa.types.is_dictionary(distinct.type):
        distinct = distinct.dictionary_decode()
    return [b for b in distinct.drop_null().to_pylist() if b]


def _resources(table: pa.Table) -> Iterator[Resource]:
    """Each distinct resource of the row group, parsed once."""
    column = table["resource"]
    if not column.num_chunks:
        return
    distinct = pc.unique(column.combine_chunks())
    if pa.types.is_dictionary(distinct.type):
        distinct = distinct.dictionary_decode()
    for blob in distinct.drop_null().to_pylist():
        yield resource_of(blob)


# ---------------------------------------------------------------- value encodings


def go_float(value: float) -> str:
    """Go's ``strconv.FormatFloat(v, 'g', -1, 64)``, which is how Tempo renders float values."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1, value) < 0 else "0"
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    text = "".join(map(str, digits))
    exp10 = len(digits) + int(exponent) - 1  # exponent of the leading digit
    prefix = "-" if sign else ""
    if exp10 < -4 or exp10 >= 6:  # Go's rule for the shortest precision
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"
    if exp10 < 0:
        return f"{prefix}0.{'0' * (-exp10 - 1)}{text}"
    if len(text) <= exp10 + 1:
        return prefix + text + "0" * (exp10 + 1 - len(text))
    return f"{prefix}{text[: exp10 + 1]}.{text[exp10 + 1 :]}"


def _any_value(value: AnyValue) -> TypedValue | None:
    which = value.WhichOneof("value")
    if which == "string_value":
        return ("string", value.string_value)
    if which == "int_value":
        return ("int", str(value.int_value))
    if which == "double_value":
        return ("float", go_float(value.double_value))
    if which == "bool_value":
        return ("bool", "true" if value.bool_value else "false")
    return None  # arrays, kvlists and bytes are not offered as values (as in Tempo)


# ---------------------------------------------------------------- tag names


NAME_SCOPES = ("resource", "span", "event", "link", "instrumentation")
_NAME_COLUMNS = ["attributes", "resource", "scope", "events", "links"]


def _names_of(table: pa.Table) -> dict[str, set[str]]:
    """Attribute names per scope in one table of spans."""
    names: dict[str, set[str]] = {scope: set() for scope in NAME_SCOPES}
    if "attributes" in table.column_names:
        names["span"] |= _strings(_keys(_flat_attributes(table)))
    for res in _resources(table):
        names["resource"].update(kv.key for kv in res.attributes if kv.key)
    if "scope" in table.column_names and table.num_rows:
        for blob in _distinct_blobs(table["scope"]):
            names["instrumentation"].update(kv.key for kv in scope_of(blob).attributes if kv.key)
    for column, scope in (("events", "event"), ("links", "link")):
        if column not in table.column_names:
            continue
        blobs = table[column].combine_chunks()
        for row in np.flatnonzero(pc.binary_length(blobs).to_numpy(zero_copy_only=False) > 0):
            span = Span.FromString(blobs[int(row)].as_py())  # only spans that have events/links
            for item in span.events if column == "events" else span.links:
                names[scope].update(kv.key for kv in item.attributes if kv.key)
    return names


def _merge(into: dict[str, set[str]], names: dict[str, set[str]]) -> None:
    for scope, found in names.items():
        into[scope] |= found


def tag_names(source: _Scan) -> dict[str, set[str]]:
    """Attribute names per scope: each block's once (blocks never change, the answer is kept with
    its reader), the ingesters' spans each time."""
    names: dict[str, set[str]] = {scope: set() for scope in NAME_SCOPES}
    if source.query is not None:  # only the matching spans' names: nothing to keep
        for table in source.tables(_NAME_COLUMNS):
            _merge(names, _names_of(table))
        return names
    for reader in source.readers:
        cached = reader.memo.get("tag_names")
        if cached is None:
            cached = {scope: set() for scope in NAME_SCOPES}
            for table in source._block_tables(_NAME_COLUMNS, [reader]):
                _merge(cached, _names_of(table))
            reader.memo["tag_names"] = cached
        _merge(names, cached)
    for table in source._recent_tables(_NAME_COLUMNS):
        _merge(names, _names_of(table))
    return names


def tags_v1(source: _Scan, limit: int | None) -> dict:
    names = tag_names(source)
    merged = sorted(set().union(*names.values()))
    return {"tagNames": merged[:limit], "metrics": _metrics(source)}


def tags_v2(source: _Scan, scope: str, limit: int | None) -> dict:
    """Tempo's ``scopes`` answer; ``scope`` is ``""`` (all) or one of ``KNOWN_SCOPES``."""
    if scope not in ("", "all", "none", *KNOWN_SCOPES):
        raise TagError(f"invalid scope: {scope}")
    wanted = V2_SCOPES if scope in ("", "all", "none") else (scope,)
    names = tag_names(source) if set(NAME_SCOPES) & set(wanted) else {}
    scopes = []
    for name in wanted:
        if name == "intrinsic":
            tags = list(INTRINSIC_TAGS)
        elif names.get(name):
            tags = sorted(names[name])
        else:
            continue  # a scope without names is left out, as Tempo does
        scopes.append({"name": name, "tags": tags[:limit]})
    return {"scopes": scopes, "metrics": _metrics(source)}


# ---------------------------------------------------------------- tag values


@dataclass(frozen=True)
class Tag:
    """A parsed v2 tag: an attribute (``scope`` ``resource``/``span``/``""`` for either, ...) or an
    intrinsic (``scope`` ``intrinsic``, ``name`` its canonical spelling)."""

    scope: str
    name: str


def parse_tag(text: str) -> Tag:
    """A TraceQL identifier as Tempo accepts it for v2 tag values; anything else is a 400."""
    if text in INTRINSIC_TAGS:
        return Tag("intrinsic", text)
    for prefix in _ATTRIBUTE_SCOPES:
        if text.startswith(prefix) and len(text) > len(prefix):
            name = text[len(prefix) :]
            if len(name) >= 2 and name[0] == name[-1] == '"':
                name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            return Tag(prefix.rstrip(".") or "", name)
    raise TagError(
        f'please provide a valid tagName: "{text}" is neither an intrinsic nor a scoped attribute '
        "(resource.x, span.x or .x)"
    )


def _span_values(table: pa.Table, name: str) -> set[TypedValue]:
    found = Entries.concat([attribute_entries(chunk, name) for chunk in table["attributes"].chunks])
    types = found.types

    def distinct(values: np.ndarray, attr_type: AttrType) -> list:
        return pc.unique(pa.array(values[types == attr_type])).to_pylist()

    out: set[TypedValue] = {
        ("string", v) for v in _strings(found.strs.filter(pa.array(types == AttrType.STRING)))
    }
    out |= {("int", str(v)) for v in distinct(found.ints, AttrType.INT)}
    out |= {("float", go_float(v)) for v in distinct(found.doubles, AttrType.DOUBLE)}
    out |= {("bool", "true" if v else "false") for v in distinct(found.ints, AttrType.BOOL)}
    if name in _DEDICATED and name in table.column_names:
        column = table[name]  # the dedicated column was read under the attribute's key, see below
        if _DEDICATED[name][1] == AttrType.STRING:
            out |= {("string", v) for v in _strings(column)}
        else:
            out |= {("int", str(v)) for v in pc.unique(column.combine_chunks().drop_null()).to_pylist()}
    return out


def _with_dedicated(table: pa.Table, name: str) -> pa.Table:
    """Expose the dedicated column of attribute ``name`` under the attribute's own key."""
    column = _DEDICATED.get(name, (None,))[0]
    if column is None or column not in table.column_names:
        return table
    return table.append_column(name, table[column])


def _resource_values(table: pa.Table, name: str) -> set[TypedValue]:
    out: set[TypedValue] = set()
    for res in _resources(table):
        for kv in res.attributes:
            if kv.key == name:
                typed = _any_value(kv.value)
                if typed is not None:
                    out.add(typed)
    return out


_INTRINSIC_COLUMNS = {
    "name": "name",
    "span:name": "name",
    "statusMessage": "status_message",
    "span:statusMessage": "status_message",
    "instrumentation:name": "scope_name",
    "instrumentation:version": "scope_version",
}
_ROOT_COLUMNS = {
    "rootName": "name",
    "trace:rootName": "name",
    "rootServiceName": "service_name",
    "trace:rootService": "service_name",
}


def _intrinsic_values(source: _Scan, name: str) -> list[TypedValue]:
    if name in ("status", "span:status"):
        return [("keyword", k) for k in STATUS_KEYWORDS]
    if name in ("kind", "span:kind"):
        return [("keyword", k) for k in KIND_KEYWORDS]
    values: set[str] = set()
    if name in _INTRINSIC_COLUMNS:
        for table in source.tables([_INTRINSIC_COLUMNS[name]]):
            values |= _strings(table.column(0))
    elif name in _ROOT_COLUMNS:
        for table in source.tables([_ROOT_COLUMNS[name], "parent_index", "parent_span_id"]):
            if "parent_index" in table.column_names:
                root = pc.and_(pc.is_null(table["parent_index"]), pc.is_null(table["parent_span_id"]))
            else:  # the ingesters' span tables: a root has no parent id
                root = pc.equal(pc.binary_length(table["parent_span_id"]), 0)
            values |= _strings(table[_ROOT_COLUMNS[name]].filter(root))
    # durations and event intrinsics: no values (Tempo answers an empty list for durations too)
    return [("string", v) for v in sorted(values)]


def tag_values(source: _Scan, tag: Tag) -> list[TypedValue]:
    """Distinct typed values of ``tag``, sorted by type then value."""
    if tag.scope == "intrinsic":
        return _intrinsic_values(source, tag.name)
    if tag.scope not in ("", "resource", "span"):
        return []
    columns = []
    if tag.scope in ("", "span"):
        columns.append("attributes")
        if tag.name in _DEDICATED:
            columns.append(_DEDICATED[tag.name][0])
    if tag.scope in ("", "resource"):
        columns.append("resource")
    found: set[TypedValue] = set()
    for table in source.tables(columns):
        if "attributes" in columns:
            found |= _span_values(_with_dedicated(table, tag.name), tag.name)
        if "resource" in columns:
            found |= _resource_values(table, tag.name)
    return sorted(found)


def tag_values_v2(source: _Scan, tag: Tag, limit: int | None) -> dict:
    values = tag_values(source, tag)[:limit]
    return {"tagValues": [{"type": t, "value": v} for t, v in values], "metrics": _metrics(source)}


def tag_values_v1(source: _Scan, name: str, limit: int | None) -> dict:
    """v1 takes a plain attribute name (either scope) and answers its string values only."""
    strings = sorted(v for t, v in tag_values(source, Tag("", name)) if t == "string")
    return {"tagValues": strings[:limit], "metrics": _metrics(source)}


def _metrics(source: _Scan) -> dict[str, str]:
    return {"inspectedBytes": str(source.inspected)} if source.inspected else {}


def parse_limit(text: str | None) -> int | None:
    """``limit`` as a positive int; absent or 0 means no limit."""
    return count_param({"limit": text or ""}, "limit", 0) or None
