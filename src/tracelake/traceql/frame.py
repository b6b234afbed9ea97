"""Spans of whole traces as the TraceQL evaluator sees them: columns plus per-trace structure.

A ``SpanFrame`` wraps rows in the block layout (``encoding/v1/layout.BLOCK_SCHEMA``: ``duration_nano``,
``parent_index``), any subset of columns, rows grouped by trace (row groups never split a trace). What
several conditions need (trace boundaries, each span's parent row, one attribute's entries) is computed
once per frame and cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tracelake.codec.attributes_wire import key_entries
from tracelake.model.ids import id_matrix, trace_starts
from tracelake.model.schema import DEDICATED_RESOURCE_ATTRIBUTES, DEDICATED_SPAN_ATTRIBUTES, AttrType

DEDICATED_SPAN = {key: (column, type_) for key, column, type_ in DEDICATED_SPAN_ATTRIBUTES}
DEDICATED_RESOURCE = dict(DEDICATED_RESOURCE_ATTRIBUTES)


@dataclass
class Entries:
    """Typed values of one attribute: entry ``i`` belongs to row ``rows[i]`` (a span, or a dictionary
    index for resource/scope values). Only the field matching ``types[i]`` is meaningful."""

    rows: np.ndarray
    types: np.ndarray  # AttrType values (uint8)
    strs: pa.Array  # string
    ints: np.ndarray  # int64 (INT and BOOL)
    doubles: np.ndarray  # float64

    @staticmethod
    def empty() -> Entries:
        return Entries(
            np.zeros(0, np.int64), np.zeros(0, np.uint8), pa.array([], pa.string()), np.zeros(0, np.int64),
            np.zeros(0, np.float64),
        )  # fmt: skip

    @staticmethod
    def concat(parts: list[Entries]) -> Entries:
        parts = [p for p in parts if len(p.rows)]
        if not parts:
            return Entries.empty()
        if len(parts) == 1:
            return parts[0]
        return Entries(
            np.concatenate([p.rows for p in parts]),
            np.concatenate([p.types for p in parts]),
            pa.concat_arrays([p.strs for p in parts]),
            np.concatenate([p.ints for p in parts]),
            np.concatenate([p.doubles for p in parts]),
        )


def _py_entries(values: list[tuple[int, AnyValue]]) -> Entries:
    """Entries from protobuf values (resources, scopes, events, links: a handful per frame)."""
    if not values:
        return Entries.empty()
    rows, types, strs, ints, doubles = [], [], [], [], []
    for row, value in values:
        which = value.WhichOneof("value")
        s, i, d = "", 0, 0.0
        if which == "string_value":
            t, s = AttrType.STRING, value.string_value
        elif which == "int_value":
            t, i = AttrType.INT, value.int_value
        elif which == "double_value":
            t, d = AttrType.DOUBLE, value.double_value
        elif which == "bool_value":
            t, i = AttrType.BOOL, int(value.bool_value)
        elif which is None:
            t = AttrType.EMPTY
        else:
            t = AttrType.BYTES  # bytes, arrays and kvlists compare with nothing but nil
        rows.append(row)
        types.append(int(t))
        strs.append(s)
        ints.append(i)
        doubles.append(d)
    return Entries(
        np.array(rows, np.int64),
        np.array(types, np.uint8),
        pa.array(strs, pa.string()),
        np.array(ints, np.int64),
        np.array(doubles, np.float64),
    )


@lru_cache(maxsize=8192)
def resource_of(blob: bytes) -> Resource:
    """A stored resource, parsed once per distinct value (blocks hold a few hundred at most)."""
    return Resource.FromString(blob)


@lru_cache(maxsize=8192)
def scope_of(blob: bytes) -> InstrumentationScope:
    return InstrumentationScope.FromString(blob)


def plain(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One chunk, dictionary decoded."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks else pa.array([], array.type)
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    return array


def attribute_entries(attributes: pa.Array, key: str, row0: int = 0) -> Entries:
    """Entries of span attribute ``key`` in one chunk of an ``attributes`` column, either form: block
    rows' wire bytes (format tl2: only that key is decoded) or the span table's typed lists."""
    if pa.types.is_binary(attributes.type):
        rows, types, strs, ints, doubles = key_entries(attributes, key)
        return Entries(rows + row0, types.copy(), strs, ints, doubles)
    return _list_entries(attributes, key, row0)


def _list_entries(attributes: pa.ListArray, key: str, row0: int) -> Entries:
    """Entries of ``key`` in one chunk of the ``attributes`` list column (dedicated placeholders
    excluded: their value is in the dedicated column)."""
    flat = attributes.flatten()
    if not len(flat):
        return Entries.empty()
    keys = flat.field("key")
    if pa.types.is_dictionary(keys.type):
        hit = pc.equal(keys.dictionary, pa.scalar(key, keys.dictionary.type)).to_numpy(zero_copy_only=False)
        if not hit.any():
            return Entries.empty()
        picked = np.flatnonzero(hit[pc.fill_null(keys.indices, 0).to_numpy()])
    else:
        picked = np.flatnonzero(pc.equal(keys, pa.scalar(key, pa.string())).to_numpy(zero_copy_only=False))
    if not len(picked):
        return Entries.empty()
    types = flat.field("type").take(pa.array(picked)).to_numpy()
    keep = types != AttrType.DEDICATED
    picked, types = picked[keep], types[keep].copy()
    take = pa.array(picked, pa.int64())
    parents = pc.list_parent_indices(attributes).to_numpy()
    return Entries(
        parents[picked].astype(np.int64) + row0,
        types,
        plain(flat.field("str").take(take)),
        flat.field("int").take(take).to_numpy(),
        flat.field("double").take(take).to_numpy(),
    )


class SpanFrame:
    def __init__(self, table: pa.Table, first_rows: np.ndarray | None = None) -> None:
        """``first_rows``: each trace's first row when known (a block's summary has them), so the
        trace id column need not be read."""
        self.table = table
        self.n = table.num_rows
        self._columns: dict[str, pa.Array] = {}
        self._entries: dict[tuple[str, str], Entries] = {}
        if first_rows is not None:
            self.__dict__["first_rows"] = first_rows  # fills the cached property

    def column(self, name: str) -> pa.Array:
        """One chunk of ``name`` (a dictionary column stays a dictionary: compare its values once)."""
        array = self._columns.get(name)
        if array is None:
            chunked = self.table[name]
            if chunked.num_chunks == 1:
                array = chunked.chunk(0)
            elif pa.types.is_dictionary(chunked.type):
                array = chunked.unify_dictionaries().combine_chunks() if chunked.num_chunks else None
                array = array if array is not None else pa.array([], chunked.type)
            else:
                array = chunked.combine_chunks() if chunked.num_chunks else pa.array([], chunked.type)
            self._columns[name] = array
        return array

    def has(self, name: str) -> bool:
        return name in self.table.column_names

    # ------------------------------------------------------------------ trace structure

    @cached_property
    def first_rows(self) -> np.ndarray:
        """First row of each trace."""
        if self.n == 0:
            return np.zeros(0, np.int64)
        return np.flatnonzero(trace_starts(id_matrix(self.column("trace_id"))))

    @cached_property
    def trace_of_row(self) -> np.ndarray:
        marks = np.zeros(self.n, np.int64)
        marks[self.first_rows] = 1
        return np.cumsum(marks) - 1

    @property
    def traces(self) -> int:
        return len(self.first_rows)

    @cached_property
    def parent_row(self) -> np.ndarray:
        """Each span's parent row in this frame, -1 when the parent is absent or not in the trace."""
        index = self.column("parent_index")
        local = pc.fill_null(index, -1).to_numpy().astype(np.int64)
        first = self.first_rows[self.trace_of_row]
        return np.where(local >= 0, first + local, -1)

    @cached_property
    def root_rows(self) -> np.ndarray:
        """Each trace's root: its earliest span without a parent; -1 when it has not arrived."""
        parentless = np.flatnonzero(
            pc.and_(
                pc.is_null(self.column("parent_index")), pc.is_null(self.column("parent_span_id"))
            ).to_numpy(zero_copy_only=False)
        )
        roots = np.full(self.traces, -1, np.int64)
        traces, first = np.unique(self.trace_of_row[parentless], return_index=True)
        roots[traces] = parentless[first]
        return roots

    @cached_property
    def starts(self) -> np.ndarray:
        return self.column("start_time_unix_nano").to_numpy()

    @cached_property
    def durations(self) -> np.ndarray:
        return self.column("duration_nano").to_numpy()

    @cached_property
    def trace_durations(self) -> np.ndarray:
        """Per trace: latest end minus earliest start (0 when negative)."""
        if self.n == 0:
            return np.zeros(0, np.uint64)
        start = np.minimum.reduceat(self.starts, self.first_rows)
        end = np.maximum.reduceat(self.starts + self.durations, self.first_rows)
        return np.where(end > start, end - start, 0).astype(np.uint64)

    def any_per_trace(self, mask: np.ndarray) -> np.ndarray:
        if self.n == 0:
            return np.zeros(0, bool)
        return np.logical_or.reduceat(mask, self.first_rows)

    def per_span(self, per_trace: np.ndarray) -> np.ndarray:
        return per_trace[self.trace_of_row]

    # ------------------------------------------------------------------ attribute entries

    def span_entries(self, key: str) -> Entries:
        """Span attribute ``key``: generic list entries plus its dedicated column."""
        cached = self._entries.get(("span", key))
        if cached is not None:
            return cached
        parts = []
        if self.has("attributes"):
            row0 = 0
            for chunk in self.table["attributes"].chunks:  # chunks may carry different key dictionaries
                parts.append(attribute_entries(chunk, key, row0))
                row0 += len(chunk)
        dedicated = DEDICATED_SPAN.get(key)
        if dedicated is not None and self.has(dedicated[0]):
            parts.append(self._column_entries(dedicated[0], dedicated[1]))
        entries = Entries.concat(parts)
        self._entries[("span", key)] = entries
        return entries

    def _column_entries(self, column: str, type_: AttrType) -> Entries:
        values = plain(self.column(column))
        rows = np.flatnonzero(values.is_valid().to_numpy(zero_copy_only=False))
        present = values.take(pa.array(rows))
        count = len(rows)
        if type_ == AttrType.STRING:
            return Entries(rows, np.full(count, int(type_), np.uint8), present,
                           np.zeros(count, np.int64), np.zeros(count, np.float64))  # fmt: skip
        return Entries(rows, np.full(count, int(type_), np.uint8), pa.nulls(count, pa.string()).fill_null(""),
                       present.to_numpy(), np.zeros(count, np.float64))  # fmt: skip

    def dedicated_resource_entries(self, column: str) -> tuple[Entries, np.ndarray]:
        """A dedicated resource column (dictionary of strings) as entries per dictionary value."""
        array = self.column(column)
        if not pa.types.is_dictionary(array.type):
            array = array.dictionary_encode()
        indices = pc.fill_null(array.indices, -1).to_numpy().astype(np.int64)
        values = array.dictionary.cast(pa.string())
        count = len(values)
        entries = Entries(
            np.arange(count, dtype=np.int64),
            np.full(count, int(AttrType.STRING), np.uint8),
            pc.fill_null(values, ""),
            np.zeros(count, np.int64),
            np.zeros(count, np.float64),
        )
        return entries, indices

    def dictionary_entries(self, column: str, key: str) -> tuple[Entries, np.ndarray]:
        """Attribute ``key`` of each distinct resource or scope: entries whose rows are dictionary
        indices, and each span's index (-1 when none)."""
        array = self.column(column)
        if not pa.types.is_dictionary(array.type):
            array = array.dictionary_encode()
        indices = pc.fill_null(array.indices, -1).to_numpy().astype(np.int64)
        parse = resource_of if column == "resource" else scope_of
        values = []
        for i, blob in enumerate(array.dictionary.to_pylist()):
            if blob is None:
                continue
            for kv in parse(blob).attributes:
                if kv.key == key:
                    values.append((i, kv.value))
        return _py_entries(values), indices

    def nested_entries(self, column: str, key: str | None) -> Entries:
        """Attribute ``key`` of each span's events or links (``key`` None: event names), decoded per
        span that has any: only queries naming ``event.``/``link.`` pay for it."""
        blobs = plain(self.column(column))
        lengths = pc.binary_length(blobs).to_numpy(zero_copy_only=False)
        values: list[tuple[int, AnyValue]] = []
        for row in np.flatnonzero(lengths > 0):
            span = Span.FromString(blobs[int(row)].as_py())
            items = span.events if column == "events" else span.links
            for item in items:
                if key is None:
                    values.append((int(row), AnyValue(string_value=item.name)))
                    continue
                for kv in item.attributes:
                    if kv.key == key:
                        values.append((int(row), kv.value))
        return _py_entries(values)

    def link_ids(self, field: str) -> Entries:
        """Hex trace or span ids of each span's links."""
        blobs = plain(self.column("links"))
        lengths = pc.binary_length(blobs).to_numpy(zero_copy_only=False)
        values = []
        for row in np.flatnonzero(lengths > 0):
            for link in Span.FromString(blobs[int(row)].as_py()).links:
                values.append((int(row), AnyValue(string_value=getattr(link, field).hex())))
        return _py_entries(values)
