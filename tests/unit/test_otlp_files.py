"""Import-file reading: every layout x compression yields the same spans; bad files fail clearly."""

from __future__ import annotations

import gzip
import json
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tracelake.errors import InvalidInputError
from tracelake.otlp import iter_otlp_file, request_to_otlp_json


def make_request(seed: int, n_resources: int = 2, n_spans: int = 3) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    for r in range(n_resources):
        rs = req.resource_spans.add()
        rs.resource.attributes.append(
            KeyValue(key="service.name", value=AnyValue(string_value=f"svc-{seed}-{r}"))
        )
        ss = rs.scope_spans.add()
        ss.scope.name = "test"
        for s in range(n_spans):
            ss.spans.add(
                trace_id=bytes([seed, r, s]) + b"\x00" * 13,
                span_id=bytes([seed, r, s, 1, 2, 3, 4, 5]),
                name=f"op-{s}",
                kind=Span.SPAN_KIND_INTERNAL,
                start_time_unix_nano=1_700_000_000_000_000_000 + s,
                end_time_unix_nano=1_700_000_000_000_000_100 + s,
            )
    return req


REQUESTS = [make_request(seed) for seed in range(1, 4)]


def merged(requests: list[ExportTraceServiceRequest]) -> ExportTraceServiceRequest:
    out = ExportTraceServiceRequest()
    for req in requests:
        out.MergeFrom(req)
    return out


EXPECTED = merged(REQUESTS)


def _frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def _zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


# Each layout turns the requests into file content as some real producer would.
LAYOUTS: dict[str, Callable[[list[ExportTraceServiceRequest]], bytes]] = {
    "json-document-pretty": lambda reqs: json.dumps(request_to_otlp_json(merged(reqs)), indent=2).encode(),
    "json-document-compact": lambda reqs: json.dumps(request_to_otlp_json(merged(reqs))).encode(),
    "json-lines": lambda reqs: (
        b"\n" + b"\n\n  \n".join(json.dumps(request_to_otlp_json(r)).encode() for r in reqs) + b"\r\n\n"
    ),
    "protobuf": lambda reqs: merged(reqs).SerializeToString(),
    "collector-proto": lambda reqs: b"".join(_frame(r.SerializeToString()) for r in reqs),
    "collector-proto-zstd-records": lambda reqs: b"".join(_frame(_zstd(r.SerializeToString())) for r in reqs),
    "collector-json-zstd-records": lambda reqs: b"".join(
        _frame(_zstd(json.dumps(request_to_otlp_json(r)).encode())) for r in reqs
    ),
}

COMPRESSIONS: dict[str, Callable[[bytes], bytes]] = {
    "none": lambda data: data,
    "gzip": gzip.compress,
    "zstd": _zstd,
    # Several gzip members / zstd frames, as the Collector writes one zstd frame per flush.
    "gzip-members": lambda data: b"".join(gzip.compress(data[i : i + 100]) for i in range(0, len(data), 100)),
    "zstd-frames": lambda data: b"".join(_zstd(data[i : i + 100]) for i in range(0, len(data), 100)),
}


def write(tmp_path: Path, data: bytes, name: str = "traces.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def read_all(path: Path, **kwargs: int) -> tuple[ExportTraceServiceRequest, list[tuple[bytes, int]]]:
    chunks = list(iter_otlp_file(path, **kwargs))
    out = ExportTraceServiceRequest()
    for data, _ in chunks:
        out.MergeFrom(ExportTraceServiceRequest.FromString(data))
    return out, chunks


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_and_compression_gives_the_same_spans(
    tmp_path: Path, layout: str, compression: str
) -> None:
    path = write(tmp_path, COMPRESSIONS[compression](LAYOUTS[layout](REQUESTS)))
    got, chunks = read_all(path)
    assert got == EXPECTED
    assert chunks[-1][1] == path.stat().st_size


@pytest.mark.parametrize("layout", LAYOUTS)
def test_small_batches_and_progress(tmp_path: Path, layout: str) -> None:
    requests = [make_request(seed, n_resources=5, n_spans=20) for seed in range(1, 6)]
    path = write(tmp_path, gzip.compress(LAYOUTS[layout](requests)))
    got, chunks = read_all(path, batch_bytes=1)
    assert got == merged(requests)
    assert len(chunks) >= 5
    progress = [consumed for _, consumed in chunks]
    assert progress == sorted(progress)
    assert progress[-1] == path.stat().st_size
    assert all(data for data, _ in chunks)


def test_big_protobuf_is_split_per_resource_spans(tmp_path: Path) -> None:
    req = make_request(7, n_resources=50, n_spans=10)
    path = write(tmp_path, req.SerializeToString())
    limit = len(req.SerializeToString()) // 10
    got, chunks = read_all(path, batch_bytes=limit)
    assert got == req
    assert 8 <= len(chunks) <= 12
    assert all(len(data) < 2 * limit for data, _ in chunks)


def test_format_comes_from_content_not_extension(tmp_path: Path) -> None:
    path = write(tmp_path, _zstd(REQUESTS[0].SerializeToString()), name="traces.json.gz")
    assert read_all(path)[0] == REQUESTS[0]


def test_collector_proto_with_empty_record(tmp_path: Path) -> None:
    data = _frame(b"") + _frame(REQUESTS[0].SerializeToString()) + _frame(b"")
    assert read_all(write(tmp_path, data))[0] == REQUESTS[0]


def test_file_without_spans_yields_nothing(tmp_path: Path) -> None:
    assert read_all(write(tmp_path, b'{"resourceSpans": []}\n{}\n'))[1] == []


def test_accepts_str_path_and_utf8_bom(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        b"\xef\xbb\xbf" + json.dumps(request_to_otlp_json(REQUESTS[0])).encode(),
    )
    assert read_all(str(path))[0] == REQUESTS[0]  # type: ignore[arg-type]


def _line(req: ExportTraceServiceRequest) -> bytes:
    return json.dumps(request_to_otlp_json(req)).encode() + b"\n"


GOOD_PROTO = REQUESTS[0].SerializeToString()
GOOD_FRAMED = _frame(GOOD_PROTO) + _frame(REQUESTS[1].SerializeToString())
GOOD_GZIP = gzip.compress(GOOD_PROTO * 50)
GOOD_ZSTD = _zstd(GOOD_PROTO * 50)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "file is empty"),
        (gzip.compress(b""), "empty after gzip decompression"),
        (GOOD_GZIP[: len(GOOD_GZIP) // 2], "gzip data is truncated"),
        (GOOD_GZIP[:10] + b"\xff" * 200, "corrupt gzip data"),
        (GOOD_GZIP + b"garbage", "unexpected data after the end of the gzip stream"),
        (GOOD_ZSTD[: len(GOOD_ZSTD) - 5], "zstd data is truncated"),
        (GOOD_ZSTD[:4] + b"\xff" * 50, "corrupt zstd data"),
        (
            _line(REQUESTS[0]) + b"\n" + b'{"resourceSpans": [}\n',
            "line 3: invalid JSON",
        ),
        (
            b'{\n  "resourceSpans": [\n    {,}\n  ]\n}\n',
            "invalid JSON at line 3, column 6",
        ),
        (b"\n\n{\n  oops\n}", "invalid JSON at line 4"),
        (
            _line(REQUESTS[0]) + b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "xx"}]}]}]}\n',
            "line 2: invalid OTLP JSON at resourceSpans[0].scopeSpans[0].spans[0].traceId",
        ),
        (b'{"resourceLogs": []}\n', "line 1: not OTLP traces JSON"),
        (b"[1, 2]\n", "OTLP JSON must be an object"),
        (b"  \n\t\n", "only whitespace"),
        ("{}".encode("utf-16"), "UTF-16"),
        (GOOD_PROTO[:-3], "protobuf is truncated"),
        (
            b"\x0a\x05\x0a\x03\xff\xff\xff",
            "does not parse (corrupt or truncated) in the ResourceSpans at byte 0",
        ),
        (GOOD_PROTO + b"\x0a\x05\x0a\x03\xff\xff\xff", "ResourceSpans at byte"),
        (b"\x0a\x05\x0a\x03", "declares 5 bytes but only 2 remain"),
        (b"\x0a\x01\x0a\x0b", "invalid field tag 0xb at byte 3"),
        (GOOD_FRAMED[:-4], "record 2 at byte"),
        (GOOD_FRAMED + b"\x00\x00", "partial header"),
        (
            _frame(b"\x0a\x05\x0a\x03\xff\xff\xff"),
            "does not parse (corrupt or truncated) in record 1 at byte 0",
        ),
        (_frame(b"\x04\x22\x4d\x18rest"), "lz4-compressed records are not supported"),
        (_frame(_zstd(b"x" * 100)[:-4]), "record 1 at byte 0: zstd data is truncated"),
        (
            _frame(b'{"resourceSpans": 1}'),
            "record 1 at byte 0: invalid OTLP JSON at resourceSpans",
        ),
        (b"hello, this is not OTLP at all", "not an OTLP file"),
        (b"\x00\x01\x02", "partial header"),
    ],
)
def test_bad_files_raise_invalid_input_naming_the_file(tmp_path: Path, data: bytes, expected: str) -> None:
    path = write(tmp_path, data)
    with pytest.raises(InvalidInputError) as info:
        list(iter_otlp_file(path))
    message = str(info.value)
    assert message.startswith(f"{path}")
    assert expected in message
    assert "\n" not in message


def test_compressed_protobuf_errors_use_decompressed_offsets(tmp_path: Path) -> None:
    path = write(tmp_path, gzip.compress(GOOD_PROTO[:-3]))
    with pytest.raises(InvalidInputError, match=r"gzip-decompressed data: protobuf is truncated"):
        list(iter_otlp_file(path))


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(InvalidInputError, match=r"nope\.json: cannot read file: No such file"):
        list(iter_otlp_file(path))


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"cannot read file: Is a directory"):
        list(iter_otlp_file(tmp_path))


def test_error_after_good_chunks_still_raises(tmp_path: Path) -> None:
    """A corrupt tail must not be silently dropped after earlier batches were yielded."""
    path = write(tmp_path, GOOD_FRAMED + _frame(b"\x0a\x05\x0a\x03\xff\xff\xff"))
    chunks = iter_otlp_file(path, batch_bytes=1)
    assert next(chunks)[0] == GOOD_PROTO
    assert next(chunks)[0] == REQUESTS[1].SerializeToString()
    with pytest.raises(InvalidInputError, match="record 3"):
        next(chunks)
