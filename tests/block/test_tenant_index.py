"""The tenant index: written by writers, used by readers, and bypassed when missing, stale or corrupt."""

from __future__ import annotations

import gzip
import json
import time

import pyarrow as pa
import pytest

from tracelake.backend import Backend
from tracelake.block import keys
from tracelake.blocklist.tenant_index import (
    list_blocks,
    load_block_list,
    read_tenant_index,
    write_tenant_index,
)
from tracelake.codec.decode import decode_otlp
from tracelake.compaction.cleanup import cleanup_tenant
from tracelake.config import BlockConfig, CompactionConfig
from tracelake.encoding.v1.create import write_block
from tracelake.synth import SynthConfig, generate_request_bytes


def _write(backend: Backend, seed: int, tenant: str = "acme") -> str:
    tables = [decode_otlp(p).table for p in generate_request_bytes(SynthConfig(traces=5, seed=seed))]
    return write_block(backend, tenant, pa.concat_tables(tables), BlockConfig()).block_id


def test_index_round_trip_and_readers_use_it(backend: Backend) -> None:
    first = _write(backend, 1)
    write_tenant_index(backend, "acme", list_blocks(backend, "acme"))
    second = _write(backend, 2)  # written after the index: not in it yet
    index = read_tenant_index(backend, "acme")
    assert index is not None and [m.block_id for m in index.metas] == [first]
    loaded = load_block_list(backend, "acme")
    assert loaded.source == "index" and [m.block_id for m in loaded.metas] == [first]
    assert sorted(m.block_id for m in list_blocks(backend, "acme").metas) == sorted([first, second])
    payload = json.loads(gzip.decompress(backend.read(keys.tenant_index_key("acme"))))
    assert set(payload) >= {"created_at", "meta", "compacted"}
    assert payload["meta"][0]["blockID"] == first


def test_missing_index_falls_back_to_listing(backend: Backend) -> None:
    block = _write(backend, 1)
    loaded = load_block_list(backend, "acme")
    assert loaded.source == "listing" and [m.block_id for m in loaded.metas] == [block]


def test_stale_index_falls_back_to_listing(backend: Backend) -> None:
    _write(backend, 1)
    write_tenant_index(backend, "acme", list_blocks(backend, "acme"))
    _write(backend, 2)
    time.sleep(0.05)
    assert len(load_block_list(backend, "acme", max_index_age=3600).metas) == 1
    fresh = load_block_list(backend, "acme", max_index_age=0.01)
    assert fresh.source == "listing" and len(fresh.metas) == 2


def test_corrupt_index_falls_back_to_listing(backend: Backend) -> None:
    _write(backend, 1)
    backend.write(keys.tenant_index_key("acme"), b"not gzip")
    loaded = load_block_list(backend, "acme")
    assert loaded.source == "listing" and len(loaded.metas) == 1


def test_tenants_are_separate(backend: Backend) -> None:
    _write(backend, 1, tenant="a")
    _write(backend, 2, tenant="b")
    assert len(list_blocks(backend, "a").metas) == 1
    assert len(list_blocks(backend, "b").metas) == 1
    assert {"a", "b"} <= set(backend.list_dirs(""))


def test_block_lists_are_cached_for_a_poll_period(backend: Backend) -> None:
    from tracelake.blocklist.cache import BlockListCache

    _write(backend, 1)
    cache = BlockListCache(backend, poll_seconds=3600, stale_index_seconds=0)
    assert len(cache.get("acme").metas) == 1
    _write(backend, 2)  # written behind the cache's back
    assert len(cache.get("acme").metas) == 1  # still the polled list
    cache.invalidate("acme")
    assert len(cache.get("acme").metas) == 2
    always = BlockListCache(backend, poll_seconds=0, stale_index_seconds=0)
    _write(backend, 3)
    assert len(always.get("acme").metas) == 3


def test_a_rebuild_never_drops_a_block_the_ingester_adds_meanwhile(tmp_path) -> None:
    """``serve``: the compactor rebuilds the index from a listing while the ingester adds a new block
    by read-modify-write. The rebuild must not write a listing taken before that block over it."""
    import threading

    from tracelake.backend.local import LocalBackend
    from tracelake.blocklist.tenant_index import rebuild_tenant_index
    from tracelake.config import TraceStorageConfig
    from tracelake.db import TraceDB

    listed, go = threading.Event(), threading.Event()

    class SlowListing(LocalBackend):
        pause = False

        def list(self, prefix: str = ""):
            items = list(super().list(prefix))
            if self.pause:
                self.pause = False
                listed.set()
                go.wait(10)
            return iter(items)

    backend = SlowListing(tmp_path)
    db = TraceDB(backend, TraceStorageConfig.model_validate({"local": {"path": str(tmp_path)}}))
    tables = [decode_otlp(p).table for p in generate_request_bytes(SynthConfig(traces=5, seed=8))]
    first = db.write_block("acme", pa.concat_tables(tables)).block_id
    backend.pause = True
    rebuild = threading.Thread(target=rebuild_tenant_index, args=(backend, "acme"))
    rebuild.start()
    assert listed.wait(10)  # the rebuild holds a listing with only the first block
    added: list[str] = []
    adder = threading.Thread(
        target=lambda: added.append(db.write_block("acme", pa.concat_tables(tables)).block_id)
    )
    adder.start()
    adder.join(0.5)  # long enough to finish, were it not waiting for the rebuild
    go.set()
    rebuild.join(10)
    adder.join(10)
    index = read_tenant_index(backend, "acme")
    assert index is not None
    assert sorted(m.block_id for m in index.metas) == sorted([first, *added])


@pytest.mark.parametrize(
    ("name", "body"),
    [
        (keys.META, b'{"format": "tl2", "blockID": '),  # cut short
        (keys.META, b'{"format": "tl9"}'),  # written by a newer version
        (keys.META, b'["not", "a", "meta"]'),
        (keys.COMPACTED_META, b"\x00\xff garbage"),
        (keys.COMPACTED_META, b'{"format": "tl2", "compactedTime": "soon"}'),
    ],
    ids=["truncated", "unknown format", "not an object", "garbage", "malformed"],
)
def test_a_block_whose_meta_cannot_be_read_is_left_out_not_the_tenant(
    backend: Backend, name: str, body: bytes
) -> None:
    good, bad = _write(backend, 1), _write(backend, 2)
    if name == keys.COMPACTED_META:
        backend.delete(keys.block_key("acme", bad, keys.META))
    backend.write(keys.block_key("acme", bad, name), body)

    blocks = list_blocks(backend, "acme")

    assert [m.block_id for m in blocks.metas] == [good] and blocks.compacted == []
    [error] = blocks.unreadable
    assert (error.tenant, error.block_id) == ("acme", bad)
    assert f"acme/{bad}/{name}" in str(error)
    assert [m.block_id for m in load_block_list(backend, "acme").metas] == [good]
    # Not taken for an unfinished write: cleanup keeps the folder whatever the grace period.
    cleanup_tenant(backend, "acme", CompactionConfig(partial_block_grace_period=0), 0, time.time() + 3600)
    assert backend.exists(keys.block_key("acme", bad, keys.DATA))
