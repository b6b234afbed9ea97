"""Child process of the WAL crash test: appends until killed, printing each acknowledged record.

Run as ``python wal_writer_child.py DIR FSYNC SEGMENT_BYTES THREADS FIRST_SEQ``. Each thread takes the next
sequence number, appends the record ``payload_for(seq)`` and, only after ``append`` returned, writes
``seq`` on a line of stdout. The parent SIGKILLs us at a random moment and checks that every printed
sequence number replays intact: a printed line is a promise the WAL made.
"""

from __future__ import annotations

import itertools
import os
import random
import sys
import threading


def tenant_for(seq: int) -> str:
    return f"tenant-{seq % 3}"


def payload_for(seq: int) -> bytes:
    """Deterministic, varied-size content, so the parent can tell an intact record from a damaged one."""
    rng = random.Random(seq)
    return seq.to_bytes(8, "little") + rng.randbytes(rng.randrange(0, 30_000))


def main() -> None:
    from tracelake.wal import WAL

    directory, fsync, segment_bytes, threads, first_seq = sys.argv[1:6]
    wal = WAL(directory, fsync=fsync, segment_bytes=int(segment_bytes))  # type: ignore[arg-type]
    seqs = itertools.count(int(first_seq))

    def writer() -> None:
        while True:
            seq = next(seqs)
            wal.append(tenant_for(seq), payload_for(seq), seq)
            os.write(1, b"%d\n" % seq)  # one small write to a pipe is atomic: no torn lines

    workers = [threading.Thread(target=writer, daemon=True) for _ in range(int(threads))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


if __name__ == "__main__":
    main()
