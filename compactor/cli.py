"""The compactor's commands for ``tracelake`` (registered through the ``tracelake.commands`` entry point):
``tracelake compactor`` (the service, with /ready and /metrics) and ``tracelake compact`` (one run)."""

from __future__ import annotations

import argparse
import contextlib
import sys

from tracelake.config import Config


def _prefer_jemalloc() -> None:
    """For Python's own Arrow allocations when the process did not start through the ``tracelake``
    console script (``python -m tracelake.cli.main``): that script already loads Arrow with jemalloc
    as the default pool for the compactor's commands (``tracelake.cli.launch``), which also covers
    Parquet's readers and writers. mimalloc, the wheels' default, keeps freed pages mapped.
    """
    import pyarrow as pa

    with contextlib.suppress(NotImplementedError):  # a pyarrow built without jemalloc: the default
        pa.set_memory_pool(pa.jemalloc_memory_pool())


def cmd_compactor(args: argparse.Namespace, cfg: Config) -> int:
    from tracelake.compactor.server import run_compactor

    _prefer_jemalloc()
    return run_compactor(cfg)


def cmd_compact(args: argparse.Namespace, cfg: Config) -> int:
    from tracelake.backend import open_backend
    from tracelake.cli.progress import Progress
    from tracelake.compactor.service import CompactorService

    _prefer_jemalloc()
    backend = open_backend(cfg.storage.trace)
    service = CompactorService(cfg, backend)
    progress: list[Progress] = []

    def on_plan(jobs) -> None:
        if progress:
            progress[-1].close()
        progress.append(Progress(sum(j.bytes for j in jobs), "compacting"))
        totals[:] = [sum(j.spans for j in jobs), sum(j.bytes for j in jobs)]

    def on_progress(spans: int) -> None:
        if progress and totals[0]:
            progress[-1].update(int(spans / totals[0] * totals[1]))

    totals = [0, 0]
    try:
        cycles = service.run_until_idle(on_plan, on_progress)
    finally:
        if progress:
            progress[-1].close()
        backend.close()
    done = [r for c in cycles for r in c.done]
    print(
        f"compacted {sum(len(r.job.inputs) for r in done)} block(s) into {len(done)} in {len(cycles)} "
        f"pass(es): {sum(r.output.total_spans for r in done)} spans written, "
        f"{sum(r.stats.duplicates for r in done)} duplicate(s) dropped"
    )
    failed = sum(c.failed for c in cycles)
    if failed:
        print(f"{failed} job(s) failed (the log says why); their inputs stay as they were", file=sys.stderr)
    left_out = {(e.tenant, e.block_id): e for c in cycles for e in [*c.unlisted, *c.unreadable]}
    for error in left_out.values():
        print(f"left out: {error}", file=sys.stderr)
    return 1 if failed or left_out else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compactor", help="run the compactor service (merge blocks, apply retention)")
    p.set_defaults(run=cmd_compactor, logs="info")
    p = sub.add_parser("compact", help="compact every tenant's blocks now, until nothing is left to merge")
    p.set_defaults(run=cmd_compact)
