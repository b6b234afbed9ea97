"""Tag names and values over Tempo's HTTP API, against a real ``tracelake serve`` whose data is in
blocks: shapes and value encodings as Tempo answers them (../shared/tempo-api-samples/)."""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.querier.test_trace_by_id_api import HOLD, get
from tests.samples import tempo_samples
from tests.server.harness import Server
from tests.server.sender import post
from tracelake.querier.tags import INTRINSIC_TAGS, go_float
from tracelake.synth import SynthConfig, generate_request_bytes


def sample(name: str) -> dict:
    return json.loads((tempo_samples() / name).read_text())


def ranged(path: str) -> str:
    """``path`` with a time range around now (Tempo reads blocks only for requests with one)."""
    if "start=" in path:
        return path
    now = int(time.time())
    return f"{path}{'&' if '?' in path else '?'}start={now - 7200}&end={now + 7200}"


def get_json(server: Server, path: str) -> dict:
    status, content_type, body = get(server, path)
    assert (status, content_type) == (200, "application/json"), body
    return json.loads(body)


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory):
    """One server whose synthetic traces were flushed to blocks (stop, then start again)."""
    server = Server(tmp_path_factory.mktemp("tags"), receivers=("otlp_http",), extra=HOLD).start()
    try:
        payload = next(generate_request_bytes(SynthConfig(traces=40, traces_per_request=40, seed=11)))
        assert post(server.ports["otlp_http"], payload) == 200
        assert post(server.ports["otlp_http"], _typed_request().SerializeToString()) == 200
        assert server.stop() == 0
        server.start()
        yield server, ExportTraceServiceRequest.FromString(payload)
    finally:
        if server.proc and server.proc.poll() is None:
            server.stop()


def _typed_request() -> ExportTraceServiceRequest:
    """One span whose attributes cover the value types synth does not emit (bool, double)."""
    now = time.time_ns()  # the distributor refuses spans far in the past
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = "typed"
    rs.resource.attributes.add(key="test.mixed").value.int_value = 7
    span = rs.scope_spans.add().spans.add(
        trace_id=bytes(range(1, 17)),
        span_id=bytes(range(1, 9)),
        name="typed-span",
        start_time_unix_nano=now,
        end_time_unix_nano=now + 10**9,
    )
    span.attributes.add(key="test.flag").value.bool_value = True
    span.attributes.add(key="test.ratio").value.double_value = 0.25
    span.attributes.add(key="test.mixed").value.string_value = "seven"
    return request


def _services(request: ExportTraceServiceRequest) -> set[str]:
    return {"typed"} | {
        kv.value.string_value
        for rs in request.resource_spans
        for kv in rs.resource.attributes
        if kv.key == "service.name"
    }


def _span_ints(request: ExportTraceServiceRequest, key: str) -> set[str]:
    return {
        str(kv.value.int_value)
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
        for kv in s.attributes
        if kv.key == key and kv.value.HasField("int_value")
    }


def test_v1_tags(stored) -> None:
    server, _ = stored
    ours = get_json(server, ranged("/api/search/tags"))
    assert set(ours) == set(sample("search_tags_v1_range.json"))
    names = ours["tagNames"]
    assert names == sorted(set(names))
    assert {"service.name", "http.route", "http.status_code"} <= set(names)
    assert get_json(server, ranged("/api/search/tags?limit=3"))["tagNames"] == names[:3]
    assert get_json(server, ranged("/api/search/tags?start=1000&end=2000"))["tagNames"] == []


def test_v2_tags_scopes_like_tempo(stored) -> None:
    server, request = stored
    ours = get_json(server, ranged("/api/v2/search/tags"))
    tempo = sample("search_tags_v2_range.json")
    assert set(ours) == set(tempo)
    assert [s["name"] for s in ours["scopes"]] == [s["name"] for s in tempo["scopes"]]
    assert [s["name"] for s in ours["scopes"]] == ["intrinsic", "resource", "span", "event"]
    assert all(set(s) == {"name", "tags"} for s in ours["scopes"])
    by_name = {s["name"]: s["tags"] for s in ours["scopes"]}
    assert by_name["intrinsic"] == next(s["tags"] for s in tempo["scopes"] if s["name"] == "intrinsic")
    assert list(INTRINSIC_TAGS) == by_name["intrinsic"]
    assert {"service.name", "telemetry.sdk.language", "k8s.pod.name"} <= set(by_name["resource"])
    assert {"http.route", "http.status_code"} <= set(by_name["span"])
    event_keys = {
        kv.key
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
        for event in span.events
        for kv in event.attributes
    }
    assert event_keys and set(by_name["event"]) == event_keys
    assert "service.name" not in by_name["span"]
    span_only = get_json(server, ranged("/api/v2/search/tags?scope=span&limit=2"))
    assert span_only["scopes"] == [{"name": "span", "tags": by_name["span"][:2]}]
    assert get(server, "/api/v2/search/tags?scope=bogus")[0] == 400


def test_service_name_values(stored) -> None:
    server, request = stored
    services = _services(request)
    v1 = get_json(server, ranged("/api/search/tag/service.name/values"))
    assert set(v1) == set(sample("search_tag_values_v1_service.name_range.json"))
    assert v1["tagValues"] == sorted(services)
    v2 = get_json(server, ranged("/api/v2/search/tag/resource.service.name/values"))
    assert set(v2) == set(sample("search_tag_values_v2_resource.service.name_range.json"))
    assert all(set(v) == {"type", "value"} for v in v2["tagValues"])
    assert {(v["type"], v["value"]) for v in v2["tagValues"]} == {("string", s) for s in services}
    either = get_json(server, ranged("/api/v2/search/tag/.service.name/values"))["tagValues"]
    assert {v["value"] for v in either} == services
    assert get_json(server, ranged("/api/v2/search/tag/span.service.name/values"))["tagValues"] == []
    limited = get_json(server, ranged("/api/v2/search/tag/resource.service.name/values?limit=2"))
    assert len(limited["tagValues"]) == 2


def test_typed_values_match_tempo_encodings(stored) -> None:
    server, request = stored
    codes = get_json(server, ranged("/api/v2/search/tag/span.http.status_code/values"))["tagValues"]
    tempo_types = {
        v["type"] for v in sample("search_tag_values_v2_span.http.status_code_range.json")["tagValues"]
    }
    assert {v["type"] for v in codes} == tempo_types == {"int"}
    assert {v["value"] for v in codes} == _span_ints(request, "http.status_code")
    status = get_json(server, ranged("/api/v2/search/tag/status/values"))["tagValues"]
    tempo_status = sample("search_tag_values_v2_status_range.json")["tagValues"]
    assert {(v["type"], v["value"]) for v in status} == {
        (v["type"], v["value"]) for v in tempo_status if v["type"] == "keyword"
    }
    kinds = get_json(server, ranged("/api/v2/search/tag/kind/values"))["tagValues"]
    assert {v["type"] for v in kinds} == {"keyword"} and {"server", "client"} <= {v["value"] for v in kinds}
    names = get_json(server, ranged("/api/v2/search/tag/name/values"))["tagValues"]
    assert names and {v["type"] for v in names} == {"string"}
    roots = get_json(server, ranged("/api/v2/search/tag/rootServiceName/values"))["tagValues"]
    assert {v["value"] for v in roots} <= _services(request) and roots
    methods = get_json(server, ranged("/api/v2/search/tag/span.http.method/values?q=%7B%7D"))["tagValues"]
    assert methods and {v["type"] for v in methods} == {"string"}
    assert get_json(server, ranged("/api/v2/search/tag/duration/values"))["tagValues"] == []


def test_bool_float_and_mixed_scopes(stored) -> None:
    server, _ = stored

    def values(tag: str) -> list[tuple[str, str]]:
        found = get_json(server, ranged(f"/api/v2/search/tag/{tag}/values"))["tagValues"]
        return [(v["type"], v["value"]) for v in found]

    assert values("span.test.flag") == [("bool", "true")]
    assert values("span.test.ratio") == [("float", "0.25")]
    assert values(".test.mixed") == [("int", "7"), ("string", "seven")]
    assert values("resource.test.mixed") == [("int", "7")]
    assert values("span.test.mixed") == [("string", "seven")]
    assert values("span.%2522test.flag%2522") == [("bool", "true")]  # quoted, encoded twice
    assert get_json(server, ranged("/api/search/tag/test.mixed/values"))["tagValues"] == ["seven"]


def test_without_a_range_only_the_ingesters_answer(stored) -> None:
    """Tempo's rule: blocks only for requests with a time range; spans in memory always."""
    server, _ = stored
    assert get_json(server, "/api/search/tags")["tagNames"] == []
    scopes = get_json(server, "/api/v2/search/tags")["scopes"]
    assert [s["name"] for s in scopes] == ["intrinsic"]
    request = _typed_request()
    span = request.resource_spans[0].scope_spans[0].spans[0]
    span.trace_id = bytes(range(2, 18))
    span.attributes.add(key="only.in.memory").value.string_value = "yes"
    assert post(server.ports["otlp_http"], request.SerializeToString()) == 200
    assert "only.in.memory" in get_json(server, "/api/search/tags")["tagNames"]
    values = get_json(server, "/api/v2/search/tag/span.only.in.memory/values")["tagValues"]
    assert values == [{"type": "string", "value": "yes"}]
    ranged_names = get_json(server, ranged("/api/search/tags"))["tagNames"]
    assert {"only.in.memory", "http.route"} <= set(ranged_names)  # both sources with a range


def test_q_narrows_values_to_matching_spans(stored) -> None:
    server, request = stored
    q = "&q=" + quote("{ span.test.flag = true }")
    narrowed = get_json(server, ranged("/api/v2/search/tag/resource.service.name/values?x=1" + q))
    assert narrowed["tagValues"] == [{"type": "string", "value": "typed"}]
    q = "&q=" + quote('{ resource.service.name = "typed" } && { kind = server }')
    both = get_json(server, ranged("/api/v2/search/tag/span.test.ratio/values?x=1" + q))["tagValues"]
    assert both == []  # the typed trace has no server span: nothing matches
    broken = get_json(server, ranged("/api/v2/search/tag/resource.service.name/values?q=%7B%20.a%20%3D"))
    assert len(broken["tagValues"]) == len(_services(request))  # half-typed q: not narrowed


def test_q_narrows_tag_names(stored) -> None:
    server, _ = stored
    q = "&q=" + quote('{ resource.service.name = "typed" }')
    scopes = get_json(server, ranged("/api/v2/search/tags?x=1" + q))["scopes"]
    by_name = {s["name"]: set(s["tags"]) for s in scopes}
    typed = {"test.flag", "test.ratio", "test.mixed"}
    assert typed <= by_name["span"] <= typed | {"only.in.memory"}  # another test sends one more
    assert by_name["resource"] == {"service.name", "test.mixed"}


def test_bad_identifier_is_400(stored) -> None:
    server, _ = stored
    status, _, body = get(server, "/api/v2/search/tag/app.user.id/values")
    assert status == 400 and b"please provide a valid tagName" in body
    assert get(server, "/api/search/tag/app.user.id/values")[0] == 200  # v1 takes plain names


def test_go_float_formatting() -> None:
    cases = {
        0.5: "0.5",
        200.0: "200",
        1e21: "1e+21",
        1234567.0: "1.234567e+06",
        123456.0: "123456",
        1e-5: "1e-05",
        -2.25: "-2.25",
    }
    assert {k: go_float(k) for k in cases} == cases
