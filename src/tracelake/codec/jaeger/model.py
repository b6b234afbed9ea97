"""The jaeger.thrift structs (jaegertracing/jaeger-idl thrift/jaeger.thrift) and the Agent call envelope.

Reading mirrors what Thrift-generated Go code does, because that is what Tempo ran: a known field id
arriving with an unexpected wire type is skipped, unknown fields are skipped, and a missing
``required`` field is an error. Lists stay ``None`` when absent and ``[]`` when sent empty: the
collector's "blank span" check tells the two apart.

Field numbers (jaeger.thrift):
    Tag{1 key, 2 vType, 3 vStr, 4 vDouble, 5 vBool, 6 vLong, 7 vBinary}
    Log{1 timestamp, 2 fields}
    SpanRef{1 refType, 2 traceIdLow, 3 traceIdHigh, 4 spanId}
    Span{1 traceIdLow, 2 traceIdHigh, 3 spanId, 4 parentSpanId, 5 operationName, 6 references, 7 flags,
         8 startTime, 9 duration, 10 tags, 11 logs, 12 incomplete}
    Process{1 serviceName, 2 tags}
    Batch{1 process, 2 spans, 3 seqNo, 4 stats (skipped)}
agent.thrift: ``oneway void emitBatch(1: jaeger.Batch batch)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tracelake.codec.jaeger.thrift import (
    BOOL,
    CALL,
    DOUBLE,
    I32,
    I64,
    LIST,
    ONEWAY,
    STOP,
    STRING,
    STRUCT,
    ThriftReader,
    ThriftWriter,
    reader_for,
)
from tracelake.errors import InvalidInputError

# TagType
TAG_STRING = 0
TAG_DOUBLE = 1
TAG_BOOL = 2
TAG_LONG = 3
TAG_BINARY = 4

# SpanRefType
CHILD_OF = 0
FOLLOWS_FROM = 1

EMIT_BATCH = "emitBatch"

T = TypeVar("T")


@dataclass(slots=True)
class Tag:
    key: str
    v_type: int
    v_str: str | None = None
    v_double: float | None = None
    v_bool: bool | None = None
    v_long: int | None = None
    v_binary: bytes | None = None


@dataclass(slots=True)
class Log:
    timestamp: int
    fields: list[Tag]


@dataclass(slots=True)
class SpanRef:
    ref_type: int
    trace_id_low: int
    trace_id_high: int
    span_id: int


@dataclass(slots=True)
class Span:
    trace_id_low: int
    trace_id_high: int
    span_id: int
    parent_span_id: int
    operation_name: str
    flags: int
    start_time: int  # µs since the epoch
    duration: int  # µs
    references: list[SpanRef] | None = None
    tags: list[Tag] | None = None
    logs: list[Log] | None = None
    incomplete: bool | None = None


@dataclass(slots=True)
class Process:
    service_name: str
    tags: list[Tag] | None = None


@dataclass(slots=True)
class Batch:
    process: Process
    spans: list[Span]
    seq_no: int | None = None


# ==================================================================================================
# reading


def _missing(struct_name: str, field_name: str) -> InvalidInputError:
    return InvalidInputError(f"invalid jaeger thrift: required field {struct_name}.{field_name} is not set")


def _read_list(r: ThriftReader, read_elem: Callable[[ThriftReader], T], elem_type: int, what: str) -> list[T]:
    etype, size = r.read_list_begin()
    if size and etype != elem_type:
        raise r.error(f"{what} holds elements of type {etype}, expected {elem_type}")
    return [read_elem(r) for _ in range(size)]


def read_tag(r: ThriftReader) -> Tag:
    r.read_struct_begin()
    key: str | None = None
    v_type: int | None = None
    tag = Tag("", 0)
    while True:
        ftype, fid = r.read_field_begin()
        if ftype == STOP:
            break
        if fid == 1 and ftype == STRING:
            key = r.read_string()
        elif fid == 2 and ftype == I32:
            v_type = r.read_i32()
        elif fid == 3 and ftype == STRING:
            tag.v_str = r.read_string()
        elif fid == 4 and ftype == DOUBLE:
            tag.v_double = r.read_double()
        elif fid == 5 and ftype == BOOL:
            tag.v_bool = r.read_bool()
        elif fid == 6 and ftype == I64:
            tag.v_long = r.read_i64()
        elif fid == 7 and ftype == STRING:
            tag.v_binary = r.read_binary()
        else:
            r.skip(ftype, 1)
    r.read_struct_end()
    if key is None:
        raise _missing("Tag", "key")
    if v_type is None:
        raise _missing("Tag", "vType")
    tag.key = key
    tag.v_type = v_type
    return tag


def _read_tags(r: ThriftReader) -> list[Tag]:
    return _read_list(r, read_tag, STRUCT, "tag list")


def read_log(r: ThriftReader) -> Log:
    r.read_struct_begin()
    timestamp: int | None = None
    fields: list[Tag] | None = None
    while True:
        ftype, fid = r.read_field_begin()
        if ftype == STOP:
            break
        if fid == 1 and ftype == I64:
            timestamp = r.read_i64()
        elif fid == 2 and ftype == LIST:
            fields = _read_tags(r)
        else:
            r.skip(ftype, 1)
    r.read_struct_end()
    if timestamp is None:
        raise _missing("Log", "timestamp")
    if fields is None:
        raise _missing("Log", "fields")
    return Log(timestamp, fields)


def read_span_ref(r: ThriftReader) -> SpanRef:
    r.read_struct_begin()
    values: list[int | None] = [None, None, None, None]
    while True:
        ftype, fid = r.read_field_begin()
        if ftype == STOP:
            break
        if fid == 1 and ftype == I32:
            values[0] = r.read_i32()
        elif 2 <= fid <= 4 and ftype == I64:
            values[fid - 1] = r.read_i64()
        else:
            r.skip(ftype, 1)
    r.read_struct_end()
    for value, name in zip(values, ("refType", "traceIdLow", "traceIdHigh", "spanId"), strict=True):
        if value is None:
            raise _missing("SpanRef", name)
    ref_type, low, high, span_id = values
    return SpanRef(ref_type, low, high, span_id)  # type: ignore[arg-type]


_SPAN_I64_FIELDS = {1: 0, 2: 1, 3: 2, 4: 3, 8: 4, 9: 5}
_SPAN_REQUIRED = (
    (0, "traceIdLow"),
    (1, "traceIdHigh"),
    (2, "spanId"),
    (3, "parentSpanId"),
    (4, "startTime"),
    (5, "duration"),
)


def read_span(r: ThriftReader) -> Span:
    r.read_struct_begin()
    ints: list[int | None] = [None] * 6
    name: str | None = None
    flags: int | None = None
    references: list[SpanRef] | None = None
    tags: list[Tag] | None = None
    logs: list[Log] | None = None
    incomplete: bool | None = None
    while True:
        ftype, fid = r.read_field_begin()
        if ftype == STOP:
            break
        slot = _SPAN_I64_FIELDS.get(fid)
        if slot is not None and ftype == I64:
            ints[slot] = r.read_i64()
        elif fid == 5 and ftype == STRING:
            name = r.read_string()
        elif fid == 6 and ftype == LIST:
            references = _read_list(r, read_span_ref, STRUCT, "reference list")
        elif fid == 7 and ftype == I32:
            flags = r.read_i32()
        elif fid == 10 and ftype == LIST:
            tags = _read_tags(r)
        elif fid == 11 and ftype == LIST:
            logs = _read_list(r, read_log, STRUCT, "log list")
        elif fid == 12 and ftype == BOOL:
            incomplete = r.read_bool()
        else:
            r.skip(ftype, 1)
    r.read_struct_end()
    for slot, field_name in _SPAN_REQUIRED:
        if ints[slot] is None:
            raise _missing("Span", field_name)
    if name is None:
        raise _missing("Span", "operationName")
    if flags is None:
        raise _missing("Span", "flags")
    low, high, span_id, parent, start, duration = ints
    return Span(
        trace_id_low=low,  # type: ignore[arg-type]
        trace_id_high=high,  # type: ignore[arg-type]
        span_id=span_id,  # type: ignore[arg-type]
        parent_span_id=parent,  # type: ignore[arg-type]
        operation_name=name,
        flags=flags,
        start_time=start,  # type: ignore[arg-type]
        duration=duration,  # type: ignore[arg-type]
        references=references,
        tags=tags,
        logs=logs,
        incomplete=incomplete,
    )


def read_process(r: ThriftReader) -> Process:
    r.read_struct_begin()
    service_name: str | None = None
    tags: list[Tag] | None = None
    while True:
        ftype, fid = r.read_field_begin()
        if ftype == STOP:
            break
        if fid == 1 and ftype == STRING:
            service_name = r.read_string()
        elif fid == 2 and ftype == LIST:
            tags = _read_tags(r)
        else:
            r.skip(ftype, 1)
    r.read_struct_end()
    if service_name is None:
        raise _missing("Process", "serviceName")
    return Process(service_name, tags)


def read_batch(r: ThriftReader) -> Batch:
    r.read_struct_begin()
    process: Process | None = None
    spans: list[Span] | None = None
    seq_no: int | None = None
    while True:
        ftype, fid = r.read_field_begin()
        if ftype == STOP:
            break
        if fid == 1 and ftype == STRUCT:
            process = read_process(r)
        elif fid == 2 and ftype == LIST:
            spans = _read_list(r, read_span, STRUCT, "span list")
        elif fid == 3 and ftype == I64:
            seq_no = r.read_i64()
        else:
            r.skip(ftype, 1)  # 4: ClientStats, and anything newer
    r.read_struct_end()
    if process is None:
        raise _missing("Batch", "process")
    if spans is None:
        raise _missing("Batch", "spans")
    return Batch(process, spans, seq_no)


def decode_batch(body: bytes, protocol: str = "binary") -> Batch:
    """A bare serialized ``Batch`` struct, as POSTed to the collector's ``/api/traces``.

    Bytes after the struct are ignored, as Jaeger's own deserializer ignores them.
    """
    return read_batch(reader_for(protocol, body))


def decode_emit_batch(datagram: bytes, protocol: str) -> Batch:
    """An ``Agent.emitBatch`` call message (a UDP datagram to the agent ports) -> its ``Batch``."""
    r = reader_for(protocol, datagram)
    name, mtype, _seqid = r.read_message_begin()
    if name != EMIT_BATCH:
        raise InvalidInputError(f"unsupported jaeger agent method {name!r}: only {EMIT_BATCH!r} is accepted")
    if mtype not in (CALL, ONEWAY):
        raise InvalidInputError(f"jaeger agent message has type {mtype}, expected a call (1) or oneway (4)")
    batch: Batch | None = None
    r.read_struct_begin()
    while True:
        ftype, fid = r.read_field_begin()
        if ftype == STOP:
            break
        if fid == 1 and ftype == STRUCT:
            batch = read_batch(r)
        else:
            r.skip(ftype, 1)
    r.read_struct_end()
    if batch is None:
        raise InvalidInputError("jaeger agent emitBatch call carries no batch argument")
    return batch


# ==================================================================================================
# writing (tests and tools that need real Jaeger payloads)


def _write_list(w: ThriftWriter, items: list[T], write_elem: Callable[[ThriftWriter, T], None]) -> None:
    w.write_list_begin(STRUCT, len(items))
    for item in items:
        write_elem(w, item)


def write_tag(w: ThriftWriter, tag: Tag) -> None:
    w.write_struct_begin()
    w.write_field_begin(STRING, 1)
    w.write_string(tag.key)
    w.write_field_begin(I32, 2)
    w.write_i32(tag.v_type)
    if tag.v_str is not None:
        w.write_field_begin(STRING, 3)
        w.write_string(tag.v_str)
    if tag.v_double is not None:
        w.write_field_begin(DOUBLE, 4)
        w.write_double(tag.v_double)
    if tag.v_bool is not None:
        w.write_field_begin(BOOL, 5)
        w.write_bool(tag.v_bool)
    if tag.v_long is not None:
        w.write_field_begin(I64, 6)
        w.write_i64(tag.v_long)
    if tag.v_binary is not None:
        w.write_field_begin(STRING, 7)
        w.write_binary(tag.v_binary)
    w.write_field_stop()
    w.write_struct_end()


def write_log(w: ThriftWriter, log: Log) -> None:
    w.write_struct_begin()
    w.write_field_begin(I64, 1)
    w.write_i64(log.timestamp)
    w.write_field_begin(LIST, 2)
    _write_list(w, log.fields, write_tag)
    w.write_field_stop()
    w.write_struct_end()


def write_span_ref(w: ThriftWriter, ref: SpanRef) -> None:
    w.write_struct_begin()
    w.write_field_begin(I32, 1)
    w.write_i32(ref.ref_type)
    for fid, value in ((2, ref.trace_id_low), (3, ref.trace_id_high), (4, ref.span_id)):
        w.write_field_begin(I64, fid)
        w.write_i64(value)
    w.write_field_stop()
    w.write_struct_end()


def write_span(w: ThriftWriter, span: Span) -> None:
    w.write_struct_begin()
    for fid, value in (
        (1, span.trace_id_low),
        (2, span.trace_id_high),
        (3, span.span_id),
        (4, span.parent_span_id),
    ):
        w.write_field_begin(I64, fid)
        w.write_i64(value)
    w.write_field_begin(STRING, 5)
    w.write_string(span.operation_name)
    if span.references is not None:
        w.write_field_begin(LIST, 6)
        _write_list(w, span.references, write_span_ref)
    w.write_field_begin(I32, 7)
    w.write_i32(span.flags)
    w.write_field_begin(I64, 8)
    w.write_i64(span.start_time)
    w.write_field_begin(I64, 9)
    w.write_i64(span.duration)
    if span.tags is not None:
        w.write_field_begin(LIST, 10)
        _write_list(w, span.tags, write_tag)
    if span.logs is not None:
        w.write_field_begin(LIST, 11)
        _write_list(w, span.logs, write_log)
    if span.incomplete is not None:
        w.write_field_begin(BOOL, 12)
        w.write_bool(span.incomplete)
    w.write_field_stop()
    w.write_struct_end()


def write_process(w: ThriftWriter, process: Process) -> None:
    w.write_struct_begin()
    w.write_field_begin(STRING, 1)
    w.write_string(process.service_name)
    if process.tags is not None:
        w.write_field_begin(LIST, 2)
        _write_list(w, process.tags, write_tag)
    w.write_field_stop()
    w.write_struct_end()


def write_batch(w: ThriftWriter, batch: Batch) -> None:
    w.write_struct_begin()
    w.write_field_begin(STRUCT, 1)
    write_process(w, batch.process)
    w.write_field_begin(LIST, 2)
    _write_list(w, batch.spans, write_span)
    if batch.seq_no is not None:
        w.write_field_begin(I64, 3)
        w.write_i64(batch.seq_no)
    w.write_field_stop()
    w.write_struct_end()


def write_emit_batch(w: ThriftWriter, batch: Batch, seqid: int = 0, mtype: int = ONEWAY) -> None:
    """The ``Agent.emitBatch`` call a Jaeger client sends to the agent's UDP port."""
    w.write_message_begin(EMIT_BATCH, mtype, seqid)
    w.write_struct_begin()
    w.write_field_begin(STRUCT, 1)
    write_batch(w, batch)
    w.write_field_stop()
    w.write_struct_end()
