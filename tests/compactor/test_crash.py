"""SIGKILL ``tracelake compact`` at each step of a job and at random moments: readers never see a span
twice or miss one, and a restart finishes with every span exactly once in whole traces."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest

from tests.compactor.helpers import span_keys, synth_spans, visible_spans, write_split_blocks
from tracelake.backend import open_backend
from tracelake.blocklist.tenant_index import list_blocks
from tracelake.config import BlockConfig, LocalStorageConfig, TraceStorageConfig

CONFIG = """
storage: {{trace: {{local: {{path: {path}}}}}}}
compactor: {{compaction: {{max_input_blocks: 4, block_retention: 0}}}}
"""


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Counter]:
    """12 blocks (two of them replicas) of one closed window: 3 jobs, then 1. Returns the store and
    how many copies of each span it holds (2 for the replicated ones)."""
    root = tmp_path_factory.mktemp("compaction-crash") / "blocks"
    backend = open_backend(TraceStorageConfig(local=LocalStorageConfig(path=str(root))))
    spans: pa.Table = synth_spans(traces=600, seed=12)
    write_split_blocks(
        backend, spans, blocks=10, replicated=2, cfg=BlockConfig(parquet_row_group_size_spans=400)
    )
    copies, _ = visible_spans(backend)
    assert copies.keys() == span_keys(spans).keys() and max(copies.values()) == 2
    return root, copies


def _compact(tmp_path: Path, store: Path, failpoint: str = "") -> subprocess.Popen[bytes]:
    config = tmp_path / f"{store.name}.yaml"
    config.write_text(CONFIG.format(path=store))
    env = {"TRACELAKE_FAILPOINT": failpoint} if failpoint else {}
    return subprocess.Popen(
        [sys.executable, "-m", "tracelake.cli.main", "--config", str(config), "compact"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**_base_env(), **env},
    )


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "TRACELAKE_FAILPOINT"}


def _check_readers(store: Path, copies: Counter, finished: bool) -> None:
    """Readers see every span, never more often than the inputs held it (a compaction in progress
    adds no copy); once finished, exactly once, in one block."""
    backend = open_backend(TraceStorageConfig(local=LocalStorageConfig(path=str(store))))
    counts, holders = visible_spans(backend)
    assert counts.keys() == copies.keys(), "spans lost"
    added = [k for k, n in counts.items() if n > copies[k]]
    assert not added, f"{len(added)} span(s) visible more often than stored before compaction"
    if finished:
        assert set(counts.values()) == {1}, "a duplicate survived compaction"
        assert len(list_blocks(backend, "single-tenant").metas) == 1
        assert all(len(h) == 1 for h in holders.values()), "a trace is split between blocks"


@pytest.mark.parametrize(
    "failpoint", ["block.before_meta", "compactor.after_output", "compactor.after_first_mark"]
)
def test_kill_at_each_step_of_a_job(tmp_path: Path, prepared: tuple[Path, Counter], failpoint: str) -> None:
    source, copies = prepared
    store = tmp_path / "store"
    shutil.copytree(source, store)
    crashed = _compact(tmp_path, store, failpoint)
    assert crashed.wait(60) == -signal.SIGKILL, crashed.stderr.read().decode()
    _check_readers(store, copies, finished=False)
    restarted = _compact(tmp_path, store)
    assert restarted.wait(60) == 0, restarted.stderr.read().decode()
    _check_readers(store, copies, finished=True)


def test_random_kills(tmp_path: Path, prepared: tuple[Path, Counter]) -> None:
    source, copies = prepared
    reference = tmp_path / "reference"
    shutil.copytree(source, reference)
    started = time.monotonic()
    assert _compact(tmp_path, reference).wait(60) == 0
    full_run = time.monotonic() - started
    rng = random.Random(5)
    for attempt in range(3):
        store = tmp_path / f"store{attempt}"
        shutil.copytree(source, store)
        for _ in range(2):  # two kills in a row, the second one during the recovery
            proc = _compact(tmp_path, store)
            time.sleep(rng.uniform(0.3, 0.9) * full_run)
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            _check_readers(store, copies, finished=False)
        assert _compact(tmp_path, store).wait(60) == 0
        _check_readers(store, copies, finished=True)
