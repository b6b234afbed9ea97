"""Benchmark: WAL append throughput for 40 KB requests, per fsync policy and number of appending threads.

Run as `python benchmarks/wal_bench.py [--seconds 2.5] [--payload-kb 40] [--dir /path/on/the/disk]`.
Prints one table: appends/s, MB/s of payload, fsyncs per append (group commit at work: below 1 with
concurrent appenders) and append latency percentiles. Two baseline rows show the raw cost of the
same writes without the WAL (one `os.write`, plus `fdatasync` for "always"), so the WAL's own overhead
can be read off.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

try:
    import tracelake  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tracelake.wal import WAL


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def run_wal(directory: Path, fsync: str, threads: int, payload: bytes, seconds: float) -> dict[str, float]:
    wal = WAL(directory, fsync=fsync)  # type: ignore[arg-type]
    fsyncs_before = wal.stats.fsyncs
    barrier = threading.Barrier(threads + 1)
    latencies: list[list[float]] = [[] for _ in range(threads)]
    stop_at = [0.0]

    def worker(index: int) -> None:
        mine = latencies[index]
        barrier.wait()
        now = time.perf_counter()
        while now < stop_at[0]:
            wal.append("bench", payload, time.time_ns())
            after = time.perf_counter()
            mine.append(after - now)
            now = after

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    start = time.perf_counter()
    stop_at[0] = start + seconds
    barrier.wait()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    appends = wal.stats.records_appended
    fsyncs = wal.stats.fsyncs - fsyncs_before
    wal.close()
    return summarize(appends, len(payload), elapsed, fsyncs, sorted(x for xs in latencies for x in xs))


def run_raw(directory: Path, fsync: str, payload: bytes, seconds: float) -> dict[str, float]:
    """The floor: one thread, plain write (and fdatasync) of the same bytes, no framing or checksum."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / "raw", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    latencies, fsyncs = [], 0
    start = now = time.perf_counter()
    while now < start + seconds:
        os.write(fd, payload)
        if fsync == "always":
            os.fdatasync(fd)
            fsyncs += 1
        after = time.perf_counter()
        latencies.append(after - now)
        now = after
    elapsed = time.perf_counter() - start
    os.close(fd)
    return summarize(len(latencies), len(payload), elapsed, fsyncs, sorted(latencies))


def summarize(
    appends: int, size: int, elapsed: float, fsyncs: int, latencies: list[float]
) -> dict[str, float]:
    return {
        "appends_s": appends / elapsed,
        "mb_s": appends * size / elapsed / 1e6,
        "fsyncs_per_append": fsyncs / max(appends, 1),
        "p50_ms": percentile(latencies, 0.50) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.5, help="duration of each case")
    parser.add_argument("--payload-kb", type=int, default=40)
    parser.add_argument("--dir", default=None, help="where segments go (default: a temporary directory)")
    args = parser.parse_args()

    payload = os.urandom(args.payload_kb * 1024)
    base = Path(tempfile.mkdtemp(prefix="wal-bench-", dir=args.dir))
    cases = [
        ("raw write+fdatasync", "always", 1, None),
        ("raw write", "never", 1, None),
        ("WAL", "always", 1, "wal"),
        ("WAL", "always", 8, "wal"),
        ("WAL", "never", 1, "wal"),
        ("WAL", "never", 8, "wal"),
    ]
    print(
        f"WAL append, {args.payload_kb} KB payloads, {args.seconds:g} s per case; "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, dir {base}"
    )
    header = f"{'case':<20} {'fsync':<7} {'threads':>7} {'appends/s':>10} {'MB/s':>8} {'fsync/append':>12}"
    header += f" {'p50 ms':>7} {'p99 ms':>7}"
    print(header)
    print("-" * len(header))
    try:
        for i, (name, fsync, threads, kind) in enumerate(cases):
            directory = base / str(i)
            if kind == "wal":
                r = run_wal(directory, fsync, threads, payload, args.seconds)
            else:
                r = run_raw(directory, fsync, payload, args.seconds)
            shutil.rmtree(directory)
            print(
                f"{name:<20} {fsync:<7} {threads:>7} {r['appends_s']:>10,.0f} {r['mb_s']:>8,.1f}"
                f" {r['fsyncs_per_append']:>12.3f} {r['p50_ms']:>7.3f} {r['p99_ms']:>7.3f}"
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
