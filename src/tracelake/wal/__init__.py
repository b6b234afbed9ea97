"""The ingester's write-ahead log: requests are appended before they are acknowledged, replayed on start.

Layout: a directory of numbered segment files (format in ``tracelake.wal.format``) plus a ``LOCK`` file
that keeps a second process from writing the same WAL. A WAL always writes a *new* segment, numbered
after the highest one present; the segments it found when opened belong to ``replay``. The ingester
deletes segments with ``remove_segments_below`` once their spans are in blocks in the object store.

Durability (``fsync``):

- ``"always"``: ``append`` returns after an fsync that covers the record. Concurrent appenders share
  fsyncs (group commit): the first one to find no fsync running becomes the leader and fsyncs
  everything written so far *outside* the writers' lock, so others keep writing meanwhile; when it
  finishes, every appender whose record it covered returns and one of the rest leads the next round.
- ``"never"``: ``append`` returns once the write syscall is done: the record survives the process
  being killed, not the machine losing power.

Either way a closed (rolled) segment is fsynced, and an fsync that fails poisons the WAL: after a failed
fsync the kernel may have dropped the dirty pages, so retrying could report success for lost data.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from tracelake.errors import TracelakeError
from tracelake.wal.format import (
    FILE_HEADER,
    FORMAT_VERSION,
    SegmentReader,
    encode_tenant,
    file_header,
    frame,
    parse_segment_name,
    segment_name,
)

if TYPE_CHECKING:
    from tracelake.config import WALConfig

__all__ = ["FORMAT_VERSION", "WAL", "WALError", "WALRecord", "WALStats"]

log = logging.getLogger(__name__)

FsyncPolicy = Literal["always", "never"]
LOCK_FILE = "LOCK"
_TENANT_CACHE_MAX = 4096
_fdatasync = getattr(os, "fdatasync", os.fsync)  # data + size is all a reader needs; skips mtime


class WALError(TracelakeError):
    """The WAL cannot take (or could not make durable) a record: I/O error, closed, or locked."""


@dataclass(frozen=True)
class WALRecord:
    segment: int
    tenant: str
    received_unix_nano: int
    payload: bytes  # a serialized OTLP ExportTraceServiceRequest


@dataclass
class WALStats:
    """Counters for metrics. Byte counts are bytes on disk, record framing included."""

    bytes_appended: int = 0
    records_appended: int = 0
    fsyncs: int = 0  # every fsync/fdatasync call, directory syncs included
    replayed_records: int = 0
    replayed_bytes: int = 0
    corrupt_segments: int = 0  # segments whose replay stopped at a bad record or had a bad header


class WAL:
    """Append-only, segmented, checksummed log of received requests; thread-safe."""

    def __init__(
        self, directory: str | Path, *, fsync: FsyncPolicy = "always", segment_bytes: int = 64 << 20
    ) -> None:
        if fsync not in ("always", "never"):
            raise ValueError(f"fsync must be 'always' or 'never', not {fsync!r}")
        if segment_bytes <= 0:
            raise ValueError(f"segment_bytes must be positive, not {segment_bytes}")
        self._dir = Path(directory)
        self._fsync_always = fsync == "always"
        self._segment_bytes = segment_bytes
        self.stats = WALStats()
        self._tenant_heads: dict[str, bytes] = {}

        self._dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = self._take_dir_lock()
        try:
            existing = self.segments()
            self._replay_segments = existing
            # Guards everything below; ``_cond`` is how appenders wait for a group fsync.
            self._lock = threading.Lock()
            self._cond = threading.Condition(self._lock)
            self._segment = existing[-1] + 1 if existing else 1
            self._fd = self._create_segment(self._segment)
            if self._fsync_always:
                self._sync_dir()
                self.stats.fsyncs += 1
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._size = FILE_HEADER.size  # write offset in the current segment
        self._segment_records = 0
        self._written = 0  # sequence number of the last record written
        self._synced = 0  # every record up to this sequence number is fsynced
        self._syncing = False  # a leader (or a roll) is fsyncing outside the lock
        self._closed = False
        self._failed: WALError | None = None

    @classmethod
    def from_config(cls, config: WALConfig) -> WAL:
        """The WAL that ``storage.trace.wal`` describes."""
        return cls(config.path, fsync=config.fsync, segment_bytes=config.segment_bytes)

    # -- appending -----------------------------------------------------------------------------

    def append(self, tenant: str, payload: bytes | bytearray | memoryview, received_unix_nano: int) -> int:
        """Append one record; returns its segment number once it is durable per the fsync policy."""
        head = self._tenant_heads.get(tenant)
        if head is None:
            head = encode_tenant(tenant)
            if len(self._tenant_heads) >= _TENANT_CACHE_MAX:
                self._tenant_heads.clear()
            self._tenant_heads[tenant] = head
        if not isinstance(payload, bytes):
            payload = memoryview(payload).cast("B")
        prefix = frame(head, payload, received_unix_nano)
        size = len(prefix) + len(payload)
        with self._lock:
            self._check_usable()
            # Roll before a record that would overflow the segment (a record bigger than a whole
            # segment still goes alone into one), so segments stay within segment_bytes.
            while self._segment_records and self._size + size > self._segment_bytes:
                if self._syncing:
                    self._cond.wait()
                    self._check_usable()
                else:
                    self._roll_locked()
            segment = self._segment
            self._write_locked(prefix, payload, size)
            self._written += 1
            seq = self._written
            self.stats.records_appended += 1
            self.stats.bytes_appended += size
            if self._fsync_always:
                self._wait_synced_locked(seq)
        return segment

    def roll(self) -> int:
        """Close the current segment (fsynced) and start a new one; returns the new segment number."""
        with self._lock:
            self._check_usable()
            while self._syncing:
                self._cond.wait()
                self._check_usable()
            self._roll_locked()
            return self._segment

    @property
    def current_segment(self) -> int:
        return self._segment

    def close(self) -> None:
        """Fsync and close the current segment and release the directory; idempotent."""
        with self._lock:
            if self._closed:
                return
            while self._syncing:
                self._cond.wait()
            self._closed = True
            try:
                if self._failed is None:
                    self._fsync_counted(self._fd)
                    self._synced = self._written
            except OSError as exc:
                self._failed = WALError(f"fsync of WAL segment {self._segment} failed on close: {exc}")
                raise self._failed from exc
            finally:
                os.close(self._fd)
                os.close(self._lock_fd)
                self._cond.notify_all()

    def __enter__(self) -> WAL:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise self._failed
        if self._closed:
            raise WALError("the WAL is closed")

    def _write_locked(self, prefix: bytes, payload: bytes | memoryview, size: int) -> None:
        """Write one record at the end of the current segment, or leave the segment as it was."""
        offset = self._size
        try:
            _pwritev_all(self._fd, [prefix, payload], offset, size)
        except OSError as exc:
            # A half-written record would end replay of this segment, hiding every later record:
            # cut it off, and if even that fails, stop taking records.
            try:
                os.ftruncate(self._fd, offset)
            except OSError as trunc_exc:
                self._failed = WALError(
                    f"WAL segment {self._segment} holds a partial record that could not be cut off: "
                    f"{trunc_exc}"
                )
            raise WALError(f"append to WAL segment {self._segment} failed: {exc}") from exc
        self._size = offset + size
        self._segment_records += 1

    def _wait_synced_locked(self, seq: int) -> None:
        """Group commit: return once an fsync covering record ``seq`` completed, leading one if none runs."""
        while self._synced < seq:
            if self._failed is not None:
                raise self._failed
            if self._closed:  # close() syncs everything, so only a failed close gets here
                raise WALError("the WAL was closed before the record was made durable")
            if self._syncing:
                self._cond.wait()
                continue
            target, fd = self._written, self._fd
            error = self._unlocked(functools.partial(_fdatasync, fd))
            if error is not None:
                self._fail(f"fsync of WAL segment {self._segment} failed", error)
            # No roll can run while we lead (it waits for _syncing), so every record up to target is
            # in fd or in a segment synced when it was rolled.
            self._synced = max(self._synced, target)
            self.stats.fsyncs += 1
            self._cond.notify_all()

    def _roll_locked(self) -> None:
        """Switch writers to a new segment at once, then fsync and close the old one outside the lock."""
        old_fd, old_segment, target = self._fd, self._segment, self._written
        try:
            new_fd = self._create_segment(old_segment + 1)
        except OSError as exc:
            raise WALError(f"cannot create WAL segment {old_segment + 1}: {exc}") from exc
        self._fd, self._segment = new_fd, old_segment + 1
        self._size, self._segment_records = FILE_HEADER.size, 0

        def sync_old() -> None:
            try:
                _fdatasync(old_fd)
            finally:
                os.close(old_fd)
            if self._fsync_always:  # the new file's name must be durable before a record in it is acked
                self._sync_dir()

        error = self._unlocked(sync_old)
        if error is not None:
            self._fail(f"fsync of rolled WAL segment {old_segment} failed", error)
        self._synced = max(self._synced, target)
        self.stats.fsyncs += 2 if self._fsync_always else 1
        self._cond.notify_all()

    def _unlocked(self, fn: Callable[[], None]) -> OSError | None:
        """Run ``fn`` with the writers' lock released and ``_syncing`` set; return its OSError, if any."""
        self._syncing = True
        self._lock.release()
        try:
            fn()
            return None
        except OSError as exc:
            return exc
        finally:
            self._lock.acquire()
            self._syncing = False

    def _fail(self, message: str, error: OSError) -> None:
        self._failed = WALError(f"{message}: {error}")
        self._cond.notify_all()
        raise self._failed from error

    def _create_segment(self, number: int) -> int:
        path = self._dir / segment_name(number)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            header = file_header()
            if os.pwrite(fd, header, 0) != len(header):
                raise OSError(f"short write of the file header of {path}")
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _fsync_counted(self, fd: int) -> None:
        _fdatasync(fd)
        self.stats.fsyncs += 1

    def _sync_dir(self) -> None:
        fd = os.open(self._dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _take_dir_lock(self) -> int:
        fd = os.open(self._dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise WALError(f"WAL directory {self._dir} is in use by another WAL") from None
        return fd

    # -- segments on disk ----------------------------------------------------------------------

    def segments(self) -> list[int]:
        """Numbers of all segment files on disk, ascending."""
        numbers = []
        with os.scandir(self._dir) as entries:
            for entry in entries:
                number = parse_segment_name(entry.name)
                if number is not None:
                    numbers.append(number)
        return sorted(numbers)

    def remove_segments_below(self, segment: int) -> list[int]:
        """Delete closed segment files numbered below ``segment`` (never the current one)."""
        limit = min(segment, self._segment)
        removed = []
        for number in self.segments():
            if number >= limit:
                break
            try:
                os.unlink(self._dir / segment_name(number))
            except FileNotFoundError:
                continue
            removed.append(number)
        if removed and self._fsync_always:
            # Else a power cut could bring the segments back and replay spans already in blocks.
            self._sync_dir()
            with self._lock:
                self.stats.fsyncs += 1
        return removed

    def disk_bytes(self) -> int:
        """Total bytes of segment files."""
        total = 0
        for number in self.segments():
            with contextlib.suppress(FileNotFoundError):  # removed meanwhile
                total += os.stat(self._dir / segment_name(number)).st_size
        return total

    # -- replay --------------------------------------------------------------------------------

    def replay(self) -> Iterator[WALRecord]:
        """Every readable record of the segments that existed when the WAL was opened, oldest first.

        Damage (a torn tail after a crash, a checksum mismatch, a bad file header) ends that segment
        with a warning and a count in ``stats.corrupt_segments``; later segments are still read.
        """
        for number in self._replay_segments:
            path = self._dir / segment_name(number)
            try:
                f = open(path, "rb", buffering=1 << 20)  # noqa: SIM115 -- closed by the with below
            except FileNotFoundError:  # removed since the WAL was opened
                continue
            with f:
                size = os.fstat(f.fileno()).st_size
                if size == 0:
                    # A crash between creating the file and writing its header: nothing was in it.
                    log.info("empty WAL segment skipped", extra={"segment": number, "path": str(path)})
                    continue
                reader = SegmentReader(f, size)
                try:
                    if reader.check_header():
                        for raw in reader.records():
                            with self._lock:
                                self.stats.replayed_records += 1
                                self.stats.replayed_bytes += raw.size
                            yield WALRecord(number, raw.tenant, raw.received_unix_nano, raw.payload)
                except OSError as exc:
                    self._report_damage(number, path, -1, f"read error: {exc}")
                    continue
                if reader.damage is not None:
                    self._report_damage(number, path, reader.damage.offset, reader.damage.reason)

    def _report_damage(self, segment: int, path: Path, offset: int, reason: str) -> None:
        log.warning(
            "WAL segment %d damaged at offset %d: %s; rest of the segment skipped",
            segment,
            offset,
            reason,
            extra={"segment": segment, "offset": offset, "reason": reason, "path": str(path)},
        )
        with self._lock:
            self.stats.corrupt_segments += 1


def _pwritev_all(fd: int, buffers: list[bytes | memoryview], offset: int, size: int) -> None:
    """One positioned vectored write of the whole record; loops only on the rare short write."""
    written = os.pwritev(fd, buffers, offset)
    while written < size:
        if written == 0:
            raise OSError("write made no progress")
        remaining, skip = [], written
        for buf in buffers:
            view = memoryview(buf)
            if skip >= len(view):
                skip -= len(view)
                continue
            remaining.append(view[skip:])
            skip = 0
        buffers, offset, size = remaining, offset + written, size - written
        written = os.pwritev(fd, buffers, offset)
