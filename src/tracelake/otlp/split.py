"""Split one OTLP request into several by trace, without decoding the spans.

The distributor sends each trace's spans only to the ingesters that own it, and each ingester stores
what it received in its WAL as OTLP bytes. So the request is cut at the protobuf wire level: every span
is copied byte for byte under a copy of its resource and scope (all their fields except the spans), and
only the span's ``trace_id`` (field 1) is read.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from typing import TypeVar

from tracelake.errors import InvalidInputError
from tracelake.otlp.wire import len_field

K = TypeVar("K", bound=Hashable)


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise InvalidInputError("undecodable OTLP protobuf: truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def iter_fields(buf: bytes) -> Iterator[tuple[int, int, int, int]]:
    """(field number, start of the field's tag, start of its value, end of the field) of every field.

    For a length-delimited field the value starts after the length, so ``buf[value:end]`` is the payload;
    for a varint it is where the varint starts.
    """
    pos, end = 0, len(buf)
    while pos < end:
        start = pos
        tag, pos = read_varint(buf, pos)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            value = pos
            _, pos = read_varint(buf, pos)
        elif wire_type == 2:
            length, value = read_varint(buf, pos)
            pos = value + length
        elif wire_type == 1:
            value, pos = pos, pos + 8
        elif wire_type == 5:
            value, pos = pos, pos + 4
        else:
            raise InvalidInputError(f"undecodable OTLP protobuf: wire type {wire_type}")
        if pos > end or number == 0:
            raise InvalidInputError("undecodable OTLP protobuf: field runs past its message")
        yield number, start, value, pos


def _trace_id(span: bytes) -> bytes:
    if span[:2] == b"\x0a\x10":  # field 1, 16 bytes, first: how every SDK writes a span
        return span[2:18]
    for number, start, value, end in iter_fields(span):
        if number == 1 and span[start] & 7 == 2:
            return span[value:end]
    return b""


def split_by_trace(payload: bytes, owner: Callable[[bytes], K]) -> dict[K, bytes]:
    """``{owner(trace id): request bytes}``: each span goes to the request of its trace's owner.

    Works on ``ExportTraceServiceRequest`` and ``TracesData`` (same layout). Resources and scopes with
    no span of an owner are left out of its request.
    """
    owners: dict[bytes, K] = {}
    # owner -> [(resource header, [(scope header, [span fields])])]
    out: dict[K, list[tuple[bytes, list[tuple[bytes, list[bytes]]]]]] = {}
    for number, _, rvalue, rend in iter_fields(payload):
        if number != 1:
            continue
        resource = payload[rvalue:rend]
        rheader: list[bytes] = []
        scopes: list[tuple[bytes, bytes]] = []
        for rnumber, rstart, svalue, send in iter_fields(resource):
            if rnumber == 2:
                scopes.append((resource[svalue:send], b""))
            else:
                rheader.append(resource[rstart:send])
        resource_header = b"".join(rheader)
        placed: dict[K, list[tuple[bytes, list[bytes]]]] = {}
        for scope, _ in scopes:
            sheader: list[bytes] = []
            by_owner: dict[K, list[bytes]] = {}
            for snumber, sstart, pvalue, pend in iter_fields(scope):
                if snumber != 2:
                    sheader.append(scope[sstart:pend])
                    continue
                trace_id = _trace_id(scope[pvalue:pend])
                key = owners.get(trace_id)
                if key is None:
                    key = owners[trace_id] = owner(trace_id)
                by_owner.setdefault(key, []).append(scope[sstart:pend])
            scope_header = b"".join(sheader)
            for key, spans in by_owner.items():
                placed.setdefault(key, []).append((scope_header, spans))
        for key, scope_list in placed.items():
            out.setdefault(key, []).append((resource_header, scope_list))
    return {
        key: b"".join(
            len_field(
                1,
                rheader + b"".join(len_field(2, sheader + b"".join(spans)) for sheader, spans in scope_list),
            )
            for rheader, scope_list in resources
        )
        for key, resources in out.items()
    }
