"""Searching a stored block (summary first, only some columns, one key of the attributes, batches of row
groups, span details read afterwards) finds exactly what evaluating the query over the whole span
table finds: same traces (the newest ``limit``), same matched counts, same listed spans."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tests.unit.test_traceql_evaluate import QUERIES, _typed_request
from tracelake.backend import open_backend
from tracelake.codec.decode import decode_otlp
from tracelake.config import BlockConfig, LocalStorageConfig, TraceStorageConfig
from tracelake.db import TraceDB
from tracelake.encoding.v1 import search as block_search
from tracelake.encoding.v1.layout import sort_spans, to_block_rows
from tracelake.encoding.v1.summary import summarize
from tracelake.search.engine import search
from tracelake.search.recent import search_recent
from tracelake.search.request import parse_search
from tracelake.search.results import Collector
from tracelake.synth import SynthConfig, generate_request_bytes
from tracelake.traceql.evaluate import Evaluator, evaluate, shown_fields, shown_key, shown_values
from tracelake.traceql.frame import SpanFrame
from tracelake.traceql.parser import parse


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory):
    payloads = list(
        generate_request_bytes(SynthConfig(traces=400, traces_per_request=100, seed=8, error_rate=0.2))
    )
    payloads.append(_typed_request().SerializeToString())
    spans = pa.concat_tables([decode_otlp(p).table for p in payloads])
    cfg = TraceStorageConfig(
        local=LocalStorageConfig(path=str(tmp_path_factory.mktemp("search-block"))),
        block=BlockConfig(parquet_row_group_size_spans=300),  # many row groups
    )
    db = TraceDB(open_backend(cfg), cfg)
    meta = db.write_block("t", spans)
    rows = to_block_rows(sort_spans(spans))
    yield db, meta, rows, summarize(sort_spans(spans))
    db.close()


@pytest.mark.parametrize("cached", [False, True], ids=["from-parquet", "column-cache"])
@pytest.mark.parametrize("text", QUERIES)
def test_block_search_equals_whole_table_evaluation(stored, text: str, cached: bool, monkeypatch) -> None:
    db, meta, rows, summary = stored
    monkeypatch.setattr(block_search, "_ROWS_PER_READ", 1000)  # several reads per block
    limit = 15
    request = parse_search({"q": text, "limit": str(limit), "spss": "2"})
    cache = db.columns if cached else None
    result = block_search.search_block(db.reader(meta), db.summary(meta), request, cache=cache)

    match = evaluate(parse(text), SpanFrame(rows))
    starts = summary["start_time_unix_nano"].to_numpy()
    matching = np.flatnonzero(match.traces)
    newest = matching[np.lexsort((matching, -starts[matching].astype(np.int64)))][:limit]
    trace_ids = summary["trace_id"].to_pylist()
    assert {h.trace_id for h in result.hits} == {trace_ids[t] for t in newest}

    frame = SpanFrame(rows)
    span_ids = rows["span_id"].to_pylist()
    for hit in result.hits:
        t = trace_ids.index(hit.trace_id)
        in_trace = np.flatnonzero(match.spans & (frame.trace_of_row == t))
        assert hit.matched == len(in_trace)
        assert [s.span_id for s in hit.spans] == [span_ids[r] for r in in_trace[:2]]
        assert all(
            s.start_ns == rows["start_time_unix_nano"][r].as_py()
            for s, r in zip(hit.spans, in_trace, strict=False)
        )
        # the attributes each listed span shows: those the query used and selected, as evaluating
        # over every column finds them
        fields = shown_fields(parse(text))
        values = [shown_values(Evaluator(frame), f, in_trace[:2]) for f in fields]
        for span, r in zip(hit.spans, in_trace[:2].tolist(), strict=True):
            want = {shown_key(f): v[r] for f, v in zip(fields, values, strict=True) if r in v}
            assert dict(span.attributes) == want


@pytest.mark.parametrize(
    "text",
    [
        "{}",
        "{ .http.status_code = 500 }",
        "{ kind = server } >> { kind = client } | select(span.db.statement)",
    ],
)
def test_search_across_blocks_returns_the_newest_matches(storage_config, text: str) -> None:
    """Blocks overlap in time; the engine's early stop and per-block pruning (traces older than the
    ``limit`` kept so far are not read) still give exactly the newest ``limit`` matches, on a
    directory and over the S3 protocol."""
    cfg = storage_config.model_copy(update={"blocklist_poll": 3600})
    db = TraceDB(open_backend(cfg), cfg)
    tables = []
    for seed in range(6):
        payloads = generate_request_bytes(SynthConfig(traces=150, seed=100 + seed, error_rate=0.2))
        spans = pa.concat_tables([decode_otlp(p).table for p in payloads])
        db.write_block("t", spans)
        tables.append(spans)
    everything = sort_spans(pa.concat_tables(tables))
    summary = summarize(everything)
    match = evaluate(parse(text), SpanFrame(to_block_rows(everything)))
    starts = summary["start_time_unix_nano"].to_numpy()
    matching = np.flatnonzero(match.traces)
    newest = matching[np.lexsort((matching, -starts[matching].astype(np.int64)))][:10]
    request = parse_search({"q": text, "limit": "10", "start": "1", "end": str(2**33)})
    hits, metrics = search(db, None, ["t"], request)
    assert [h.trace_id for h in hits] == [summary["trace_id"][int(t)].as_py() for t in newest]
    assert metrics.total_blocks == 6
    db.close()


@pytest.mark.parametrize("text", QUERIES)
def test_ingester_memory_search_equals_whole_table_evaluation(text: str) -> None:
    """Spans in memory come as many small batches in arrival order, traces split across them; the
    two-step search (superset per spanset over all batches, then exact on sorted candidates) finds
    the same newest ``limit`` traces and matched counts as evaluating everything at once."""
    payloads = list(
        generate_request_bytes(SynthConfig(traces=200, traces_per_request=50, seed=21, error_rate=0.2))
    )
    payloads.append(_typed_request().SerializeToString())
    spans = pa.concat_tables([decode_otlp(p).table for p in payloads])
    order = np.random.default_rng(4).permutation(spans.num_rows)  # arrival order: traces interleaved
    shuffled = spans.take(pa.array(order))
    batches = [shuffled.slice(i, 97) for i in range(0, shuffled.num_rows, 97)]
    request = parse_search({"q": text, "limit": "12", "spss": "2"})
    collector = Collector(request.limit, request.spss)
    search_recent(batches, request, collector)

    rows = to_block_rows(sort_spans(spans))
    summary = summarize(sort_spans(spans))
    match = evaluate(parse(text), SpanFrame(rows))
    starts = summary["start_time_unix_nano"].to_numpy()
    matching = np.flatnonzero(match.traces)
    newest = matching[np.lexsort((matching, -starts[matching].astype(np.int64)))][:12]
    trace_ids = summary["trace_id"].to_pylist()
    hits = collector.results()
    assert [h.trace_id for h in hits] == [trace_ids[t] for t in newest]
    frame = SpanFrame(rows)
    for hit in hits:
        t = trace_ids.index(hit.trace_id)
        assert hit.matched == int((match.spans & (frame.trace_of_row == t)).sum())


def test_column_cache_keeps_columns_within_its_budget(stored) -> None:
    """Whole columns come back equal to Parquet's, are read once, and the budget evicts the least
    recently used."""
    from prometheus_client import REGISTRY

    from tracelake.encoding.v1.column_cache import ColumnCache

    db, meta, _, _ = stored
    reader = db.reader(meta)
    size = ColumnCache(1 << 30).get(reader, "status_code").nbytes
    cache = ColumnCache(max_bytes=2 * size)

    def misses() -> float:
        return REGISTRY.get_sample_value("tracelake_search_cache_requests_total", {"result": "miss"}) or 0.0

    before = misses()
    status = cache.get(reader, "status_code")
    assert status.equals(reader.parquet().read(columns=["status_code"])["status_code"].combine_chunks())
    cache.get(reader, "status_code")
    assert misses() == before + 1  # the second time from memory
    cache.get(reader, "kind")
    cache.get(reader, "duration_nano")  # 8 bytes a span: over the budget, the oldest go
    cache.get(reader, "status_code")
    assert misses() == before + 4
    assert not cache.cacheable(["name", "attributes"]) and cache.cacheable(["name", "resource"])
