"""``<tenant>/index.json.gz``: every live and compacted block meta of a tenant in one object.

Readers poll this one object instead of listing the bucket (a LIST plus a GET per block). It is rebuilt
by whoever changes the block list (the compactor; ``tracelake import`` after writing). A reader falls
back to listing when the index is missing, unreadable, or older than the configured age.
"""

from __future__ import annotations

import gzip
import json
import logging
import threading
import time
import weakref
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from tracelake.backend import Backend
from tracelake.block import keys
from tracelake.block.meta import BlockMeta, CompactedMeta
from tracelake.errors import BlockFormatError, BlockReadError, ObjectNotFoundError

log = logging.getLogger(__name__)


@dataclass
class BlockList:
    metas: list[BlockMeta] = field(default_factory=list)
    compacted: list[CompactedMeta] = field(default_factory=list)
    created_unix: float = 0.0
    source: str = "index"  # "index" or "listing": where this list came from
    # Blocks a listing found with a meta it could not read: left out of the list (and so invisible
    # and never merged), never deleted for it; the error names the block.
    unreadable: list[BlockReadError] = field(default_factory=list)


_index_locks: weakref.WeakKeyDictionary[Backend, threading.Lock] = weakref.WeakKeyDictionary()
_index_locks_guard = threading.Lock()


def index_lock(backend: Backend) -> threading.Lock:
    """Held across a read-modify-write or a rebuild of the index by one process: in ``serve`` the
    ingester adds its new block while the compactor rebuilds the index from a listing, and without it
    the rebuild could overwrite the index with a listing taken before that block was written."""
    with _index_locks_guard:
        lock = _index_locks.get(backend)
        if lock is None:
            lock = _index_locks[backend] = threading.Lock()
        return lock


def rebuild_tenant_index(backend: Backend, tenant: str) -> BlockList:
    """The index written anew from a listing of the bucket (the compactor, after each cycle)."""
    with index_lock(backend):
        blocks = list_blocks(backend, tenant)
        write_tenant_index(backend, tenant, blocks)
    return blocks


def write_tenant_index(backend: Backend, tenant: str, blocks: BlockList) -> None:
    doc = {
        "created_at": datetime.fromtimestamp(time.time(), UTC).isoformat(),
        "created_unix": time.time(),
        "meta": [m.to_json() for m in blocks.metas],
        "compacted": [c.to_json() for c in blocks.compacted],
    }
    backend.write(keys.tenant_index_key(tenant), gzip.compress(json.dumps(doc).encode(), 6))


def read_tenant_index(backend: Backend, tenant: str) -> BlockList | None:
    """The tenant index, or None when there is none; BlockFormatError when it is unreadable."""
    key = keys.tenant_index_key(tenant)
    try:
        raw = backend.read(key)
    except ObjectNotFoundError:
        return None
    try:
        doc = json.loads(gzip.decompress(raw))
        return BlockList(
            metas=[BlockMeta.from_json(m, key) for m in doc["meta"]],
            compacted=[CompactedMeta.from_json(c, key) for c in doc.get("compacted", [])],
            created_unix=float(doc.get("created_unix", 0.0)),
            source="index",
        )
    except (OSError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise BlockFormatError(f"{key}: unreadable tenant index ({exc})") from exc


def list_blocks(backend: Backend, tenant: str) -> BlockList:
    """The block list from listing the bucket; folders without ``meta.json`` are invisible, and so is
    a block whose meta cannot be read (logged and in ``unreadable``): one damaged object must not
    take a whole tenant's reads and compaction down."""
    names: dict[str, set[str]] = {}
    for info in backend.list(f"{tenant}/"):
        parts = info.key.split("/")
        if len(parts) == 3:
            names.setdefault(parts[1], set()).add(parts[2])
    blocks = BlockList(created_unix=time.time(), source="listing")
    for block_id, files in sorted(names.items()):
        try:
            if keys.META in files:
                key = keys.block_key(tenant, block_id, keys.META)
                blocks.metas.append(BlockMeta.from_bytes(backend.read(key), key))
            elif keys.COMPACTED_META in files:
                key = keys.block_key(tenant, block_id, keys.COMPACTED_META)
                blocks.compacted.append(CompactedMeta.from_bytes(backend.read(key), key))
        except ObjectNotFoundError:
            continue  # deleted between the listing and the read: no longer part of the list
        except BlockFormatError as exc:
            log.error(
                "block meta unreadable: block left out of the block list",
                extra={"tenant": tenant, "block": block_id, "error": str(exc)},
            )
            blocks.unreadable.append(BlockReadError(str(exc), tenant=tenant, block_id=block_id))
    return blocks


def hide_replaced(blocks: BlockList) -> BlockList:
    """Without the live blocks that another live block replaces.

    A compaction's output ``meta.json`` is its commit point: from then on its inputs are hidden, even
    before the compactor marks them compacted, so a reader never sees a span in both.
    """
    replaced = {block_id for m in blocks.metas for block_id in m.replaces}
    if not replaced:
        return blocks
    return replace(blocks, metas=[m for m in blocks.metas if m.block_id not in replaced])


def load_block_list(backend: Backend, tenant: str, max_index_age: float = 0.0) -> BlockList:
    """The tenant index if usable (present, readable, not older than ``max_index_age``), else a listing;
    the blocks readers must see (``hide_replaced``)."""
    try:
        index = read_tenant_index(backend, tenant)
    except BlockFormatError as exc:
        log.warning("tenant index unusable, listing instead", extra={"tenant": tenant, "error": str(exc)})
        index = None
    if index is not None and (max_index_age <= 0 or time.time() - index.created_unix <= max_index_age):
        return hide_replaced(index)
    return hide_replaced(list_blocks(backend, tenant))


def list_tenants(backend: Backend) -> list[str]:
    return backend.list_dirs("")
