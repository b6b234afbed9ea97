"""The WAL's on-disk format, version 1: how a record is framed and how a segment file is read back.

A segment is one file, ``<dir>/<number:020d>.wal`` (zero-padded so names sort like numbers). All
integers are little-endian.

File header (8 bytes)::

    magic    6 bytes   b"TLWAL\\x00"
    version  u16       FORMAT_VERSION (1)

then records, back to back, until the end of the file::

    length   u32   bytes after the checksum (header + payload), at least 10
    crc      u32   zlib.crc32 of those ``length`` bytes
    --- covered by length and crc ---
    tlen     u16   length of the tenant
    tenant   tlen bytes, utf-8
    received u64   unix nanoseconds when the request was accepted
    payload  length - 10 - tlen bytes: the request as received (a serialized OTLP
             ExportTraceServiceRequest)

A record is written by one positioned write, so a crash can only leave a torn *last* record. The reader
stops a segment at the first record that is truncated, whose length points past the end of the file,
whose tenant length does not fit, or whose checksum fails: everything after it is untrustworthy,
because a length is only as good as the checksum behind it. A reader of a newer version refuses the
file by its header instead of misreading it.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

MAGIC = b"TLWAL\x00"
FORMAT_VERSION = 1
FILE_HEADER = struct.Struct("<6sH")
# length, crc: the part of a record in front of what the checksum covers.
PREFIX = struct.Struct("<II")
TENANT_LEN = struct.Struct("<H")
RECEIVED = struct.Struct("<Q")
# tlen + received: the smallest body (an empty tenant and an empty payload).
MIN_BODY = TENANT_LEN.size + RECEIVED.size
MAX_BODY = 0xFFFFFFFF
MAX_TENANT_BYTES = 0xFFFF
SEGMENT_SUFFIX = ".wal"
SEGMENT_DIGITS = 20


def file_header() -> bytes:
    """The 8 bytes every segment starts with."""
    return FILE_HEADER.pack(MAGIC, FORMAT_VERSION)


def segment_name(number: int) -> str:
    return f"{number:0{SEGMENT_DIGITS}d}{SEGMENT_SUFFIX}"


def parse_segment_name(name: str) -> int | None:
    """The segment number of a file name, or None for any other file (a lock file, an editor's backup)."""
    stem, dot, suffix = name.rpartition(".")
    if not dot or "." + suffix != SEGMENT_SUFFIX or len(stem) != SEGMENT_DIGITS or not stem.isdigit():
        return None
    return int(stem)


def encode_tenant(tenant: str) -> bytes:
    """``tlen + tenant``: callers cache it, as a process sees few tenants and many records."""
    raw = tenant.encode("utf-8")
    if len(raw) > MAX_TENANT_BYTES:
        raise ValueError(f"tenant id is {len(raw)} bytes, the WAL allows at most {MAX_TENANT_BYTES}")
    return TENANT_LEN.pack(len(raw)) + raw


def frame(tenant_head: bytes, payload: bytes | bytearray | memoryview, received_unix_nano: int) -> bytes:
    """Everything of a record except the payload (which is written from the caller's buffer, uncopied).

    ``tenant_head`` is ``encode_tenant(tenant)``. The checksum runs over the payload here, before the
    writer takes its lock, so concurrent appenders checksum in parallel.
    """
    if not 0 <= received_unix_nano < 1 << 64:
        raise ValueError(f"received_unix_nano {received_unix_nano} does not fit an unsigned 64-bit integer")
    body_head = tenant_head + RECEIVED.pack(received_unix_nano)
    length = len(body_head) + len(payload)
    if length > MAX_BODY:
        raise ValueError(f"WAL record of {length} bytes exceeds the format's limit of {MAX_BODY}")
    crc = zlib.crc32(payload, zlib.crc32(body_head))
    return PREFIX.pack(length, crc) + body_head


@dataclass(frozen=True)
class RawRecord:
    offset: int
    tenant: str
    received_unix_nano: int
    payload: bytes
    size: int  # bytes on disk, framing included


@dataclass
class SegmentDamage:
    """Why reading a segment stopped early: where, and what was wrong."""

    offset: int
    reason: str


class SegmentReader:
    """Reads the records of one closed segment; ``damage`` is set if it stopped before the end.

    Corruption is reported, never raised: the caller logs and counts it and moves to the next segment.
    """

    def __init__(self, f: BinaryIO, size: int) -> None:
        self._f = f
        self._size = size
        self.damage: SegmentDamage | None = None

    def check_header(self) -> bool:
        """True if the file header is ours and of a version we read; otherwise ``damage`` says why."""
        raw = self._f.read(FILE_HEADER.size)
        if len(raw) < FILE_HEADER.size:
            self.damage = SegmentDamage(0, f"file header truncated ({len(raw)} of {FILE_HEADER.size} bytes)")
            return False
        magic, version = FILE_HEADER.unpack(raw)
        if magic != MAGIC:
            self.damage = SegmentDamage(0, f"bad magic {magic!r}, not a tracelake WAL segment")
            return False
        if version != FORMAT_VERSION:
            self.damage = SegmentDamage(
                0, f"unsupported format version {version} (this version reads {FORMAT_VERSION})"
            )
            return False
        return True

    def records(self) -> Iterator[RawRecord]:
        """Records after the file header, in order; call ``check_header`` first."""
        f, size = self._f, self._size
        offset = FILE_HEADER.size
        while offset < size:
            left = size - offset
            if left < PREFIX.size:
                self.damage = SegmentDamage(offset, f"truncated record: {left} bytes, no complete prefix")
                return
            length, crc = PREFIX.unpack(f.read(PREFIX.size))
            if length < MIN_BODY:
                self.damage = SegmentDamage(offset, f"record length {length} below the minimum {MIN_BODY}")
                return
            if length > left - PREFIX.size:
                # A torn write or a corrupt length: either way nothing to allocate or read.
                self.damage = SegmentDamage(
                    offset, f"truncated record: length {length}, {left - PREFIX.size} bytes left in file"
                )
                return
            tlen_raw = f.read(TENANT_LEN.size)
            (tlen,) = TENANT_LEN.unpack(tlen_raw)
            if MIN_BODY + tlen > length:
                self.damage = SegmentDamage(offset, f"tenant length {tlen} exceeds record length {length}")
                return
            rest = f.read(tlen + RECEIVED.size)
            payload = f.read(length - MIN_BODY - tlen)
            if zlib.crc32(payload, zlib.crc32(rest, zlib.crc32(tlen_raw))) != crc:
                self.damage = SegmentDamage(offset, "checksum mismatch")
                return
            try:
                tenant = rest[:tlen].decode("utf-8")
            except UnicodeDecodeError:
                self.damage = SegmentDamage(offset, "tenant is not utf-8")
                return
            (received,) = RECEIVED.unpack_from(rest, tlen)
            record_size = PREFIX.size + length
            yield RawRecord(offset, tenant, received, payload, record_size)
            offset += record_size
