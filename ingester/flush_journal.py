"""The flush journal: which blocks were (being) written from WAL data that may still be replayed.

Exactly-once across a crash: the ingester appends ``{block, tenant, max_segment}`` here (fsynced)
*before* the block's ``meta.json`` exists, and removes the entry once every WAL segment up to
``max_segment`` is gone. After a crash, replay drops every span that a journaled, visible block already
holds; a journaled block without ``meta.json`` was never visible and its leftovers are deleted.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

JOURNAL_FILE = "flushed.jsonl"


@dataclass(frozen=True)
class FlushEntry:
    block_id: str
    tenant: str
    max_segment: int


class FlushJournal:
    def __init__(self, wal_dir: str | Path) -> None:
        self.path = Path(wal_dir) / JOURNAL_FILE
        self.entries: list[FlushEntry] = self._load()

    def _load(self) -> list[FlushEntry]:
        entries = []
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return []
        for line in lines:
            try:
                entries.append(FlushEntry(**json.loads(line)))
            except (ValueError, TypeError):
                continue  # a torn last line: that block's meta.json was never written either
        return entries

    def add(self, entry: FlushEntry) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(asdict(entry)) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.entries.append(entry)

    def prune(self, oldest_segment: int | None) -> None:
        """Forget blocks whose WAL segments are all deleted (``oldest_segment``: the oldest left)."""
        keep = [e for e in self.entries if oldest_segment is not None and e.max_segment >= oldest_segment]
        if len(keep) == len(self.entries):
            return
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            f.writelines(json.dumps(asdict(e)) + "\n" for e in keep)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self.entries = keep
