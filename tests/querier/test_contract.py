"""Contract tests: every request of ../shared/tempo-api-samples/README.md replayed against a real
``tracelake serve`` loaded with the same kind of data (five services, ~2% HTTP 500 error traces), and
our answer's shape compared with Tempo 2.7.2's captured one: status code, content type, and for JSON
every path's keys, value types and encodings (hex / base64 ids, 64-bit numbers as digit strings).

Two servers, as the samples were captured in two states: ``backend`` (everything flushed to blocks,
the ingester empty) and ``ingester`` (recent data still in memory).
"""

from __future__ import annotations

import base64
import json
import re
from urllib.parse import parse_qsl, urlencode

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from tests.querier.test_trace_by_id_api import HOLD, get
from tests.samples import tempo_samples
from tests.server.harness import Server
from tests.server.sender import post
from tracelake.synth import SynthConfig, generate_request_bytes

SAMPLE_TRACE = "7ae894ed8dc75cf7baa1d32a77cc9488"
RECENT_SAMPLE_TRACE = "134f7338b5d171594c0cd918274e0b6d"
SAMPLE_RANGE = ("1796037000", "1796038800")

# Keys we send that Tempo's captured answers lack, and why.
EXTRA_KEYS = {
    "traces[].spanSet.spans[].name": "span names in span sets: Grafana shows them (Tempo: when known)",
    "traces[].spanSets[].spans[].name": "same",
    "metrics.inspectedTraces": "Tempo sends it too in other answers (contract §2.3)",
    "metrics.totalBlocks": "Tempo sends it when blocks were searched",
    "metrics.totalJobs": "Tempo sends it in every other search answer",
    "metrics.totalBlockBytes": "same",
    "metrics.inspectedBytes": "same",
    "batches[].scopeSpans[].spans[].flags": "we keep the span flags that were sent (W3C sampled bit)",
    "trace.resourceSpans[].scopeSpans[].spans[].flags": "same",
    "batches[].schemaUrl": "we keep the schema URLs that were sent",
    "batches[].scopeSpans[].schemaUrl": "same",
    "trace.resourceSpans[].schemaUrl": "same",
    "trace.resourceSpans[].scopeSpans[].schemaUrl": "same",
}
# Keys Tempo sends only for some data (absent for traces under 1 ms, for a service without errors...).
DATA_DEPENDENT = {
    "durationMs",
    "errorCount",
    "rootTraceName",
    "attributes",
    "parentSpanId",
    "events",
    "links",
    "version",  # scope version: our synthetic data has scopes without one
    "inspectedBytes",  # omitted when zero (nothing had to be read, e.g. the status keywords)
}

_DIGITS = {
    "startTimeUnixNano",
    "endTimeUnixNano",
    "durationNanos",
    "intValue",
    "inspectedBytes",
    "totalBlockBytes",
    "timeUnixNano",
}
_BASE64_IDS = {"traceId": 16, "spanId": 8, "parentSpanId": 8}


def _manifest() -> list[dict]:
    return json.loads((tempo_samples() / "_manifest.json").read_text())


def _encoding(key: str, value: object) -> str:
    """The JSON type of a value, refined by what Tempo encodes in a string."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if value is None:
        return "null"
    assert isinstance(value, str)
    if key in _DIGITS:
        return "digits" if re.fullmatch(r"-?\d+", value) else "string"
    if key in _BASE64_IDS:
        try:
            return f"base64[{len(base64.b64decode(value, validate=True))}]"
        except ValueError:
            return "string"
    if key == "traceID":
        return "hex<=32" if re.fullmatch(r"[0-9a-f]{1,32}", value) and not value.startswith("0") else "string"
    if key == "spanID":
        return "hex16" if re.fullmatch(r"[0-9a-f]{16}", value) else "string"
    if key in ("kind",) and value.startswith("SPAN_KIND_"):
        return "enum"
    if key == "code" and value.startswith("STATUS_CODE_"):
        return "enum"
    return "string"


def shape(value: object, path: str = "", out: dict | None = None, key: str = "") -> dict:
    """path -> {"types": set, "keys": [set of keys per object instance]}; data-keyed maps
    (``serviceStats``) have their keys replaced by ``*``."""
    out = {} if out is None else out
    entry = out.setdefault(path, {"types": set(), "keys": []})
    entry["types"].add(_encoding(key, value))
    if isinstance(value, dict):
        entry["keys"].append({"*"} if path.endswith("serviceStats") else set(value))
        for k, v in value.items():
            name = "*" if path.endswith("serviceStats") else k
            shape(v, f"{path}.{name}" if path else name, out, k)
    elif isinstance(value, list):
        for item in value:
            shape(item, f"{path}[]", out, key)
    return out


def assert_same_shape(tempo: object, ours: object) -> None:
    want, got = shape(tempo), shape(ours)
    problems = []
    for path, entry in want.items():
        if path not in got:
            if path.split(".")[-1].split("[")[0] not in DATA_DEPENDENT and not _under_optional(path, want):
                problems.append(f"{path}: missing (Tempo: {sorted(entry['types'])})")
            continue
        if not got[path]["types"] <= entry["types"]:
            problems.append(f"{path}: {sorted(got[path]['types'])}, Tempo {sorted(entry['types'])}")
        required = set.intersection(*entry["keys"]) - DATA_DEPENDENT if entry["keys"] else set()
        for keys in got[path]["keys"]:
            if required - keys:
                problems.append(f"{path}: lacks {sorted(required - keys)}")
                break
    for path in got:
        parent = path.rsplit(".", 1)[0] if "." in path else ""
        known = path in want or path in EXTRA_KEYS or _under_optional(path, want)
        if not known and (parent in want or parent == "") and want.get(parent, {}).get("keys"):
            problems.append(f"{path}: not in Tempo's answer")
    assert not problems, "\n".join(problems)


def _under_optional(path: str, want: dict) -> bool:
    """A path below one that Tempo left empty (no instance to compare with)."""
    parts = path.split(".")
    return any(".".join(parts[:i]) in want and not want[".".join(parts[:i])]["keys"] and
               "array" in want[".".join(parts[:i])]["types"] for i in range(1, len(parts)))  # fmt: skip


# ------------------------------------------------------------------------------------------ data


def _trace_ids(request: ExportTraceServiceRequest) -> tuple[str, str, tuple[int, int]]:
    """(an error trace with several resources, any trace, the data's time range in seconds)."""
    resources: dict[bytes, set[bytes]] = {}
    errors: set[bytes] = set()
    starts = []
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                resources.setdefault(span.trace_id, set()).add(rs.resource.SerializeToString())
                if span.status.code == 2:
                    errors.add(span.trace_id)
                starts.append(span.start_time_unix_nano)
    error_trace = max(errors, key=lambda t: (len(resources[t]), t))
    return (
        error_trace.hex(),
        next(iter(resources)).hex(),
        (min(starts) // 10**9 - 60, max(starts) // 10**9 + 120),
    )


def _load(server: Server, seed: int, traces: int) -> ExportTraceServiceRequest:
    whole = ExportTraceServiceRequest()
    for payload in generate_request_bytes(
        SynthConfig(traces=traces, traces_per_request=500, seed=seed, error_rate=0.02)
    ):
        assert post(server.ports["otlp_http"], payload) == 200
        whole.MergeFrom(ExportTraceServiceRequest.FromString(payload))
    return whole


@pytest.fixture(scope="module")
def backend_server(tmp_path_factory: pytest.TempPathFactory):
    server = Server(tmp_path_factory.mktemp("contract-backend"), receivers=("otlp_http",), extra=HOLD).start()
    try:
        request = _load(server, seed=42, traces=2000)
        assert server.stop() == 0  # everything to blocks; the ingester starts empty
        server.start()
        yield server, _trace_ids(request)
    finally:
        if server.proc and server.proc.poll() is None:
            server.stop()


@pytest.fixture(scope="module")
def recent_server(tmp_path_factory: pytest.TempPathFactory):
    server = Server(tmp_path_factory.mktemp("contract-recent"), receivers=("otlp_http",), extra=HOLD).start()
    try:
        request = _load(server, seed=777, traces=200)
        yield server, _trace_ids(request)
    finally:
        server.stop()


def _rewrite(entry: dict, ids: tuple[str, str, tuple[int, int]]) -> str:
    """The sample's path and query with its trace id and time range replaced by ours."""
    error_trace, _, (start, end) = ids
    path = entry["path"].replace(SAMPLE_TRACE, error_trace).replace(RECENT_SAMPLE_TRACE, error_trace)
    params = parse_qsl(entry["query"], keep_blank_values=True)
    ours = {("start", SAMPLE_RANGE[0]): str(start), ("end", SAMPLE_RANGE[1]): str(end)}
    # our generator's cart speaks gRPC (no http.method); inventory speaks HTTP with http.method
    ours[("q", '{ resource.service.name = "cart" }')] = '{ resource.service.name = "inventory" }'
    params = [(k, ours.get((k, v), v)) for k, v in params]
    return path + ("?" + urlencode(params) if params else "")


def _cases(state: str) -> list[dict]:
    return [e for e in _manifest() if e["data_state"].split(" ")[0] == state]


def _check(server: Server, ids, entry: dict) -> None:
    status, content_type, body = get(server, _rewrite(entry, ids), entry["request_headers"])
    assert status == entry["status"], body[:300]
    want_type = entry["content_type"] or ""
    if want_type.startswith("text/plain"):
        assert content_type.startswith("text/plain")
    elif want_type:
        assert content_type == want_type
    sample = (tempo_samples() / entry["file"]).read_bytes()
    if want_type == "application/json":
        assert_same_shape(json.loads(sample), json.loads(body))
    elif want_type == "application/protobuf":
        tempo, ours = sample, body
        if "/api/v2/" in entry["path"]:  # TraceByIDResponse: the trace in field 1
            assert ours[0] == tempo[0] == 0x0A
        else:
            assert TracesData.FromString(ours).resource_spans and TracesData.FromString(tempo).resource_spans
    elif entry["file"].endswith(".txt") and status == 400:
        assert body.decode().split(":")[0] == sample.decode().split(":")[0]  # same kind of message
    elif entry["file"] in ("echo.txt", "ready.txt"):
        assert body.strip() == sample.strip()


@pytest.mark.parametrize("entry", _cases("backend"), ids=lambda e: e["file"])
def test_backend_state_answers_have_tempos_shape(backend_server, entry: dict) -> None:
    server, ids = backend_server
    _check(server, ids, entry)


@pytest.mark.parametrize("entry", _cases("recent"), ids=lambda e: e["file"])
def test_recent_data_answers_have_tempos_shape(recent_server, entry: dict) -> None:
    server, ids = recent_server
    _check(server, ids, entry)


def test_shape_comparison_catches_differences() -> None:
    """The comparison itself: a hex id where Tempo has base64, a number as a string, a missing key."""
    tempo = {"trace": {"resourceSpans": [{"spans": [{"traceId": "AAAAAAAAAAAAAAAAAAAAAA==", "x": "1"}]}]}}
    assert_same_shape(tempo, tempo)
    for ours in (
        {"trace": {"resourceSpans": [{"spans": [{"traceId": "00" * 16, "x": "1"}]}]}},
        {"trace": {"resourceSpans": [{"spans": [{"traceId": "AAAAAAAAAAAAAAAAAAAAAA==", "x": 1}]}]}},
        {"trace": {"resourceSpans": [{"spans": [{"traceId": "AAAAAAAAAAAAAAAAAAAAAA=="}]}]}},
        {
            "trace": {
                "resourceSpans": [{"spans": [{"traceId": "AAAAAAAAAAAAAAAAAAAAAA==", "x": "1", "y": 2}]}]
            }
        },
    ):
        with pytest.raises(AssertionError):
            assert_same_shape(tempo, ours)


def test_every_listed_request_is_replayed() -> None:
    listed = re.findall(r"^\| `([^`]+)` \|", (tempo_samples() / "README.md").read_text(), re.M)
    replayed = {e["file"] for e in _manifest()}
    assert set(listed) <= replayed
    assert len(_cases("backend")) + len(_cases("recent")) == len(replayed)
