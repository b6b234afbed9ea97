"""Read OTLP trace files for ``tracelake import``, whatever format and compression they use.

Everything is detected from content, never from the file name, because exported files are
routinely renamed. Supported:

* compression (magic bytes): none, gzip (``1f 8b``), zstd (``28 b5 2f fd``); several
  concatenated gzip members or zstd frames are read as one stream (the Collector's file
  exporter writes one zstd frame per flush).
* a single OTLP/JSON document ``{"resourceSpans": [...]}``, pretty-printed or not;
* JSON lines, one OTLP/JSON object per line (the Collector file exporter's ``format: json``);
* one serialized ``TracesData``/``ExportTraceServiceRequest`` (wire-identical);
* the Collector file exporter's ``format: proto``: each message prefixed by its length as a
  4-byte big-endian unsigned integer. With its legacy ``compression: zstd`` each message is
  compressed on its own before being framed, so framed payloads may themselves be zstd (or
  gzip) and may hold JSON instead of protobuf.

Output is always serialized ``ExportTraceServiceRequest`` bytes, batched to roughly
``batch_bytes``: concatenated serializations of the same message merge their repeated field, so
batches are built by concatenation without parsing spans, which keeps memory bounded and lets a
progress bar move on big files.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Callable, Iterable, Iterator
from itertools import chain
from typing import Any, BinaryIO

import zstandard
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from tracelake.errors import InvalidInputError
from tracelake.otlp.json_codec import otlp_json_to_request
from tracelake.otlp.wire import len_field

DEFAULT_BATCH_BYTES = 4 << 20

_READ_SIZE = 1 << 18  # small enough that progress moves and zstd bursts stay modest
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_LZ4_MAGIC = b"\x04\x22\x4d\x18"
_JSON_WHITESPACE = b" \t\r\n"
_UTF8_BOM = b"\xef\xbb\xbf"
# Tag of TracesData/ExportTraceServiceRequest field 1 (resource_spans, length-delimited).
_RESOURCE_SPANS_TAG = 0x0A
_RESOURCE_SPANS_FIELD = 1
_WIRE_VARINT, _WIRE_I64, _WIRE_LEN, _WIRE_I32 = 0, 1, 2, 5


def iter_otlp_file(
    path: str | os.PathLike[str], *, batch_bytes: int = DEFAULT_BATCH_BYTES
) -> Iterator[tuple[bytes, int]]:
    """Yield ``(serialized ExportTraceServiceRequest, input bytes consumed so far)`` chunks.

    The second value counts bytes of the file as stored (compressed), so it can drive a progress
    bar against the file size; it never decreases and the last chunk reports the whole file.
    Chunks are never empty; a file with no spans yields nothing. Any unreadable, truncated or
    unrecognised input raises ``InvalidInputError`` naming the file.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as fh:
            yield from _iter_open_file(name, fh, max(1, batch_bytes))
    except InvalidInputError:
        raise
    except OSError as exc:
        raise InvalidInputError(f"{name}: cannot read file: {exc.strerror or exc}") from exc


def _iter_open_file(name: str, fh: BinaryIO, batch_bytes: int) -> Iterator[tuple[bytes, int]]:
    raw = _CountingReader(fh)
    first = raw.read(_READ_SIZE)
    if not first:
        raise InvalidInputError(f"{name}: file is empty")
    raw_chunks = chain([first], iter(lambda: raw.read(_READ_SIZE), b""))

    compression = _compression(first)
    if compression == "gzip":
        chunks: Iterable[bytes] = _gunzip(raw_chunks, name)
    elif compression == "zstd":
        chunks = _unzstd(raw_chunks, name)
    else:
        chunks = raw_chunks
    stream = _Stream(iter(chunks))
    described = f"{name}: {compression}-decompressed data" if compression else name

    head = stream.peek(4096)
    if not head:
        raise InvalidInputError(f"{name}: file is empty after {compression} decompression")
    batcher = _Batcher(described, batch_bytes, lambda: raw.consumed)
    stripped = head.removeprefix(_UTF8_BOM).lstrip(_JSON_WHITESPACE)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InvalidInputError(f"{described}: is UTF-16 text; OTLP JSON files must be UTF-8")
    if stripped[:1] in (b"{", b"["):
        yield from _read_json(stream, name, batcher)
    elif not stripped and len(head) < 4096:  # peek got everything there is
        raise InvalidInputError(f"{name}: holds only whitespace, no OTLP data")
    elif _is_framed(head, name if compression is None else None):
        yield from _read_framed(stream, name, described, batcher)
    else:
        yield from _read_protobuf(stream, described, batcher)
    yield from batcher.flush()


def _compression(head: bytes) -> str | None:
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_ZSTD_MAGIC):
        return "zstd"
    return None


# --- raw input and decompression -----------------------------------------------------


class _CountingReader:
    """Counts bytes read from the file so progress reflects the stored (compressed) size."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self.consumed = 0

    def read(self, size: int) -> bytes:
        data = self._fh.read(size)
        self.consumed += len(data)
        return data


def _gunzip(raw: Iterable[bytes], name: str) -> Iterator[bytes]:
    """Decompress gzip incrementally, across members, refusing a truncated last member."""
    d: Any = zlib.decompressobj(wbits=31)
    for chunk in raw:
        data = chunk
        while data:
            if d is None:
                if not data.strip(b"\0"):
                    break  # zero padding after the last member, as some tools write
                if not data.startswith(_GZIP_MAGIC[: len(data)]):
                    raise InvalidInputError(f"{name}: unexpected data after the end of the gzip stream")
                d = zlib.decompressobj(wbits=31)
            try:
                out = d.decompress(data)
            except zlib.error as exc:
                raise InvalidInputError(f"{name}: corrupt gzip data: {exc}") from exc
            if out:
                yield out
            if d.eof:
                data, d = d.unused_data, None
            else:
                data = b""
    if d is not None:
        raise InvalidInputError(f"{name}: gzip data is truncated (file ends inside the compressed stream)")


def _unzstd(raw: Iterable[bytes], name: str) -> Iterator[bytes]:
    """Decompress zstd incrementally, frame by frame, refusing a truncated last frame.

    zstandard's stream_reader silently stops at a truncated frame, so frames are tracked here.
    """
    dctx = zstandard.ZstdDecompressor()
    d: Any = dctx.decompressobj()
    for chunk in raw:
        data = chunk
        while data:
            if d is None:
                d = dctx.decompressobj()
            try:
                out = d.decompress(data)
            except zstandard.ZstdError as exc:
                raise InvalidInputError(f"{name}: corrupt zstd data: {exc}") from exc
            if out:
                yield out
            if d.eof:
                data, d = d.unused_data, None
            else:
                data = b""
    if d is not None:
        raise InvalidInputError(f"{name}: zstd data is truncated (file ends inside a compressed frame)")


def _decompress_record(payload: bytes) -> bytes:
    """Undo the per-message compression of the Collector's legacy ``compression`` setting."""
    if payload.startswith(_ZSTD_MAGIC):
        return b"".join(_unzstd([payload], "record"))
    if payload.startswith(_GZIP_MAGIC):
        return b"".join(_gunzip([payload], "record"))
    return payload


class _Stream:
    """Buffered reader over decompressed chunks with the peeks and exact reads parsing needs."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = bytearray()
        self._done = False
        self.pos = 0  # offset in the (decompressed) data of the next unread byte

    def _fill(self, size: int) -> None:
        while len(self._buf) < size and not self._done:
            chunk = next(self._chunks, None)
            if chunk is None:
                self._done = True
            else:
                self._buf += chunk

    def at_eof(self) -> bool:
        self._fill(1)
        return not self._buf

    def peek(self, size: int) -> bytes:
        self._fill(size)
        return bytes(self._buf[:size])

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes; fewer only at the end of the data."""
        self._fill(size)
        out = bytes(self._buf[:size])
        del self._buf[:size]  # CPython trims a bytearray's front in O(1)
        self.pos += len(out)
        return out

    def read_all(self) -> bytes:
        for chunk in self._chunks:
            self._buf += chunk
        self._done = True
        return self.read(len(self._buf))

    def readline(self) -> bytes:
        start = 0
        while True:
            idx = self._buf.find(b"\n", start)
            if idx >= 0:
                return self.read(idx + 1)
            if self._done:
                return self.read(len(self._buf))
            start = len(self._buf)
            self._fill(len(self._buf) + 1)

    def read_varint(self) -> int | None:
        """A base-128 varint, or None if the data ends inside it (or it is over-long)."""
        self._fill(10)
        value = 0
        for i, byte in enumerate(self._buf[:10]):
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                del self._buf[: i + 1]
                self.pos += i + 1
                return value
        return None


# --- batching ------------------------------------------------------------------------


class _Batcher:
    """Concatenates serialized requests into chunks of about ``limit`` bytes."""

    def __init__(self, described: str, limit: int, consumed: Callable[[], int]) -> None:
        self._described = described
        self._limit = limit
        self._consumed = consumed
        self._parts: list[bytes] = []
        self._size = 0
        self._unchecked: list[tuple[bytes, str]] = []

    def add(self, part: bytes, *, where: str | None = None) -> Iterator[tuple[bytes, int]]:
        """Queue ``part``; a ``where`` marks untrusted protobuf to parse before it is yielded."""
        if part:
            self._parts.append(part)
            self._size += len(part)
            if where is not None:
                self._unchecked.append((part, where))
        if self._size >= self._limit:
            yield from self.flush()

    def flush(self) -> Iterator[tuple[bytes, int]]:
        if not self._parts:
            return
        data = b"".join(self._parts)
        if self._unchecked and not _parses(data):
            # Error path only: find the first part that is bad on its own to name its offset.
            where = next(
                (w for part, w in self._unchecked if not _parses(part)),
                self._unchecked[0][1],
            )
            raise InvalidInputError(
                f"{self._described}: protobuf does not parse (corrupt or truncated) in {where}"
            )
        self._parts, self._size, self._unchecked = [], 0, []
        yield data, self._consumed()


def _parses(data: bytes) -> bool:
    try:
        ExportTraceServiceRequest.FromString(data)
    except DecodeError:
        return False
    return True


# --- JSON ----------------------------------------------------------------------------


def _read_json(stream: _Stream, name: str, batcher: _Batcher) -> Iterator[tuple[bytes, int]]:
    """JSON lines if the first non-blank line is a complete JSON value, else one document."""
    line_no = 0
    first = b""
    while not first.strip(_JSON_WHITESPACE):
        first = stream.readline()
        line_no += 1
    first = first.removeprefix(_UTF8_BOM) if line_no == 1 else first
    try:
        obj = json.loads(first)
    except ValueError:
        yield from _read_json_document(first + stream.read_all(), line_no - 1, name, batcher)
        return

    while True:
        yield from _add_request(batcher, _json_to_request(obj, f"{name}: line {line_no}"))
        line = b""
        while not line.strip(_JSON_WHITESPACE):
            if stream.at_eof():
                return
            line = stream.readline()
            line_no += 1
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise InvalidInputError(f"{name}: line {line_no}: invalid JSON: {_json_error(exc)}") from exc


def _read_json_document(
    data: bytes, skipped_lines: int, name: str, batcher: _Batcher
) -> Iterator[tuple[bytes, int]]:
    try:
        obj = json.loads(data)
    except json.JSONDecodeError as exc:
        line = exc.lineno + skipped_lines
        raise InvalidInputError(
            f"{name}: invalid JSON at line {line}, column {exc.colno}: {exc.msg}"
        ) from exc
    except ValueError as exc:  # bytes that are not UTF-8/16/32
        raise InvalidInputError(f"{name}: invalid JSON: {exc}") from exc
    req = _json_to_request(obj, name)
    del obj, data
    yield from _add_request(batcher, req)


def _add_request(batcher: _Batcher, req: ExportTraceServiceRequest) -> Iterator[tuple[bytes, int]]:
    """Batch per ResourceSpans so one huge document or line still yields bounded chunks."""
    for rs in req.resource_spans:
        yield from batcher.add(len_field(_RESOURCE_SPANS_FIELD, rs.SerializeToString()))


def _json_to_request(obj: Any, where: str) -> ExportTraceServiceRequest:
    try:
        return otlp_json_to_request(obj)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{where}: {exc}") from exc


def _json_error(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at column {exc.colno}"
    return str(exc)


# --- protobuf ------------------------------------------------------------------------


def _is_framed(head: bytes, seekable_name: str | None) -> bool:
    """Decide between the Collector's length-prefixed stream and a single serialized message.

    A serialized TracesData starts with tag 0x0a; a 4-byte big-endian length can only start
    with 0x0a for a message of 160 MiB or more. For an uncompressed file we also check whether
    the length prefixes tile the file exactly, which settles even that case.
    """
    if head[0] != _RESOURCE_SPANS_TAG:
        return True
    if seekable_name is None:
        return False
    return _framing_covers_file(seekable_name)


def _framing_covers_file(name: str) -> bool:
    size = os.path.getsize(name)
    pos = 0
    with open(name, "rb") as fh:
        while pos < size:
            fh.seek(pos)
            header = fh.read(4)
            if len(header) < 4:
                return False
            pos += 4 + int.from_bytes(header, "big")
    return pos == size


def _read_framed(
    stream: _Stream, name: str, described: str, batcher: _Batcher
) -> Iterator[tuple[bytes, int]]:
    record = 0
    while not stream.at_eof():
        record += 1
        offset = stream.pos
        header = stream.read(4)
        size = int.from_bytes(header, "big")
        payload = stream.read(size) if len(header) == 4 else b""
        if len(header) < 4 or len(payload) < size:
            available = len(payload) if len(header) == 4 else len(header)
            raise InvalidInputError(
                f"{described}: not an OTLP file (neither JSON nor protobuf), or a length-prefixed protobuf "
                f"stream that is truncated: record {record} at byte {offset} "
                + (
                    f"declares {size} bytes but only {available} remain"
                    if len(header) == 4
                    else "has a partial header"
                )
            )
        where = f"{described}: record {record} at byte {offset}"
        if payload.startswith(_LZ4_MAGIC):
            raise InvalidInputError(f"{where}: lz4-compressed records are not supported; use zstd or none")
        try:
            payload = _decompress_record(payload)
        except InvalidInputError as exc:
            raise InvalidInputError(f"{where}: {str(exc).removeprefix('record: ')}") from exc
        if payload.removeprefix(_UTF8_BOM).lstrip(_JSON_WHITESPACE)[:1] == b"{":
            try:
                obj = json.loads(payload)
            except ValueError as exc:
                raise InvalidInputError(f"{where}: invalid JSON: {_json_error(exc)}") from exc
            yield from _add_request(batcher, _json_to_request(obj, where))
        else:
            yield from batcher.add(payload, where=f"record {record} at byte {offset}")


def _read_protobuf(stream: _Stream, described: str, batcher: _Batcher) -> Iterator[tuple[bytes, int]]:
    """Walk the top level of a TracesData and batch its ResourceSpans without parsing them."""
    while not stream.at_eof():
        offset = stream.pos
        key = stream.read_varint()
        if key is None:
            raise InvalidInputError(f"{described}: protobuf is truncated or corrupt at byte {offset}")
        field, wire = key >> 3, key & 7
        if field == 0 or wire not in (_WIRE_VARINT, _WIRE_I64, _WIRE_LEN, _WIRE_I32):
            raise InvalidInputError(
                f"{described}: not OTLP protobuf: invalid field tag 0x{key:x} at byte {offset}"
            )
        if wire == _WIRE_LEN:
            size = stream.read_varint()
            if size is None:
                raise InvalidInputError(f"{described}: protobuf is truncated or corrupt at byte {offset}")
            payload = stream.read(size)
            if len(payload) < size:
                raise InvalidInputError(
                    f"{described}: protobuf is truncated: field at byte {offset} declares {size} bytes "
                    f"but only {len(payload)} remain"
                )
            if field == 1:
                where = f"the ResourceSpans at byte {offset}"
                yield from batcher.add(len_field(_RESOURCE_SPANS_FIELD, payload), where=where)
        elif wire == _WIRE_VARINT:
            if stream.read_varint() is None:
                raise InvalidInputError(f"{described}: protobuf is truncated or corrupt at byte {offset}")
        else:
            width = 8 if wire == _WIRE_I64 else 4
            if len(stream.read(width)) < width:
                raise InvalidInputError(f"{described}: protobuf is truncated at byte {offset}")
