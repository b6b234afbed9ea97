"""The one small object-store interface every part of tracelake codes against.

Blocks, blooms, tenant indexes and leases are all plain objects under "/"-separated keys, so the same
code runs on a local directory (the embedded default) and on any S3-compatible store. Keys are
validated here, once, so that both backends accept and refuse exactly the same keys.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    import pyarrow

# Local temp files live under this top-level folder; no backend accepts keys inside it, so the
# local and S3 backends refuse the same keys and a listing never shows a half-written object.
RESERVED_TOP_LEVEL = ".tracelake-tmp"


@dataclass(frozen=True)
class RangeByteRequest:
    """Bytes ``[start, end)``; clipped to the object like a Python slice (past EOF gives fewer bytes)."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if self.start < 0 or self.end < 0:
            raise ValueError(f"byte range [{self.start}, {self.end}) must not be negative")


@dataclass(frozen=True)
class OffsetByteRequest:
    """Bytes ``[offset, EOF)``; an offset at or past EOF gives ``b""``."""

    offset: int

    def __post_init__(self) -> None:
        if self.offset < 0:
            raise ValueError(f"byte offset {self.offset} must not be negative")


@dataclass(frozen=True)
class SuffixByteRequest:
    """The last ``suffix`` bytes (the whole object if it is shorter), e.g. a Parquet footer."""

    suffix: int

    def __post_init__(self) -> None:
        if self.suffix < 0:
            raise ValueError(f"byte suffix {self.suffix} must not be negative")


ByteRequest = RangeByteRequest | OffsetByteRequest | SuffixByteRequest


@dataclass(frozen=True)
class ObjectInfo:
    """One listed object; ``last_modified`` is unix seconds (used for grace periods and retention)."""

    key: str
    size: int
    last_modified: float


def slice_range(data: bytes, byte_range: ByteRequest | None) -> bytes:
    """Apply a byte request to bytes already in memory, with the same clipping rules as a backend read."""
    match byte_range:
        case None:
            return data
        case RangeByteRequest(start=start, end=end):
            return data[start:end] if end > start else b""
        case OffsetByteRequest(offset=offset):
            return data[offset:]
        case SuffixByteRequest(suffix=suffix):
            return data[len(data) - suffix :] if suffix else b""
    raise TypeError(f"unknown byte request {byte_range!r}")


def _check_parts(value: str, what: str, allow_trailing_slash: bool) -> None:
    if "\\" in value or "\x00" in value:
        raise ValueError(f"{what} {value!r} must not contain backslashes or NUL bytes")
    if value.startswith("/"):
        raise ValueError(f"{what} {value!r} must be relative (no leading '/')")
    parts = value.split("/")
    if allow_trailing_slash and parts and parts[-1] == "":
        parts = parts[:-1]
    for i, part in enumerate(parts):
        if part in ("", ".", ".."):
            raise ValueError(f"{what} {value!r} has an empty, '.' or '..' component")
        if i == 0 and part == RESERVED_TOP_LEVEL:
            raise ValueError(f"{what} {value!r} is inside the reserved folder {RESERVED_TOP_LEVEL}/")


def validate_key(key: str) -> str:
    """Return ``key`` if it is a usable object key, else raise ValueError saying why.

    Empty, "." or ".." components are refused because a local directory would fold them while S3
    would keep them, and the two backends must agree on what a key names.
    """
    if not isinstance(key, str):
        raise TypeError(f"object key must be a string, got {type(key).__name__}")
    if not key:
        raise ValueError("object key must not be empty")
    _check_parts(key, "object key", allow_trailing_slash=False)
    return key


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if usable for listing ("" means everything); a trailing "/" is allowed."""
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a string, got {type(prefix).__name__}")
    if prefix:
        _check_parts(prefix, "prefix", allow_trailing_slash=True)
    return prefix


def folder_prefix(prefix: str) -> str:
    """``prefix`` as a folder ("a" and "a/" both mean the folder a/; "" is the top level)."""
    validate_prefix(prefix)
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


class Backend(ABC):
    """An object store: whole-object writes, ranged reads, sorted recursive listings.

    Implementations are safe to share between threads. ``description`` names the store in every
    error message, so an operator can tell which bucket or directory failed.
    """

    description: str
    # Every read is a network round trip (S3): readers coalesce a Parquet row group's column chunks
    # into one request (pre_buffer) and skip probe reads. Local files answer small reads cheaply.
    coalesce_reads: bool = False

    @abstractmethod
    def read(self, key: str, byte_range: ByteRequest | None = None) -> bytes:
        """The object's bytes (or the requested range); ObjectNotFoundError if absent."""

    @abstractmethod
    def write(self, key: str, data: bytes) -> None:
        """Create or replace an object atomically: readers see the old or the new object, never a part."""

    @abstractmethod
    def write_file(self, key: str, path: str | Path) -> None:
        """Upload a (large) file, atomically like ``write``, without reading it into memory."""

    @abstractmethod
    def write_if_absent(self, key: str, data: bytes) -> bool:
        """Create the object only if no object has this key; False (and no change) if one does."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object has exactly this key (a "folder" is not an object)."""

    @abstractmethod
    def size(self, key: str) -> int:
        """The object's size in bytes; ObjectNotFoundError if absent."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (a plain string prefix), recursive, by key."""

    @abstractmethod
    def list_dirs(self, prefix: str = "") -> list[str]:
        """Names of the folders directly under the folder ``prefix``, sorted.

        A folder exists only while it holds at least one object, on every backend (as on S3).
        """

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete the object; an absent object is not an error."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete every object whose key starts with ``prefix``; returns how many were deleted."""

    @abstractmethod
    def open_input_file(self, key: str) -> pyarrow.NativeFile:
        """A random-access file for pyarrow.parquet; ObjectNotFoundError if absent."""

    def open_scan_file(self, key: str) -> pyarrow.NativeFile:
        """``open_input_file`` for a reader that goes through the object once (the compactor): a
        backend may read it into buffers rather than map it, so its pages do not stay resident."""
        return self.open_input_file(key)

    @abstractmethod
    def close(self) -> None:
        """Release clients and connections; the backend is not used afterwards."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description}>"
