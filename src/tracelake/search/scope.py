"""Which part of a tenant's data one query job reads: how a query-frontend splits a request into
jobs that queriers answer independently (Tempo's ``mode``, ``blockStart``/``blockEnd`` parameters).

``mode``: ``all`` (the default: what a plain request reads), ``ingesters`` (recent data only) or
``blocks`` (the backend's blocks only). Blocks are narrowed by an id range (trace by id: a shard of the
block-id space) or an explicit list (search: the frontend chose the blocks from the block list).
"""

from __future__ import annotations

import itertools
import re
import uuid
from dataclasses import dataclass

from tracelake.errors import InvalidInputError

MODES = ("all", "ingesters", "blocks")
_BLOCK_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MIN_BLOCK_ID = "00000000-0000-0000-0000-000000000000"
MAX_BLOCK_ID = "ffffffff-ffff-ffff-ffff-ffffffffffff"


@dataclass(frozen=True)
class JobScope:
    mode: str = "all"
    block_start: str = MIN_BLOCK_ID  # inclusive
    block_end: str = MAX_BLOCK_ID  # inclusive
    block_ids: frozenset[str] | None = None

    @property
    def recent(self) -> bool:
        return self.mode in ("all", "ingesters")

    @property
    def blocks(self) -> bool:
        return self.mode in ("all", "blocks")

    def has_block(self, block_id: str) -> bool:
        if self.block_ids is not None and block_id not in self.block_ids:
            return False
        return self.block_start <= block_id <= self.block_end

    def to_params(self) -> dict[str, str]:
        params = {"mode": self.mode}
        if self.block_start != MIN_BLOCK_ID or self.block_end != MAX_BLOCK_ID:
            params |= {"blockStart": self.block_start, "blockEnd": self.block_end}
        if self.block_ids is not None:
            params["blocks"] = ",".join(sorted(self.block_ids))
        return params


EVERYTHING = JobScope()  # what a plain request reads


def parse_scope(params: dict[str, str]) -> JobScope:
    """The job scope of a request's parameters; raises InvalidInputError (400)."""
    mode = params.get("mode", "all") or "all"
    if mode not in MODES:
        raise InvalidInputError(f"invalid mode {mode!r}: expected one of {', '.join(MODES)}")
    start = params.get("blockStart", MIN_BLOCK_ID) or MIN_BLOCK_ID
    end = params.get("blockEnd", MAX_BLOCK_ID) or MAX_BLOCK_ID
    for name, value in (("blockStart", start), ("blockEnd", end)):
        if not _BLOCK_ID.match(value):
            raise InvalidInputError(f"invalid {name} {value!r}: expected a block id (UUID)")
    ids = None
    if "blocks" in params:
        ids = frozenset(b for b in params["blocks"].split(",") if b)
        bad = [b for b in ids if not _BLOCK_ID.match(b)]
        if bad:
            raise InvalidInputError(f"invalid block id {bad[0]!r} in blocks")
    return JobScope(mode, start, end, ids)


def block_id_shards(count: int) -> list[tuple[str, str]]:
    """``count`` contiguous ranges covering the block-id space (by the first 8 hex digits)."""
    count = max(1, min(count, 256))
    bounds = [round(i * (1 << 32) / count) for i in range(count + 1)]
    return [
        (f"{lo:08x}-0000-0000-0000-000000000000", f"{hi - 1:08x}-ffff-ffff-ffff-ffffffffffff")
        for lo, hi in itertools.pairwise(bounds)
    ]


def _before(block_id: str) -> str:
    """The block id just below ``block_id``: the inclusive end of the range before it."""
    return str(uuid.UUID(int=uuid.UUID(block_id).int - 1))


def candidate_shards(block_ids: list[str], count: int) -> list[tuple[str, str]]:
    """At most ``count`` contiguous ranges covering the whole block-id space, with ``block_ids`` split
    evenly between them.

    The whole space, not just around the given blocks: a querier may know blocks the caller does not
    (a compaction's output written since the caller's block list), and each must fall in some range.
    """
    ids = sorted({b for b in block_ids if _BLOCK_ID.match(b)})
    count = max(1, min(count, len(ids)))
    starts = [MIN_BLOCK_ID] + [ids[round(i * len(ids) / count)] for i in range(1, count)]
    ends = [_before(start) for start in starts[1:]] + [MAX_BLOCK_ID]
    return list(zip(starts, ends, strict=True))
