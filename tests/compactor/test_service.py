"""The compactor loop on the local backend: cycles until idle, the tenant index, metrics, overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from tests.compactor.helpers import TENANT, span_keys, synth_spans, visible_spans, write_split_blocks
from tracelake.backend import open_backend
from tracelake.backend.local import LocalBackend
from tracelake.blocklist.tenant_index import hide_replaced, read_tenant_index
from tracelake.compactor.service import CompactorService
from tracelake.config import BlockConfig, Config
from tracelake.errors import BackendError


def _config(tmp_path: Path, **compaction) -> Config:
    return Config.model_validate(
        {
            "storage": {"trace": {"local": {"path": str(tmp_path / "data")}}},
            "compactor": {"compaction": {"max_input_blocks": 5, "block_retention": 0, **compaction}},
        }
    )


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_twenty_blocks_become_one_with_two_rewrites(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    backend = open_backend(cfg.storage.trace)
    spans = synth_spans(traces=200, seed=8)
    write_split_blocks(
        backend, spans, blocks=18, replicated=2, cfg=BlockConfig(parquet_row_group_size_spans=200)
    )
    done_before = _metric("tracelake_compactor_compaction_jobs_total", outcome="done")
    dedup_before = _metric("tracelake_compactor_compaction_spans_deduplicated_total", level="1")

    cycles = CompactorService(cfg, backend).run_until_idle()

    jobs = [r for c in cycles for r in c.done]
    assert [len(c.done) for c in cycles] == [4, 1, 0]  # 20 -> 4 -> 1: each span rewritten twice
    index = read_tenant_index(backend, TENANT)
    assert index is not None and [m.compaction_level for m in index.metas] == [2]
    assert len(index.compacted) == 24
    counts, holders = visible_spans(backend)
    assert counts == span_keys(spans) and set(counts.values()) == {1}
    assert all(len(h) == 1 for h in holders.values())
    assert _metric("tracelake_compactor_compaction_jobs_total", outcome="done") - done_before == len(jobs)
    dropped = _metric("tracelake_compactor_compaction_spans_deduplicated_total", level="1") - dedup_before
    assert dropped == sum(r.stats.duplicates for r in jobs) > 0


def test_per_tenant_block_retention_override(tmp_path: Path) -> None:
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text("overrides:\n  short: {block_retention: 1h}\n")
    cfg = _config(tmp_path, block_retention="48h")
    cfg.overrides.per_tenant_override_config = str(overrides)
    backend = open_backend(cfg.storage.trace)
    spans = synth_spans(traces=20, seed=1)  # newest span more than 1.5 h old
    write_split_blocks(backend, spans, blocks=1, tenant="short")
    write_split_blocks(backend, spans, blocks=1, tenant="long")
    service = CompactorService(cfg, backend)
    service.run_cycle()
    assert read_tenant_index(backend, "short").metas == []
    assert len(read_tenant_index(backend, "long").metas) == 1


class _RefusesDeletes(LocalBackend):
    """A bucket whose policy (or object lock) denies deletes; ``objects_too``: single objects as well
    as folders."""

    def __init__(self, root: Path, objects_too: bool) -> None:
        super().__init__(root)
        self.objects_too = objects_too

    def delete_prefix(self, prefix: str) -> None:
        raise BackendError(f"cannot delete {prefix}: access denied")

    def delete(self, key: str) -> None:
        if self.objects_too:
            raise BackendError(f"cannot delete {key}: access denied")
        super().delete(key)


@pytest.mark.parametrize("objects_too", [False, True], ids=["folders", "folders and objects"])
def test_a_bucket_that_refuses_deletes_still_compacts(tmp_path: Path, objects_too: bool) -> None:
    cfg = _config(tmp_path, compacted_block_retention="0s", partial_block_grace_period="0s")
    backend = _RefusesDeletes(tmp_path / "data", objects_too)
    spans = synth_spans(traces=60, seed=9)
    write_split_blocks(backend, spans, blocks=6)
    backend.write(f"{TENANT}/unfinished-block/data.parquet", b"a writer died here")
    errors_before = _metric("tracelake_compactor_compaction_errors_total")

    cycles = CompactorService(cfg, backend).run_until_idle(idle_wait=0)

    assert sum(len(c.done) for c in cycles) >= 2  # 6 -> 2 -> 1, whatever could not be deleted
    counts, holders = visible_spans(backend)
    assert counts == span_keys(spans) and set(counts.values()) == {1}
    assert all(len(h) == 1 for h in holders.values())
    assert backend.exists(f"{TENANT}/unfinished-block/data.parquet")  # refused, logged, left
    assert _metric("tracelake_compactor_compaction_errors_total") > errors_before
    index = read_tenant_index(backend, TENANT)
    assert index is not None and [m.compaction_level for m in hide_replaced(index).metas] == [2]
