"""Two ``tracelake compactor`` services on one S3 bucket (the moto server): the same result as one
compactor, and no job done twice (every block is an input of at most one job, each job logged once)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pyarrow as pa
import yaml

from tests.compactor.helpers import span_keys, synth_spans, visible_spans, write_split_blocks
from tests.conftest import S3Endpoint, free_port
from tracelake.backend import Backend, open_backend
from tracelake.blocklist.tenant_index import list_blocks
from tracelake.compactor.service import CompactorService
from tracelake.config import BlockConfig, Config

COMPACTION = {"max_input_blocks": 4, "block_retention": 0, "compaction_cycle": "200ms"}
BLOCKS = BlockConfig(parquet_row_group_size_spans=300)


def _blocks(backend: Backend, spans: pa.Table) -> None:
    write_split_blocks(backend, spans, blocks=20, replicated=4, seed=2, cfg=BLOCKS)


def _start(root: Path, s3: dict, name: str) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = free_port()
    config = {
        "server": {"http_listen_address": "127.0.0.1", "http_listen_port": port},
        "storage": {"trace": {"backend": "s3", "s3": s3}},
        "compactor": {"instance_id": name, "compaction": COMPACTION},
    }
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    log = root / f"{name}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracelake.cli.main", "--config", str(path), "compactor"],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    return proc, port, log


def _get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return response.read().decode()


def _jobs_done(metrics: str) -> float:
    return sum(
        float(v)
        for v in re.findall(r'tracelake_compactor_compaction_jobs_total\{outcome="done"\} (\S+)', metrics)
    )


def _wait_for_the_final_block(backend: Backend, spans: int, timeout: float = 90) -> None:
    """Until one live block holds every distinct span. (A bare count of live blocks can read 1 too
    early: a listing taken while a job commits may miss blocks whose meta moves meanwhile.)"""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        metas = list_blocks(backend, "single-tenant").metas
        if len(metas) == 1 and metas[0].total_spans == spans:
            return
        time.sleep(0.2)
    raise AssertionError("the compactors did not converge to one block")


def test_two_compactors_match_one_and_never_repeat_a_job(tmp_path: Path, s3_endpoint: S3Endpoint) -> None:
    spans = synth_spans(traces=500, seed=4)

    single_storage = s3_endpoint.storage_config()
    single = open_backend(single_storage)
    _blocks(single, spans)
    cfg = Config.model_validate({"compactor": {"compaction": COMPACTION}})
    cfg.storage.trace = single_storage
    CompactorService(cfg, single).run_until_idle()
    one_counts, one_holders = visible_spans(single)

    shared_storage = s3_endpoint.storage_config()
    shared = open_backend(shared_storage)
    _blocks(shared, spans)
    s3 = shared_storage.s3.model_dump()
    procs = [_start(tmp_path, s3, name) for name in ("compactor-a", "compactor-b")]
    try:
        for _, port, _ in procs:
            deadline = time.monotonic() + 30
            while True:
                try:
                    assert _get(port, "/ready").strip() == "ready"
                    break
                except OSError:
                    assert time.monotonic() < deadline, "compactor not ready"
                    time.sleep(0.1)
        _wait_for_the_final_block(shared, len(span_keys(spans)))
        blocks = list_blocks(shared, "single-tenant")
        outputs = [m for m in blocks.metas + [c.meta for c in blocks.compacted] if m.replaces]
        # The last job's metrics are recorded after its leases are released: wait for them.
        deadline = time.monotonic() + 30
        while sum(_jobs_done(_get(port, "/metrics")) for _, port, _ in procs) < len(outputs):
            assert time.monotonic() < deadline, "job metrics never caught up with the outputs"
            time.sleep(0.1)
        jobs_done = [_jobs_done(_get(port, "/metrics")) for _, port, _ in procs]
    finally:
        for proc, _, _ in procs:
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(30) for proc, _, _ in procs]
    assert codes == [0, 0]

    # The same result as one compactor: every span once, each trace in one block, one block.
    two_counts, two_holders = visible_spans(shared)
    assert two_counts == one_counts == Counter(span_keys(spans).keys())
    assert len(set().union(*two_holders.values())) == len(set().union(*one_holders.values())) == 1

    # No job done twice: each block was the input of one job at most, and each job ran once.
    blocks = list_blocks(shared, "single-tenant")
    every_meta = blocks.metas + [c.meta for c in blocks.compacted]
    inputs = Counter(block_id for m in every_meta for block_id in m.replaces)
    assert inputs and max(inputs.values()) == 1
    logs = [log.read_text() for _, _, log in procs]
    done = [re.findall(r'msg="compaction job done".* job=(\w+) .*resumed=False', text) for text in logs]
    assert len([m for m in every_meta if m.replaces]) == len(outputs)
    assert sorted(done[0] + done[1]) == sorted(set(done[0] + done[1]))
    assert len(done[0]) + len(done[1]) == len(outputs)
    assert sum(jobs_done) == len(outputs)
