"""The ``tracelake`` command as a user runs it: a real process, real files, real S3 protocol."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import zstandard
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from tests.conftest import S3Endpoint
from tests.strategies import canonical_spans, only_trace
from tracelake.otlp import otlp_json_to_request, request_to_otlp_json
from tracelake.synth import SynthConfig, generate_request_bytes


def run(cwd: Path, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    prefix = ["--config", str(config)] if config else []
    return subprocess.run(
        [sys.executable, "-m", "tracelake.cli.main", *prefix, *args],
        cwd=cwd,
        capture_output=True,
        timeout=120,
    )


def ok(result: subprocess.CompletedProcess[bytes]) -> str:
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def one_error_line(result: subprocess.CompletedProcess[bytes], code: int = 2) -> str:
    err = result.stderr.decode().strip()
    assert result.returncode == code, err
    assert "\n" not in err and "Traceback" not in err, err
    return err


def synthetic(traces: int = 30, seed: int = 1) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    for payload in generate_request_bytes(SynthConfig(traces=traces, seed=seed, traces_per_request=10)):
        request.MergeFromString(payload)
    return request


def test_import_then_blocks_then_trace(tmp_path: Path) -> None:
    request = synthetic()
    (tmp_path / "in.pb").write_bytes(request.SerializeToString())
    out = ok(run(tmp_path, "import", "in.pb"))
    spans = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    assert f"imported {spans} spans from 1 file(s) into 1 block(s)" in out
    listing = ok(run(tmp_path, "blocks"))
    assert "BLOCK ID" in listing and f"30 traces, {spans} spans" in listing
    trace_id = request.resource_spans[0].scope_spans[0].spans[0].trace_id
    as_json = json.loads(ok(run(tmp_path, "trace", trace_id.hex())))
    expected = canonical_spans(only_trace(request, trace_id))
    assert canonical_spans(otlp_json_to_request(as_json)) == expected
    assert as_json["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] == trace_id.hex()
    proto = run(tmp_path, "trace", trace_id.hex(), "--format", "proto")
    assert proto.returncode == 0
    assert canonical_spans(TracesData.FromString(proto.stdout)) == expected


def test_every_file_format_imports_the_same_spans(tmp_path: Path) -> None:
    request = synthetic(traces=12, seed=2)
    as_json = json.dumps(request_to_otlp_json(request)).encode()
    lines = b"\n".join(
        json.dumps(request_to_otlp_json(ExportTraceServiceRequest(resource_spans=[rs]))).encode()
        for rs in request.resource_spans
    )
    files = {
        "a.pb": request.SerializeToString(),
        "b.json": as_json,
        "c.jsonl.gz": gzip.compress(lines),
        "d.pb.zst": zstandard.ZstdCompressor().compress(request.SerializeToString()),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    spans = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    for name in files:
        out = ok(run(tmp_path, "import", name, "--tenant", name.split(".")[0]))
        assert f"imported {spans} spans" in out, name
    trace_id = request.resource_spans[0].scope_spans[0].spans[0].trace_id
    results = {
        canonical_spans(
            otlp_json_to_request(json.loads(ok(run(tmp_path, "trace", trace_id.hex(), "--tenant", t))))
        ).__repr__()
        for t in "abcd"
    }
    assert len(results) == 1


def test_absent_trace_and_bad_ids(tmp_path: Path) -> None:
    (tmp_path / "in.pb").write_bytes(synthetic(traces=3).SerializeToString())
    ok(run(tmp_path, "import", "in.pb"))
    missing = one_error_line(run(tmp_path, "trace", "0123456789abcdef0123456789abcdef"), code=1)
    assert "0123456789abcdef0123456789abcdef not found" in missing
    assert "not hex" in one_error_line(run(tmp_path, "trace", "nothex!"))
    assert "too long" in one_error_line(run(tmp_path, "trace", "a" * 33))


def test_corrupt_input_writes_no_visible_block(tmp_path: Path) -> None:
    data = synthetic(traces=10).SerializeToString()
    (tmp_path / "cut.pb").write_bytes(data[: len(data) // 2])
    (tmp_path / "cut.pb.gz").write_bytes(gzip.compress(data)[:-20])
    for name in ("cut.pb", "cut.pb.gz"):
        err = one_error_line(run(tmp_path, "import", name))
        assert name in err
    assert "0 block(s)" in ok(run(tmp_path, "blocks"))
    assert "nope.pb" in one_error_line(run(tmp_path, "import", "nope.pb"))


def _one_block(tmp_path: Path) -> tuple[Path, str]:
    request = synthetic(traces=3)
    (tmp_path / "in.pb").write_bytes(request.SerializeToString())
    ok(run(tmp_path, "import", "in.pb"))
    block_dir = next(p for p in (tmp_path / "data" / "single-tenant").iterdir() if p.is_dir())
    return block_dir, request.resource_spans[0].scope_spans[0].spans[0].trace_id.hex()


def test_unknown_block_format_is_refused(tmp_path: Path) -> None:
    block_dir, _ = _one_block(tmp_path)
    meta = json.loads((block_dir / "meta.json").read_text())
    meta["format"] = "tl99"
    (block_dir / "meta.json").write_text(json.dumps(meta))
    (tmp_path / "data" / "single-tenant" / "index.json.gz").unlink()
    done = run(tmp_path, "blocks")
    assert done.returncode == 1, done.stderr.decode()
    assert done.stdout.decode().splitlines()[-1].startswith("0 block(s)")  # the others would be listed
    [line] = [x for x in done.stderr.decode().splitlines() if x.startswith("unreadable: ")]
    assert f"{block_dir.name}/meta.json: block format 'tl99' is not supported" in line


def test_missing_object_is_named(tmp_path: Path) -> None:
    block_dir, trace_id = _one_block(tmp_path)
    (block_dir / "data.parquet").unlink()
    assert "data.parquet is missing" in one_error_line(run(tmp_path, "trace", trace_id))


def _s3_config(tmp_path: Path, endpoint: S3Endpoint, prefix: str) -> Path:
    path = tmp_path / "tracelake.yaml"
    path.write_text(
        "storage:\n  trace:\n    backend: s3\n    s3:\n"
        f"      bucket: {endpoint.bucket}\n      endpoint: {endpoint.url}\n"
        f"      access_key: {endpoint.access_key}\n      secret_key: {endpoint.secret_key}\n"
        f"      region: {endpoint.region}\n      insecure: {str(endpoint.insecure).lower()}\n"
        f"      forcepathstyle: true\n      prefix: {prefix}\n      max_retries: 2\n"
    )
    return path


def test_s3_end_to_end(tmp_path: Path, s3_endpoint: S3Endpoint) -> None:
    config = _s3_config(tmp_path, s3_endpoint, f"cli-{uuid.uuid4().hex[:8]}")
    request = synthetic(traces=5)
    (tmp_path / "in.pb").write_bytes(request.SerializeToString())
    ok(run(tmp_path, "import", "in.pb", config=config))
    assert "5 traces" in ok(run(tmp_path, "blocks", config=config))
    trace_id = request.resource_spans[0].scope_spans[0].spans[0].trace_id
    got = otlp_json_to_request(json.loads(ok(run(tmp_path, "trace", trace_id.hex(), config=config))))
    assert canonical_spans(got) == canonical_spans(only_trace(request, trace_id))
    assert not (tmp_path / "data").exists()


def test_bad_s3_credentials_are_reported(tmp_path: Path, s3_auth_endpoint: S3Endpoint) -> None:
    config = _s3_config(tmp_path, s3_auth_endpoint, "x")
    err = one_error_line(run(tmp_path, "blocks", config=config))
    assert "credentials" in err.lower()


@pytest.mark.parametrize("fmt", ["proto", "jsonl"])
def test_generate_writes_importable_files(tmp_path: Path, fmt: str) -> None:
    ok(run(tmp_path, "generate", f"demo.{fmt}", "--traces", "20", "--format", fmt))
    assert "imported" in ok(run(tmp_path, "import", f"demo.{fmt}"))
    assert "20 traces" in ok(run(tmp_path, "blocks"))
