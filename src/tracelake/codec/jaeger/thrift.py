"""Readers and writers for the two Thrift wire protocols Jaeger clients speak.

Jaeger clients send ``TBinaryProtocol`` (HTTP :14268, UDP :6832) and ``TCompactProtocol`` (UDP :6831).
We implement just the protocol layer (no transports, no services) instead of depending on the
``thrift`` package: both encodings are small, and owning them lets every length be checked against the
bytes that are actually left, so a hostile datagram can neither allocate gigabytes nor loop forever.

Both readers expose one interface and report field/element types in the binary protocol's numbering
(``BOOL``, ``I64``, ``LIST``...), so the struct readers in :mod:`.model` work over either protocol.
Encodings follow the Apache Thrift specs (doc/specs/thrift-binary-protocol.md and
thrift-compact-protocol.md): binary is big-endian with i32 length prefixes and a strict (versioned) or
old-style message header; compact uses zigzag varints, 4-bit field-id deltas, bools folded into the
field header (but one byte inside containers) and little-endian doubles.

The writers exist for tests and for tools that must produce real Jaeger payloads (load generators,
end-to-end receiver checks); the receivers only read.
"""

from __future__ import annotations

import struct

from tracelake.errors import InvalidInputError

# Type ids, in TBinaryProtocol's numbering (the compact reader translates its own ids to these).
STOP = 0
BOOL = 2
BYTE = 3
DOUBLE = 4
I16 = 6
I32 = 8
I64 = 10
STRING = 11
STRUCT = 12
MAP = 13
SET = 14
LIST = 15
UUID = 16

TYPE_NAMES = {
    BOOL: "bool",
    BYTE: "byte",
    DOUBLE: "double",
    I16: "i16",
    I32: "i32",
    I64: "i64",
    STRING: "string",
    STRUCT: "struct",
    MAP: "map",
    SET: "set",
    LIST: "list",
    UUID: "uuid",
}

# Message types.
CALL = 1
REPLY = 2
EXCEPTION = 3
ONEWAY = 4

# Nesting limit for skipping unknown values; the Apache libraries use the same default.
MAX_DEPTH = 64

_BINARY_VERSION_1 = 0x80010000
_BINARY_VERSION_MASK = 0xFFFF0000
_COMPACT_PROTOCOL_ID = 0x82
_COMPACT_VERSION = 1

# compact type id -> canonical type id (1 and 2 are BOOLEAN_TRUE / BOOLEAN_FALSE in field headers,
# and writers disagree on which of the two marks a list of bools, so both mean BOOL there too).
_COMPACT_TO_TYPE = {
    1: BOOL,
    2: BOOL,
    3: BYTE,
    4: I16,
    5: I32,
    6: I64,
    7: DOUBLE,
    8: STRING,
    9: LIST,
    10: SET,
    11: MAP,
    12: STRUCT,
    13: UUID,
}
_TYPE_TO_COMPACT = {
    BOOL: 1,
    BYTE: 3,
    I16: 4,
    I32: 5,
    I64: 6,
    DOUBLE: 7,
    STRING: 8,
    LIST: 9,
    SET: 10,
    MAP: 11,
    STRUCT: 12,
    UUID: 13,
}

# The fewest bytes one value of each type can take: a container header claiming n elements needs at
# least n * min_size bytes left, which is what keeps a forged size from allocating huge lists.
_BINARY_MIN_SIZE = {
    BOOL: 1,
    BYTE: 1,
    DOUBLE: 8,
    I16: 2,
    I32: 4,
    I64: 8,
    STRING: 4,
    STRUCT: 1,
    MAP: 6,
    SET: 5,
    LIST: 5,
    UUID: 16,
}
_COMPACT_MIN_SIZE = {
    BOOL: 1,
    BYTE: 1,
    DOUBLE: 8,
    I16: 1,
    I32: 1,
    I64: 1,
    STRING: 1,
    STRUCT: 1,
    MAP: 1,
    SET: 1,
    LIST: 1,
    UUID: 16,
}

_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_BE_DOUBLE = struct.Struct(">d")
_LE_DOUBLE = struct.Struct("<d")
_FIELD_HEADER = struct.Struct(">bh")
_LIST_HEADER = struct.Struct(">bi")
_MAP_HEADER = struct.Struct(">bbi")

_MASK32 = 0xFFFFFFFF
_MASK64 = 0xFFFFFFFFFFFFFFFF


def _type_name(ttype: int) -> str:
    return TYPE_NAMES.get(ttype, f"type {ttype}")


class ThriftReader:
    """What both protocol readers share: a cursor over the buffer with bounds-checked reads."""

    __slots__ = ("buf", "end", "pos")

    protocol_name = "thrift"
    _min_size: dict[int, int] = _BINARY_MIN_SIZE

    def __init__(self, buf: bytes, pos: int = 0) -> None:
        self.buf = bytes(buf)
        self.pos = pos
        self.end = len(self.buf)

    # ---------------------------------------------------------------- helpers

    def remaining(self) -> int:
        return self.end - self.pos

    def error(self, what: str) -> InvalidInputError:
        return InvalidInputError(f"invalid {self.protocol_name} data at byte {self.pos}: {what}")

    def _truncated(self, n: int) -> InvalidInputError:
        return InvalidInputError(
            f"truncated {self.protocol_name} data: needed {n} byte(s) at byte {self.pos}, "
            f"only {self.end - self.pos} left"
        )

    def _take(self, n: int) -> bytes:
        pos = self.pos
        if n > self.end - pos:
            raise self._truncated(n)
        self.pos = pos + n
        return self.buf[pos : pos + n]

    def _check_elements(self, what: str, size: int, *types: int) -> None:
        """Refuse a container whose claimed size cannot fit in the bytes that are left."""
        if size < 0:
            raise self.error(f"negative {what} size {size}")
        for t in types:
            if t not in self._min_size:
                raise self.error(f"unknown {what} element type {t}")
        need = size * sum(self._min_size[t] for t in types)
        if need > self.end - self.pos:
            raise InvalidInputError(
                f"truncated {self.protocol_name} data: {what} of {size} element(s) at byte {self.pos} "
                f"needs at least {need} byte(s), only {self.end - self.pos} left"
            )

    def read_string(self) -> str:
        """A Thrift string; invalid UTF-8 is replaced, not refused (Jaeger's Go collector never checks)."""
        return self.read_binary().decode("utf-8", "replace")

    def read_uuid(self) -> bytes:
        return self._take(16)

    def skip(self, ttype: int, depth: int = 0) -> None:
        """Consume one value of ``ttype`` whatever it holds, so unknown fields of any shape are ignored."""
        if depth > MAX_DEPTH:
            raise self.error(f"values nested more than {MAX_DEPTH} deep")
        if ttype == BOOL:
            self.read_bool()
        elif ttype == BYTE:
            self._take(1)
        elif ttype == I16:
            self.read_i16()
        elif ttype == I32:
            self.read_i32()
        elif ttype == I64:
            self.read_i64()
        elif ttype == DOUBLE:
            self.read_double()
        elif ttype == STRING:
            self.read_binary()
        elif ttype == UUID:
            self._take(16)
        elif ttype == STRUCT:
            self.read_struct_begin()
            while True:
                ftype, _ = self.read_field_begin()
                if ftype == STOP:
                    break
                self.skip(ftype, depth + 1)
            self.read_struct_end()
        elif ttype in (LIST, SET):
            etype, size = self.read_list_begin()
            for _ in range(size):
                self.skip(etype, depth + 1)
        elif ttype == MAP:
            ktype, vtype, size = self.read_map_begin()
            for _ in range(size):
                self.skip(ktype, depth + 1)
                self.skip(vtype, depth + 1)
        else:
            raise self.error(f"unknown field type {ttype}")

    # ---------------------------------------------------------------- protocol specific

    def read_message_begin(self) -> tuple[str, int, int]:  # pragma: no cover - abstract
        raise NotImplementedError

    def read_struct_begin(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def read_struct_end(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def read_field_begin(self) -> tuple[int, int]:  # pragma: no cover - abstract
        raise NotImplementedError

    def read_list_begin(self) -> tuple[int, int]:  # pragma: no cover - abstract
        raise NotImplementedError

    def read_map_begin(self) -> tuple[int, int, int]:  # pragma: no cover - abstract
        raise NotImplementedError

    def read_bool(self) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def read_byte(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def read_i16(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def read_i32(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def read_i64(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def read_double(self) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def read_binary(self) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError


class BinaryReader(ThriftReader):
    """``TBinaryProtocol``: fixed-width big-endian integers, i32 length prefixes."""

    __slots__ = ()

    protocol_name = "thrift binary"
    _min_size = _BINARY_MIN_SIZE

    def read_message_begin(self) -> tuple[str, int, int]:
        """Return (name, message type, seq id), accepting both the strict and the old header."""
        first = self.read_i32()
        if first < 0:
            version = first & _BINARY_VERSION_MASK
            if version != _BINARY_VERSION_1:
                raise self.error(f"unsupported binary protocol version {version:#010x}")
            mtype = first & 0xFF
            name = self.read_string()
        else:
            # Old, unversioned header: the name's length comes first, then a type byte.
            if first > self.end - self.pos:
                raise self.error(f"message name of {first} bytes does not fit")
            name = self._take(first).decode("utf-8", "replace")
            mtype = self.read_byte()
        seqid = self.read_i32()
        return name, mtype, seqid

    def read_struct_begin(self) -> None:
        pass

    def read_struct_end(self) -> None:
        pass

    # The per-value methods below inline their bounds checks (``unpack_from`` on the buffer): they run
    # several times per tag, and this is most of the cost of decoding a batch.

    def read_field_begin(self) -> tuple[int, int]:
        pos = self.pos
        end = self.end
        if pos < end and self.buf[pos] == STOP:
            self.pos = pos + 1
            return STOP, 0
        if pos + 3 > end:
            raise self._truncated(3)
        self.pos = pos + 3
        return _FIELD_HEADER.unpack_from(self.buf, pos)  # type: ignore[return-value]

    def read_list_begin(self) -> tuple[int, int]:
        etype, size = _LIST_HEADER.unpack(self._take(5))
        self._check_elements("list", size, etype)
        return etype, size

    def read_map_begin(self) -> tuple[int, int, int]:
        ktype, vtype, size = _MAP_HEADER.unpack(self._take(6))
        if size:
            self._check_elements("map", size, ktype, vtype)
        elif size < 0:
            raise self.error(f"negative map size {size}")
        return ktype, vtype, size

    def read_bool(self) -> bool:
        return self._take(1)[0] == 1

    def read_byte(self) -> int:
        return _I8.unpack(self._take(1))[0]

    def read_i16(self) -> int:
        return _I16.unpack(self._take(2))[0]

    def read_i32(self) -> int:
        pos = self.pos
        if pos + 4 > self.end:
            raise self._truncated(4)
        self.pos = pos + 4
        return _I32.unpack_from(self.buf, pos)[0]

    def read_i64(self) -> int:
        pos = self.pos
        if pos + 8 > self.end:
            raise self._truncated(8)
        self.pos = pos + 8
        return _I64.unpack_from(self.buf, pos)[0]

    def read_double(self) -> float:
        pos = self.pos
        if pos + 8 > self.end:
            raise self._truncated(8)
        self.pos = pos + 8
        return _BE_DOUBLE.unpack_from(self.buf, pos)[0]

    def read_binary(self) -> bytes:
        pos = self.pos
        end = self.end
        if pos + 4 > end:
            raise self._truncated(4)
        size = _I32.unpack_from(self.buf, pos)[0]
        if size < 0:
            raise self.error(f"negative string length {size}")
        pos += 4
        self.pos = pos
        if size > end - pos:
            raise self._truncated(size)
        self.pos = pos + size
        return self.buf[pos : pos + size]

    def read_string(self) -> str:
        return self.read_binary().decode("utf-8", "replace")


class CompactReader(ThriftReader):
    """``TCompactProtocol``: zigzag varints, field-id deltas, bools folded into field headers."""

    __slots__ = ("_fid_stack", "_last_fid", "_pending_bool")

    protocol_name = "thrift compact"
    _min_size = _COMPACT_MIN_SIZE

    def __init__(self, buf: bytes, pos: int = 0) -> None:
        super().__init__(buf, pos)
        self._last_fid = 0
        self._fid_stack: list[int] = []
        self._pending_bool: bool | None = None

    def read_varint(self) -> int:
        """An unsigned LEB128 varint of at most 10 bytes (64 bits)."""
        buf = self.buf
        pos = self.pos
        end = self.end
        if pos < end and buf[pos] < 0x80:  # the common one-byte case
            self.pos = pos + 1
            return buf[pos]
        result = 0
        shift = 0
        while True:
            if pos >= end:
                self.pos = pos
                raise self._truncated(1)
            b = buf[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
            if shift >= 70:
                self.pos = pos
                raise self.error("varint longer than 10 bytes")
        self.pos = pos
        return result & _MASK64

    def _read_varint32(self) -> int:
        """A varint read as a signed 32-bit value (sizes and sequence ids), as Thrift's libraries do."""
        v = self.read_varint() & _MASK32
        return v - (1 << 32) if v & 0x80000000 else v

    def _read_zigzag32(self) -> int:
        n = self.read_varint() & _MASK32
        return (n >> 1) ^ -(n & 1)

    def read_message_begin(self) -> tuple[str, int, int]:
        """Return (name, message type, seq id)."""
        head = self._take(2)
        if head[0] != _COMPACT_PROTOCOL_ID:
            raise InvalidInputError(
                f"not a thrift compact message: protocol id {head[0]:#04x}, "
                f"expected {_COMPACT_PROTOCOL_ID:#04x}"
            )
        version = head[1] & 0x1F
        if version != _COMPACT_VERSION:
            raise self.error(f"unsupported compact protocol version {version}")
        mtype = (head[1] >> 5) & 0x07
        seqid = self._read_varint32()
        name = self.read_string()
        return name, mtype, seqid

    def read_struct_begin(self) -> None:
        if len(self._fid_stack) > MAX_DEPTH:
            raise self.error(f"structs nested more than {MAX_DEPTH} deep")
        self._fid_stack.append(self._last_fid)
        self._last_fid = 0

    def read_struct_end(self) -> None:
        self._last_fid = self._fid_stack.pop() if self._fid_stack else 0

    def read_field_begin(self) -> tuple[int, int]:
        pos = self.pos
        if pos >= self.end:
            raise self._truncated(1)
        b = self.buf[pos]
        self.pos = pos + 1
        if b == 0:
            return STOP, 0
        ctype = b & 0x0F
        ttype = _COMPACT_TO_TYPE.get(ctype)
        if ttype is None:
            raise self.error(f"unknown compact field type {ctype}")
        delta = b >> 4
        if delta:
            fid = self._last_fid + delta
        else:
            fid = self._read_zigzag32()
            if not -32768 <= fid <= 32767:
                raise self.error(f"field id {fid} out of the i16 range")
        self._last_fid = fid
        if ttype == BOOL:
            self._pending_bool = ctype == 1
        return ttype, fid

    def _element_type(self, ctype: int, what: str) -> int:
        ttype = _COMPACT_TO_TYPE.get(ctype)
        if ttype is None:
            raise self.error(f"unknown compact {what} element type {ctype}")
        return ttype

    def read_list_begin(self) -> tuple[int, int]:
        b = self._take(1)[0]
        size = b >> 4
        if size == 15:
            size = self._read_varint32()
        etype = self._element_type(b & 0x0F, "list")
        self._check_elements("list", size, etype)
        return etype, size

    def read_map_begin(self) -> tuple[int, int, int]:
        size = self._read_varint32()
        if size == 0:
            return STOP, STOP, 0
        if size < 0:
            raise self.error(f"negative map size {size}")
        b = self._take(1)[0]
        ktype = self._element_type(b >> 4, "map key")
        vtype = self._element_type(b & 0x0F, "map value")
        self._check_elements("map", size, ktype, vtype)
        return ktype, vtype, size

    def read_bool(self) -> bool:
        pending = self._pending_bool
        if pending is not None:  # a bool field: its value travelled in the field header
            self._pending_bool = None
            return pending
        return self._take(1)[0] == 1  # a bool inside a container: one byte

    def read_byte(self) -> int:
        return _I8.unpack(self._take(1))[0]

    def read_i16(self) -> int:
        v = self._read_zigzag32()
        return ((v + 0x8000) & 0xFFFF) - 0x8000

    def read_i32(self) -> int:
        return self._read_zigzag32()

    def read_i64(self) -> int:
        n = self.read_varint()
        return (n >> 1) ^ -(n & 1)

    def read_double(self) -> float:
        return _LE_DOUBLE.unpack(self._take(8))[0]

    def read_binary(self) -> bytes:
        size = self._read_varint32()
        if size < 0:
            raise self.error(f"negative string length {size}")
        return self._take(size)


def reader_for(protocol: str, buf: bytes) -> ThriftReader:
    """A reader for ``protocol`` ("binary" or "compact") over ``buf``."""
    if protocol == "binary":
        return BinaryReader(buf)
    if protocol == "compact":
        return CompactReader(buf)
    raise InvalidInputError(f"unknown thrift protocol {protocol!r}: expected 'binary' or 'compact'")


# ==================================================================================================
# writers


class ThriftWriter:
    """What both protocol writers share: an output buffer."""

    __slots__ = ("out",)

    def __init__(self) -> None:
        self.out = bytearray()

    def getvalue(self) -> bytes:
        return bytes(self.out)

    def write_string(self, value: str) -> None:
        self.write_binary(value.encode("utf-8"))

    def write_uuid(self, value: bytes) -> None:
        if len(value) != 16:
            raise ValueError("a uuid is 16 bytes")
        self.out += value

    def write_struct_begin(self) -> None:
        pass

    def write_struct_end(self) -> None:
        pass

    def write_field_stop(self) -> None:
        self.out.append(0)

    # protocol specific
    def write_message_begin(self, name: str, mtype: int, seqid: int) -> None:  # pragma: no cover
        raise NotImplementedError

    def write_field_begin(self, ttype: int, fid: int) -> None:  # pragma: no cover
        raise NotImplementedError

    def write_list_begin(self, etype: int, size: int) -> None:  # pragma: no cover
        raise NotImplementedError

    def write_map_begin(self, ktype: int, vtype: int, size: int) -> None:  # pragma: no cover
        raise NotImplementedError

    def write_bool(self, value: bool) -> None:  # pragma: no cover
        raise NotImplementedError

    def write_byte(self, value: int) -> None:  # pragma: no cover
        raise NotImplementedError

    def write_i16(self, value: int) -> None:  # pragma: no cover
        raise NotImplementedError

    def write_i32(self, value: int) -> None:  # pragma: no cover
        raise NotImplementedError

    def write_i64(self, value: int) -> None:  # pragma: no cover
        raise NotImplementedError

    def write_double(self, value: float) -> None:  # pragma: no cover
        raise NotImplementedError

    def write_binary(self, value: bytes) -> None:  # pragma: no cover
        raise NotImplementedError


class BinaryWriter(ThriftWriter):
    """``TBinaryProtocol`` output; ``strict=False`` writes the old, unversioned message header."""

    __slots__ = ("strict",)

    def __init__(self, strict: bool = True) -> None:
        super().__init__()
        self.strict = strict

    def write_message_begin(self, name: str, mtype: int, seqid: int) -> None:
        if self.strict:
            self.out += struct.pack(">I", _BINARY_VERSION_1 | mtype)
            self.write_string(name)
        else:
            self.write_string(name)
            self.write_byte(mtype)
        self.write_i32(seqid)

    def write_field_begin(self, ttype: int, fid: int) -> None:
        self.out += _FIELD_HEADER.pack(ttype, fid)

    def write_list_begin(self, etype: int, size: int) -> None:
        self.out += _LIST_HEADER.pack(etype, size)

    def write_map_begin(self, ktype: int, vtype: int, size: int) -> None:
        self.out += _MAP_HEADER.pack(ktype, vtype, size)

    def write_bool(self, value: bool) -> None:
        self.out.append(1 if value else 0)

    def write_byte(self, value: int) -> None:
        self.out += _I8.pack(value)

    def write_i16(self, value: int) -> None:
        self.out += _I16.pack(value)

    def write_i32(self, value: int) -> None:
        self.out += _I32.pack(value)

    def write_i64(self, value: int) -> None:
        self.out += _I64.pack(value)

    def write_double(self, value: float) -> None:
        self.out += _BE_DOUBLE.pack(value)

    def write_binary(self, value: bytes) -> None:
        self.out += _I32.pack(len(value))
        self.out += value


class CompactWriter(ThriftWriter):
    """``TCompactProtocol`` output: short-form field headers when the id delta is 1..15."""

    __slots__ = ("_fid_stack", "_last_fid", "_pending_field")

    def __init__(self) -> None:
        super().__init__()
        self._last_fid = 0
        self._fid_stack: list[int] = []
        self._pending_field: int | None = None

    def write_varint(self, value: int) -> None:
        value &= _MASK64
        while True:
            b = value & 0x7F
            value >>= 7
            if value:
                self.out.append(b | 0x80)
            else:
                self.out.append(b)
                return

    def _write_zigzag64(self, value: int) -> None:
        self.write_varint(((value << 1) ^ (value >> 63)) & _MASK64)

    def _write_zigzag32(self, value: int) -> None:
        self.write_varint(((value << 1) ^ (value >> 31)) & _MASK32)

    def write_message_begin(self, name: str, mtype: int, seqid: int) -> None:
        self.out.append(_COMPACT_PROTOCOL_ID)
        self.out.append((_COMPACT_VERSION & 0x1F) | ((mtype & 0x07) << 5))
        self.write_varint(seqid & _MASK32)
        self.write_string(name)

    def write_struct_begin(self) -> None:
        self._fid_stack.append(self._last_fid)
        self._last_fid = 0

    def write_struct_end(self) -> None:
        self._last_fid = self._fid_stack.pop()

    def _field_header(self, ctype: int, fid: int) -> None:
        delta = fid - self._last_fid
        if 0 < delta <= 15:
            self.out.append((delta << 4) | ctype)
        else:
            self.out.append(ctype)
            self._write_zigzag32(fid)
        self._last_fid = fid

    def write_field_begin(self, ttype: int, fid: int) -> None:
        if ttype == BOOL:
            self._pending_field = fid  # the header is written with the value
            return
        self._field_header(_TYPE_TO_COMPACT[ttype], fid)

    def write_list_begin(self, etype: int, size: int) -> None:
        ctype = 2 if etype == BOOL else _TYPE_TO_COMPACT[etype]
        if size < 15:
            self.out.append((size << 4) | ctype)
        else:
            self.out.append(0xF0 | ctype)
            self.write_varint(size)

    def write_map_begin(self, ktype: int, vtype: int, size: int) -> None:
        if size == 0:
            self.out.append(0)
            return
        self.write_varint(size)
        self.out.append((_TYPE_TO_COMPACT[ktype] << 4) | _TYPE_TO_COMPACT[vtype])

    def write_bool(self, value: bool) -> None:
        if self._pending_field is not None:
            self._field_header(1 if value else 2, self._pending_field)
            self._pending_field = None
        else:
            self.out.append(1 if value else 0)

    def write_byte(self, value: int) -> None:
        self.out += _I8.pack(value)

    def write_i16(self, value: int) -> None:
        self._write_zigzag32(value)

    def write_i32(self, value: int) -> None:
        self._write_zigzag32(value)

    def write_i64(self, value: int) -> None:
        self._write_zigzag64(value)

    def write_double(self, value: float) -> None:
        self.out += _LE_DOUBLE.pack(value)

    def write_binary(self, value: bytes) -> None:
        self.write_varint(len(value))
        self.out += value


def writer_for(protocol: str) -> ThriftWriter:
    """A writer for ``protocol`` ("binary" or "compact")."""
    if protocol == "binary":
        return BinaryWriter()
    if protocol == "compact":
        return CompactWriter()
    raise ValueError(f"unknown thrift protocol {protocol!r}")
