"""The ingester service's messages, encoded by hand on the protobuf wire (no generated code).

As a .proto (field numbers are the contract)::

    service tracelake.ingester.Ingester {
      rpc Push(PushRequest) returns (PushResponse);
      rpc FindTrace(FindTraceRequest) returns (Tables);        // Arrow IPC streams
      rpc RecentSpans(TenantRequest) returns (stream Table);   // one Arrow IPC stream per message
      rpc RecentBlocks(TenantRequest) returns (Json);          // [meta.json, ...]
    }
    message PushRequest { string tenant = 1; uint64 received_unix_nano = 2; repeated bytes batches = 3; }
    message PushResponse { repeated BatchResult results = 1; }   // one per batch, in order
    message BatchResult { uint64 accepted = 1; repeated Refused refused = 2; uint32 error_status = 3;
                          string error_message = 4; string error_reason = 5; uint64 retry_after_ms = 6; }
    message Refused { string reason = 1; uint64 spans = 2; }
    message FindTraceRequest { string tenant = 1; bytes trace_id = 2; }
    message TenantRequest { string tenant = 1; }
    message Tables { repeated bytes tables = 1; }

Each batch is an OTLP ``ExportTraceServiceRequest`` holding the spans of the traces that share one
replica set; ``error_status`` (an HTTP status, 0 = none) says why a batch was not stored.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa

from tracelake.otlp.split import iter_fields, read_varint
from tracelake.otlp.wire import encode_varint, len_field

SERVICE = "tracelake.ingester.Ingester"
PUSH = f"/{SERVICE}/Push"
FIND_TRACE = f"/{SERVICE}/FindTrace"
RECENT_SPANS = f"/{SERVICE}/RecentSpans"
RECENT_BLOCKS = f"/{SERVICE}/RecentBlocks"


def _uint(number: int, value: int) -> bytes:
    return encode_varint(number << 3) + encode_varint(value) if value else b""


def _str(number: int, value: str) -> bytes:
    return len_field(number, value.encode()) if value else b""


def _varint_value(data: bytes, start: int) -> int:
    return read_varint(data, start)[0]


@dataclass
class PushRequest:
    tenant: str
    received_unix_nano: int
    batches: list[bytes]

    def encode(self) -> bytes:
        return (
            _str(1, self.tenant)
            + _uint(2, self.received_unix_nano)
            + b"".join(len_field(3, b) for b in self.batches)
        )

    @classmethod
    def decode(cls, data: bytes) -> PushRequest:
        msg = cls("", 0, [])
        for number, _, value, end in iter_fields(data):
            if number == 1:
                msg.tenant = data[value:end].decode()
            elif number == 2:
                msg.received_unix_nano = _varint_value(data, value)
            elif number == 3:
                msg.batches.append(data[value:end])
        return msg


@dataclass
class BatchResult:
    accepted: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    error_status: int = 0
    error_message: str = ""
    error_reason: str = ""
    retry_after_ms: int = 0

    @property
    def ok(self) -> bool:
        return self.error_status == 0

    def encode(self) -> bytes:
        refused = b"".join(
            len_field(2, _str(1, reason) + _uint(2, n)) for reason, n in sorted(self.refused.items())
        )
        return (
            _uint(1, self.accepted)
            + refused
            + _uint(3, self.error_status)
            + _str(4, self.error_message)
            + _str(5, self.error_reason)
            + _uint(6, self.retry_after_ms)
        )

    @classmethod
    def decode(cls, data: bytes) -> BatchResult:
        msg = cls()
        for number, _, value, end in iter_fields(data):
            if number == 1:
                msg.accepted = _varint_value(data, value)
            elif number == 2:
                sub = data[value:end]
                reason, spans = "", 0
                for n2, _, v2, e2 in iter_fields(sub):
                    if n2 == 1:
                        reason = sub[v2:e2].decode()
                    elif n2 == 2:
                        spans = _varint_value(sub, v2)
                msg.refused[reason] += spans
            elif number == 3:
                msg.error_status = _varint_value(data, value)
            elif number == 4:
                msg.error_message = data[value:end].decode()
            elif number == 5:
                msg.error_reason = data[value:end].decode()
            elif number == 6:
                msg.retry_after_ms = _varint_value(data, value)
        return msg


def encode_push_response(results: list[BatchResult]) -> bytes:
    return b"".join(len_field(1, r.encode()) for r in results)


def decode_push_response(data: bytes) -> list[BatchResult]:
    return [BatchResult.decode(data[v:e]) for n, _, v, e in iter_fields(data) if n == 1]


def encode_find_trace(tenant: str, trace_id: bytes) -> bytes:
    return _str(1, tenant) + len_field(2, trace_id)


def decode_find_trace(data: bytes) -> tuple[str, bytes]:
    tenant, trace_id = "", b""
    for number, _, value, end in iter_fields(data):
        if number == 1:
            tenant = data[value:end].decode()
        elif number == 2:
            trace_id = data[value:end]
    return tenant, trace_id


def encode_tenant(tenant: str) -> bytes:
    return _str(1, tenant)


def decode_tenant(data: bytes) -> str:
    for number, _, value, end in iter_fields(data):
        if number == 1:
            return data[value:end].decode()
    return ""


def table_to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def table_from_ipc(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(data).read_all()


def encode_tables(tables: list[pa.Table]) -> bytes:
    return b"".join(len_field(1, table_to_ipc(t)) for t in tables)


def decode_tables(data: bytes) -> list[pa.Table]:
    return [table_from_ipc(data[v:e]) for n, _, v, e in iter_fields(data) if n == 1]
