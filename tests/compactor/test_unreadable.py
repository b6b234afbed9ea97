"""A block the compactor cannot read (damaged data, a truncated upload, a read the store fails) is set
aside with its id named, the rest of its window is merged without it, and it is tried again later;
a run of ``tracelake compact`` ends instead of retrying the same failing job forever."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prometheus_client import REGISTRY

from tests.compactor.helpers import TENANT, span_keys, synth_spans, visible_spans, write_split_blocks
from tracelake.backend import Backend, open_backend
from tracelake.backend.local import LocalBackend
from tracelake.block import keys
from tracelake.block.meta import BlockMeta
from tracelake.blocklist.tenant_index import hide_replaced, list_blocks
from tracelake.compactor.service import UNREADABLE_RETRY_SECONDS, CompactorService
from tracelake.config import BlockConfig, Config, TraceStorageConfig
from tracelake.encoding.v1.compactor import input_batches
from tracelake.encoding.v1.find_trace import BlockReader
from tracelake.errors import BackendError, BlockReadError

SMALL_GROUPS = BlockConfig(parquet_row_group_size_spans=30)


def _config(storage: TraceStorageConfig) -> Config:
    return Config.model_validate(
        {
            "storage": {"trace": storage.model_dump()},
            "compactor": {"compaction": {"block_retention": 0}},
        }
    )


def _data_key(meta: BlockMeta) -> str:
    return keys.block_key(meta.tenant_id, meta.block_id, keys.DATA)


def _damage_last_row_group(backend: Backend, meta: BlockMeta) -> bytes:
    """Overwrite the first page header of the last row group's ``attributes`` chunk: reading starts
    well and fails part way through the block (thrift cannot decode the header). Returns the original."""
    original = backend.read(_data_key(meta))
    footer = pq.ParquetFile(pa.BufferReader(original)).metadata
    assert footer.num_row_groups >= 2
    group = footer.row_group(footer.num_row_groups - 1)
    column = next(
        group.column(i) for i in range(group.num_columns) if group.column(i).path_in_schema == "attributes"
    )
    offset = column.dictionary_page_offset or column.data_page_offset
    damaged = bytearray(original)
    damaged[offset : offset + 16] = b"\xff" * 16
    backend.write(_data_key(meta), bytes(damaged))
    return original


def _truncate(backend: Backend, meta: BlockMeta) -> bytes:
    """Cut ``data.parquet`` in half, footer and all (an upload that stopped short)."""
    original = backend.read(_data_key(meta))
    backend.write(_data_key(meta), original[: len(original) // 2])
    return original


def _block_spans(backend: Backend, meta: BlockMeta):
    return span_keys(pa.concat_tables(BlockReader(backend, meta).iter_spans()))


def _unreadable_gauge() -> float:
    return (
        REGISTRY.get_sample_value("tracelake_compactor_compaction_unreadable_blocks", {"tenant": TENANT})
        or 0.0
    )


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("damage", [_damage_last_row_group, _truncate], ids=["page header", "truncated"])
def test_the_rest_is_merged_and_the_block_is_tried_again_later(
    storage_config: TraceStorageConfig, damage
) -> None:
    cfg = _config(storage_config)
    backend = open_backend(storage_config)
    try:
        spans = synth_spans(traces=80, seed=3)
        metas = write_split_blocks(backend, spans, blocks=6, cfg=SMALL_GROUPS)
        bad = metas[2]
        bad_spans = _block_spans(backend, bad)
        original = damage(backend, bad)
        clock = _Clock()
        service = CompactorService(cfg, backend, clock=clock)

        cycles = service.run_until_idle(idle_wait=0)

        assert [(len(c.done), c.failed) for c in cycles] == [(0, 1), (1, 0), (0, 0)]
        [error] = cycles[0].unreadable
        assert (error.tenant, error.block_id) == (TENANT, bad.block_id)
        assert f"block {TENANT}/{bad.block_id} cannot be read" in str(error)
        [output] = cycles[1].done
        assert sorted(output.job.input_ids) == sorted(m.block_id for m in metas if m is not bad)
        live = hide_replaced(list_blocks(backend, TENANT)).metas
        assert {m.block_id for m in live} == {bad.block_id, output.output.block_id}
        merged = _block_spans(backend, output.output)
        assert merged + bad_spans == span_keys(spans) and set(merged.values()) == {1}
        assert _unreadable_gauge() == 1
        assert service.run_cycle().planned == 0  # still set aside: nothing planned, nothing read

        backend.write(_data_key(bad), original)  # the read heals (a store that failed, a re-upload)
        clock.now += UNREADABLE_RETRY_SECONDS + 1
        cycles = service.run_until_idle(idle_wait=0)

        assert [(len(c.done), c.failed) for c in cycles] == [(1, 0), (0, 0)]
        counts, holders = visible_spans(backend)
        assert counts == span_keys(spans) and set(counts.values()) == {1}
        assert all(len(h) == 1 for h in holders.values())
        assert _unreadable_gauge() == 0
    finally:
        backend.close()


def test_a_block_still_damaged_an_hour_later_is_set_aside_again(tmp_path: Path) -> None:
    storage = TraceStorageConfig(backend="local", local={"path": str(tmp_path / "store")})
    backend = open_backend(storage)
    spans = synth_spans(traces=40, seed=4)
    metas = write_split_blocks(backend, spans, blocks=3, cfg=SMALL_GROUPS)
    _truncate(backend, metas[0])
    clock = _Clock()
    service = CompactorService(_config(storage), backend, clock=clock)
    service.run_until_idle(idle_wait=0)
    clock.now += UNREADABLE_RETRY_SECONDS + 1

    cycles = service.run_until_idle(idle_wait=0)

    assert [(c.planned, len(c.done), len(c.unreadable)) for c in cycles] == [(1, 0, 1), (0, 0, 0)]
    assert cycles[0].unreadable[0].block_id == metas[0].block_id
    assert _unreadable_gauge() == 1


class _UploadsFail(LocalBackend):
    """A store that takes no block data (a full disk, a bucket without write permission)."""

    def write_file(self, key: str, path: str | Path) -> None:
        raise BackendError(f"cannot write {key}: access denied")


def test_a_run_ends_when_every_job_fails_the_same_way(tmp_path: Path) -> None:
    storage = TraceStorageConfig(backend="local", local={"path": str(tmp_path / "store")})
    metas = write_split_blocks(open_backend(storage), synth_spans(traces=40, seed=5), blocks=4)
    backend = _UploadsFail(storage.local.path)

    cycles = CompactorService(_config(storage), backend).run_until_idle(idle_wait=0)

    assert [(c.planned, len(c.done), c.failed, c.unreadable) for c in cycles] == [(1, 0, 1, [])]
    live = hide_replaced(list_blocks(backend, TENANT)).metas
    assert sorted(m.block_id for m in live) == sorted(m.block_id for m in metas)


def _damage_meta(backend: Backend, meta: BlockMeta) -> bytes:
    """Cut ``meta.json`` short: the block cannot even be listed."""
    key = keys.block_key(meta.tenant_id, meta.block_id, keys.META)
    original = backend.read(key)
    backend.write(key, original[:40])
    return original


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (_damage_last_row_group, "cannot be read: Couldn't deserialize thrift"),
        (_damage_meta, "not valid JSON"),
    ],
    ids=["data", "meta"],
)
def test_compact_command_names_the_block_and_exits_1(tmp_path: Path, damage, why: str) -> None:
    store = tmp_path / "store"
    backend = open_backend(TraceStorageConfig(backend="local", local={"path": str(store)}))
    spans = synth_spans(traces=60, seed=6)
    metas = write_split_blocks(backend, spans, blocks=5, cfg=SMALL_GROUPS)
    bad = metas[4]
    damage(backend, bad)
    damaged = {
        name: backend.read(keys.block_key(TENANT, bad.block_id, name)) for name in (keys.META, keys.DATA)
    }
    config = tmp_path / "tracelake.yaml"
    config.write_text(
        f"storage: {{trace: {{local: {{path: {store}}}}}}}\n"
        "compactor: {compaction: {block_retention: 0}}\n"
    )

    done = subprocess.run(
        [sys.executable, "-m", "tracelake.cli.main", "--config", str(config), "compact"],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 1, done.stderr
    assert "compacted 4 block(s) into 1" in done.stdout
    [left_out] = [line for line in done.stderr.splitlines() if line.startswith("left out: ")]
    assert f"{TENANT}/{bad.block_id}" in left_out and why in left_out
    live = hide_replaced(list_blocks(backend, TENANT)).metas
    [output] = [m for m in live if m.block_id != bad.block_id]  # a damaged meta: not listed at all
    assert sorted(output.replaces) == sorted(m.block_id for m in metas[:4])
    for name, body in damaged.items():  # left exactly as it was
        assert backend.read(keys.block_key(TENANT, bad.block_id, name)) == body


class _FailingData:
    """A ``data.parquet`` reader that fails on its first batch with ``error``."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def iter_batches(self, **_: object):
        raise self.error
        yield  # a generator, like pyarrow's


def test_a_read_error_names_the_block_but_running_out_of_memory_does_not(tmp_path: Path) -> None:
    backend = open_backend(TraceStorageConfig(backend="local", local={"path": str(tmp_path / "store")}))
    [meta] = write_split_blocks(backend, synth_spans(traces=5, seed=7), blocks=1)

    with pytest.raises(BlockReadError, match=f"block {TENANT}/{meta.block_id} cannot be read: bad page"):
        next(input_batches(_FailingData(pa.ArrowInvalid("bad page")), meta, 100))
    with pytest.raises(MemoryError) as caught:  # the process's state, not the block's: not set aside
        next(input_batches(_FailingData(pa.ArrowMemoryError("out of memory")), meta, 100))
    assert not isinstance(caught.value, BlockReadError)
