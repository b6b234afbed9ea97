"""Import OTLP files into blocks: decode each chunk, cut a block whenever enough spans are held.

Memory stays bounded by ``max_block_bytes`` (Arrow bytes held before a cut) plus one block's sort. Each
block joins the tenant index as soon as it is written. A failure stops the import; blocks already
written are complete and stay, and nothing half-written is ever visible.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from tracelake.block.meta import BlockMeta
from tracelake.codec.decode import decode_otlp
from tracelake.db import TraceDB
from tracelake.errors import InvalidInputError
from tracelake.otlp import iter_otlp_file


@dataclass
class ImportStats:
    files: int = 0
    chunks: int = 0
    spans: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    blocks: list[BlockMeta] = field(default_factory=list)


class _BlockCutter:
    """Holds decoded spans and writes a block once they reach ``max_bytes``."""

    def __init__(self, db: TraceDB, tenant: str, max_bytes: int, stats: ImportStats) -> None:
        self.db, self.tenant, self.max_bytes, self.stats = db, tenant, max_bytes, stats
        self.held: list[pa.Table] = []
        self.held_bytes = 0

    def add(self, table: pa.Table) -> None:
        if table.num_rows:
            self.held.append(table)
            self.held_bytes += table.nbytes
            if self.held_bytes >= self.max_bytes:
                self.flush()

    def flush(self) -> None:
        if self.held:
            spans = pa.concat_tables(self.held)
            self.held, self.held_bytes = [], 0
            self.stats.blocks.append(self.db.write_block(self.tenant, spans))


def import_files(
    db: TraceDB,
    tenant: str,
    paths: Iterable[str | Path],
    max_block_bytes: int,
    on_progress: Callable[[int], None] | None = None,
) -> ImportStats:
    """Write the spans of ``paths`` as blocks of ``tenant``; ``on_progress`` gets input bytes read."""
    stats = ImportStats()
    cutter = _BlockCutter(db, tenant, max_block_bytes, stats)
    done_before = 0
    for path in paths:
        consumed = 0
        for payload, consumed in iter_otlp_file(path):
            try:
                decoded = decode_otlp(payload)
            except InvalidInputError as exc:
                raise InvalidInputError(f"{path}: {exc}") from exc
            stats.chunks += 1
            stats.spans += decoded.table.num_rows
            stats.rejected.update(decoded.rejected)
            cutter.add(decoded.table)
            if on_progress:
                on_progress(done_before + consumed)
        done_before += consumed
        stats.files += 1
    cutter.flush()
    return stats
