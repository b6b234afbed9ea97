"""The WAL: round trips, segment rolling and removal, damage handling, group commit and process crashes.

All on real files; the crash test SIGKILLs a real writer process at a random moment.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.unit.wal_writer_child import payload_for, tenant_for
from tracelake.wal import WAL, WALError, WALRecord
from tracelake.wal.format import FILE_HEADER, MAGIC, PREFIX, file_header, parse_segment_name, segment_name

CHILD = Path(__file__).with_name("wal_writer_child.py")


def record_size(tenant: str, payload: bytes) -> int:
    return PREFIX.size + 2 + len(tenant.encode()) + 8 + len(payload)


def replay_all(directory: Path, **kwargs: object) -> tuple[list[WALRecord], WAL]:
    wal = WAL(directory, **kwargs)  # type: ignore[arg-type]
    records = list(wal.replay())
    wal.close()
    return records, wal


def as_tuples(records: list[WALRecord]) -> list[tuple[str, int, bytes]]:
    return [(r.tenant, r.received_unix_nano, r.payload) for r in records]


def write_segments(directory: Path, per_segment: list[list[tuple[str, bytes, int]]]) -> None:
    """Segments 1..n holding the given (tenant, payload, time) records."""
    with WAL(directory, fsync="never") as wal:
        for i, records in enumerate(per_segment):
            if i:
                wal.roll()
            for tenant, payload, ts in records:
                wal.append(tenant, payload, ts)


# -- round trips -----------------------------------------------------------------------------------


def test_append_replay_round_trip(tmp_path: Path) -> None:
    records = [
        ("single-tenant", b"\x00\x01\x02", 1),
        ("tenant-ä-ü", b"", 2**64 - 1),
        ("", b"no tenant", 0),
        ("big", os.urandom(1 << 20), 1_700_000_000_123_456_789),
        ("single-tenant", bytearray(b"bytearray payload"), 5),
        ("mv", memoryview(b"xxmemoryview payload")[2:], 6),
    ]
    wal = WAL(tmp_path)
    assert wal.current_segment == 1
    for tenant, payload, ts in records:
        assert wal.append(tenant, payload, ts) == 1
    assert list(wal.replay()) == []  # the segment being written is not replay's
    wal.close()

    replayed, reopened = replay_all(tmp_path)
    assert as_tuples(replayed) == [(t, ts, bytes(p)) for t, p, ts in records]
    assert all(type(r.payload) is bytes and r.segment == 1 for r in replayed)
    assert reopened.stats.replayed_records == len(records)
    assert reopened.stats.replayed_bytes == sum(record_size(t, bytes(p)) for t, p, _ in records)
    assert reopened.stats.corrupt_segments == 0


def test_stats_and_disk_bytes(tmp_path: Path) -> None:
    with WAL(tmp_path, fsync="never") as wal:
        for i in range(10):
            wal.append("t", b"x" * i, i)
        assert wal.stats.records_appended == 10
        assert wal.stats.bytes_appended == sum(record_size("t", b"x" * i) for i in range(10))
        assert wal.stats.fsyncs == 0  # "never" does not fsync per append
        assert wal.disk_bytes() == FILE_HEADER.size + wal.stats.bytes_appended
        assert wal.disk_bytes() == (tmp_path / segment_name(1)).stat().st_size


def test_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fsync"):
        WAL(tmp_path / "a", fsync="sometimes")  # type: ignore[arg-type]
    with WAL(tmp_path / "b") as wal:
        with pytest.raises(ValueError, match="tenant"):
            wal.append("x" * 70_000, b"", 0)
        with pytest.raises(ValueError, match="64-bit"):
            wal.append("t", b"", -1)
        wal.append("t", b"still usable", 1)
    with pytest.raises(WALError, match="closed"):
        wal.append("t", b"", 1)


def test_from_config(tmp_path: Path) -> None:
    from tracelake.config import WALConfig

    config = WALConfig(path=str(tmp_path / "wal"), fsync="never", segment_bytes=1000)
    with WAL.from_config(config) as wal:
        wal.append("t", b"x" * 600, 1)
        assert wal.append("t", b"x" * 600, 2) == 2
        assert wal.stats.fsyncs == 1  # only the rolled segment: "never"


def test_directory_is_locked_while_open(tmp_path: Path) -> None:
    wal = WAL(tmp_path)
    with pytest.raises(WALError, match="in use"):
        WAL(tmp_path)
    wal.close()
    WAL(tmp_path).close()


def test_other_files_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "123.wal").write_bytes(b"too short a name")
    with WAL(tmp_path) as wal:
        assert wal.segments() == [1]
        assert list(wal.replay()) == []


# -- segments --------------------------------------------------------------------------------------


def test_rolls_by_size(tmp_path: Path) -> None:
    payload = b"p" * 3000
    size = record_size("t", payload)
    with WAL(tmp_path, fsync="never", segment_bytes=10_000) as wal:
        segments = [wal.append("t", payload, i) for i in range(20)]
        big = wal.append("t", b"B" * 25_000, 99)  # bigger than a segment: alone in one
        after_big = wal.append("t", payload, 100)
    per_segment = (10_000 - FILE_HEADER.size) // size
    assert segments == [1 + i // per_segment for i in range(20)]
    assert big == segments[-1] + 1 and after_big == big + 1
    for number in range(1, big):
        assert (tmp_path / segment_name(number)).stat().st_size <= 10_000

    replayed, _ = replay_all(tmp_path)
    assert [r.segment for r in replayed] == [*segments, big, after_big]
    assert [r.received_unix_nano for r in replayed] == [*range(20), 99, 100]


def test_roll_returns_new_segment_and_syncs(tmp_path: Path) -> None:
    with WAL(tmp_path, fsync="never") as wal:
        wal.append("t", b"a", 1)
        assert wal.roll() == 2 == wal.current_segment
        assert wal.stats.fsyncs == 1  # the closed segment
        assert wal.append("t", b"b", 2) == 2
        assert wal.roll() == 3
        assert wal.segments() == [1, 2, 3]


def test_remove_segments_below_never_removes_current(tmp_path: Path) -> None:
    with WAL(tmp_path) as wal:
        for i in range(4):
            wal.append("t", b"r", i)
            wal.roll()
        assert wal.current_segment == 5
        assert wal.remove_segments_below(3) == [1, 2]
        assert wal.segments() == [3, 4, 5]
        assert wal.remove_segments_below(1_000) == [3, 4]
        assert wal.segments() == [5]
        assert wal.remove_segments_below(1_000) == []
        assert wal.append("t", b"still writing", 9) == 5
    replayed, _ = replay_all(tmp_path)
    assert as_tuples(replayed) == [("t", 9, b"still writing")]


def test_reopen_starts_new_segment_and_replays_old(tmp_path: Path) -> None:
    with WAL(tmp_path) as wal:
        wal.append("a", b"first", 1)
        wal.roll()
        wal.append("a", b"second", 2)
    first_size = (tmp_path / segment_name(2)).stat().st_size

    with WAL(tmp_path) as wal:
        assert wal.current_segment == 3
        assert wal.append("b", b"third", 3) == 3
        assert [(r.segment, r.payload) for r in wal.replay()] == [(1, b"first"), (2, b"second")]
    assert (tmp_path / segment_name(2)).stat().st_size == first_size  # never appended to

    with WAL(tmp_path) as wal:
        assert wal.current_segment == 4
        assert [r.payload for r in wal.replay()] == [b"first", b"second", b"third"]


def test_replay_skips_segments_removed_after_open(tmp_path: Path) -> None:
    write_segments(tmp_path, [[("t", b"one", 1)], [("t", b"two", 2)]])
    with WAL(tmp_path) as wal:
        assert wal.remove_segments_below(2) == [1]
        assert [r.payload for r in wal.replay()] == [b"two"]
        assert wal.stats.corrupt_segments == 0


# -- damage ----------------------------------------------------------------------------------------


def five_and_three() -> list[list[tuple[str, bytes, int]]]:
    return [
        [(f"t{i}", bytes([i]) * (100 + i), i) for i in range(5)],
        [(f"t{i}", bytes([i]) * (200 + i), i) for i in range(5, 8)],
    ]


def offset_of(records: list[tuple[str, bytes, int]], index: int) -> int:
    return FILE_HEADER.size + sum(record_size(t, p) for t, p, _ in records[:index])


def damage_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "tracelake.wal" and r.levelno == logging.WARNING]


def test_corrupt_record_ends_its_segment_only(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    segments = five_and_three()
    write_segments(tmp_path, segments)
    bad = offset_of(segments[0], 2)
    path = tmp_path / segment_name(1)
    data = bytearray(path.read_bytes())
    data[bad + PREFIX.size + 20] ^= 0xFF  # a payload byte of the third record
    path.write_bytes(bytes(data))

    with caplog.at_level(logging.WARNING, logger="tracelake.wal"):
        replayed, wal = replay_all(tmp_path)
    expected = segments[0][:2] + segments[1]
    assert as_tuples(replayed) == [(t, ts, p) for t, p, ts in expected]
    assert wal.stats.corrupt_segments == 1
    (warning,) = damage_warnings(caplog)
    assert (warning.segment, warning.offset, warning.reason) == (1, bad, "checksum mismatch")  # type: ignore[attr-defined]


def test_truncated_tail(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    segments = five_and_three()
    write_segments(tmp_path, segments)
    path = tmp_path / segment_name(2)
    original = path.read_bytes()
    last = record_size(*segments[1][-1][:2])
    # (bytes cut off the end, records left): a torn payload, a torn prefix, one and a half records.
    for cut, left in ((1, 7), (150, 7), (last - 3, 7), (last + 5, 6)):
        path.write_bytes(original[:-cut])
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="tracelake.wal"):
            replayed, wal = replay_all(tmp_path)
        assert len(replayed) == left, cut
        assert wal.stats.corrupt_segments == 1
        (warning,) = damage_warnings(caplog)
        assert warning.segment == 2 and "truncated" in warning.reason  # type: ignore[attr-defined]
        for extra in wal.segments()[2:]:  # the empty segments each reopening made
            (tmp_path / segment_name(extra)).unlink()


def test_absurd_length_is_corruption_without_allocating(tmp_path: Path) -> None:
    segments = five_and_three()
    write_segments(tmp_path, segments)
    path = tmp_path / segment_name(1)
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, offset_of(segments[0], 1), 0xFFFFFFF0)
    path.write_bytes(bytes(data))
    replayed, wal = replay_all(tmp_path)
    assert [r.received_unix_nano for r in replayed] == [0, 5, 6, 7]
    assert wal.stats.corrupt_segments == 1


def test_length_below_minimum_and_bad_tenant_length(tmp_path: Path) -> None:
    segments = five_and_three()
    write_segments(tmp_path, segments)
    for segment, field_offset, value, fmt in ((1, 0, 3, "<I"), (2, PREFIX.size, 0xFFFF, "<H")):
        path = tmp_path / segment_name(segment)
        data = bytearray(path.read_bytes())
        struct.pack_into(fmt, data, FILE_HEADER.size + field_offset, value)
        path.write_bytes(bytes(data))
    replayed, wal = replay_all(tmp_path)
    assert replayed == []
    assert wal.stats.corrupt_segments == 2


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (b"GARBAGE!", "bad magic"),
        (MAGIC + struct.pack("<H", 99), "unsupported format version 99"),
        (MAGIC[:3], "file header truncated"),
    ],
)
def test_bad_file_header_is_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, header: bytes, reason: str
) -> None:
    segments = five_and_three()
    write_segments(tmp_path, segments)
    path = tmp_path / segment_name(1)
    # A header shorter than 8 bytes is the whole file (else it would just be a different magic).
    records = path.read_bytes()[FILE_HEADER.size :] if len(header) == FILE_HEADER.size else b""
    path.write_bytes(header + records)
    with caplog.at_level(logging.WARNING, logger="tracelake.wal"):
        replayed, wal = replay_all(tmp_path)
    assert [r.segment for r in replayed] == [2, 2, 2]
    assert wal.stats.corrupt_segments == 1
    (warning,) = damage_warnings(caplog)
    assert warning.segment == 1 and reason in warning.reason  # type: ignore[attr-defined]


def test_empty_segment_file_is_not_corruption(tmp_path: Path) -> None:
    """A crash between creating a segment and writing its header leaves an empty file: nothing lost."""
    write_segments(tmp_path, [[("t", b"x", 1)]])
    (tmp_path / segment_name(2)).write_bytes(b"")
    (tmp_path / segment_name(3)).write_bytes(file_header())
    replayed, wal = replay_all(tmp_path)
    assert as_tuples(replayed) == [("t", 1, b"x")]
    assert wal.stats.corrupt_segments == 0
    assert wal.current_segment == 4


# -- I/O failures ----------------------------------------------------------------------------------


def test_short_writes_are_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_pwritev = os.pwritev

    def at_most_1000(fd: int, buffers: list[bytes], offset: int) -> int:
        return real_pwritev(fd, [bytes(b"".join(buffers)[:1000])], offset)

    payloads = [os.urandom(n) for n in (10, 999, 5_000)]
    with WAL(tmp_path, fsync="never") as wal:
        monkeypatch.setattr(os, "pwritev", at_most_1000)
        for i, p in enumerate(payloads):
            wal.append("t", p, i)
        monkeypatch.undo()
    replayed, _ = replay_all(tmp_path)
    assert [r.payload for r in replayed] == payloads


def test_failed_write_leaves_no_torn_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Disk full halfway through a record: the half is cut off, so later records still replay."""
    real_pwritev = os.pwritev
    calls = []

    def half_then_enospc(fd: int, buffers: list[bytes], offset: int) -> int:
        calls.append(offset)
        if len(calls) == 1:
            return real_pwritev(fd, [bytes(b"".join(buffers)[:50])], offset)
        raise OSError(28, "No space left on device")

    with WAL(tmp_path, fsync="never") as wal:
        wal.append("t", b"before", 1)
        monkeypatch.setattr(os, "pwritev", half_then_enospc)
        with pytest.raises(WALError, match="No space left"):
            wal.append("t", b"x" * 200, 2)
        monkeypatch.undo()
        wal.append("t", b"after", 3)
    replayed, reopened = replay_all(tmp_path)
    assert as_tuples(replayed) == [("t", 1, b"before"), ("t", 3, b"after")]
    assert reopened.stats.corrupt_segments == 0


def test_failed_fsync_poisons_the_wal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a failed fsync the kernel may have dropped the data: no later append may claim success."""
    import tracelake.wal

    wal = WAL(tmp_path, fsync="always")
    wal.append("t", b"durable", 1)

    def eio(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(tracelake.wal, "_fdatasync", eio)
    with pytest.raises(WALError, match="Input/output error"):
        wal.append("t", b"lost", 2)
    monkeypatch.undo()
    with pytest.raises(WALError, match="Input/output error"):
        wal.append("t", b"refused", 3)
    wal.close()  # releases the directory without hanging or raising
    WAL(tmp_path).close()


# -- concurrency -----------------------------------------------------------------------------------


def run_threads(wal: WAL, threads: int, per_thread: int, payload_size: int = 100) -> dict[int, int]:
    """Every thread appends ``per_thread`` records; returns received_unix_nano -> returned segment."""
    barrier = threading.Barrier(threads)
    results: dict[int, int] = {}
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                key = t * per_thread + i
                results[key] = wal.append(f"tenant-{t}", key.to_bytes(8, "little") * (payload_size // 8), key)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors, errors
    return results


def test_group_commit_shares_fsyncs(tmp_path: Path) -> None:
    threads, per_thread = 8, 50
    with WAL(tmp_path, fsync="always") as wal:
        before = wal.stats.fsyncs
        run_threads(wal, threads, per_thread)
        fsyncs = wal.stats.fsyncs - before
    assert 0 < fsyncs < threads * per_thread / 2, fsyncs
    replayed, _ = replay_all(tmp_path)
    assert len(replayed) == threads * per_thread


@pytest.mark.parametrize("fsync", ["always", "never"])
def test_concurrent_appends_across_rolls(tmp_path: Path, fsync: str) -> None:
    """Rolls racing with appenders and group fsyncs lose, duplicate or misfile nothing."""
    threads, per_thread = 6, 150
    with WAL(tmp_path, fsync=fsync, segment_bytes=8_000) as wal:  # type: ignore[arg-type]
        segments = run_threads(wal, threads, per_thread, payload_size=1_000)
    replayed, _ = replay_all(tmp_path)
    assert len(replayed) == threads * per_thread
    assert {r.received_unix_nano: r.segment for r in replayed} == segments
    for r in replayed:
        key = r.received_unix_nano
        assert r.tenant == f"tenant-{key // per_thread}"
        assert r.payload == key.to_bytes(8, "little") * 125
    per_thread_order: dict[str, list[int]] = {}
    for r in replayed:
        per_thread_order.setdefault(r.tenant, []).append(r.received_unix_nano)
    assert all(keys == sorted(keys) for keys in per_thread_order.values())


# -- crashes ---------------------------------------------------------------------------------------


def crash_child(directory: Path, fsync: str, first_seq: int, rng: random.Random) -> list[int]:
    """Run the writer child, SIGKILL it at a random moment, return the sequence numbers it acknowledged."""
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(directory), fsync, "200000", "4", str(first_seq)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.extend(child.stdout))  # type: ignore[arg-type]
    reader.start()
    deadline = time.monotonic() + 30
    while not lines and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)  # start the clock once it is appending, not while Python starts
    time.sleep(rng.uniform(0.05, 0.4))
    child.send_signal(signal.SIGKILL)
    child.wait()
    reader.join()
    stderr = child.stderr.read() if child.stderr else b""
    assert child.returncode == -signal.SIGKILL, stderr.decode()
    return [int(line) for line in lines]


@pytest.mark.parametrize("fsync", ["always", "never"])
def test_crash_loses_no_acknowledged_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, fsync: str
) -> None:
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    acked: list[int] = []
    last_of_run: set[int] = set()
    for crash in range(2):  # the second run starts after the first crash's (possibly torn) tail
        acked += crash_child(tmp_path, fsync, first_seq=crash * 10_000_000, rng=rng)
        assert acked, f"seed {seed}: the child acknowledged nothing"
        last_of_run.add(max(segment_numbers(tmp_path)))

        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="tracelake.wal"):
            replayed, wal = replay_all(tmp_path, fsync=fsync)
        found = {r.received_unix_nano: r for r in replayed}
        assert len(found) == len(replayed), f"seed {seed}: a record replayed twice"
        for seq, r in found.items():  # acknowledged or not, whatever replays is intact
            assert (r.tenant, r.payload) == (tenant_for(seq), payload_for(seq)), f"seed {seed}, seq {seq}"
        missing = set(acked) - found.keys()
        assert not missing, f"seed {seed}: acknowledged records lost: {sorted(missing)[:10]}"
        # The only damage a crash may leave is a torn record at the end of the run's last segment.
        warnings = damage_warnings(caplog)
        assert len(warnings) == wal.stats.corrupt_segments <= crash + 1, f"seed {seed}"
        for warning in warnings:
            assert "truncated" in warning.reason, f"seed {seed}: {warning.getMessage()}"  # type: ignore[attr-defined]
            assert warning.segment in last_of_run, f"seed {seed}: {warning.getMessage()}"  # type: ignore[attr-defined]


def segment_numbers(directory: Path) -> list[int]:
    return sorted(n for n in map(parse_segment_name, os.listdir(directory)) if n is not None)
