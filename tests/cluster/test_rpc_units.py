"""The pieces of the RPC path in one process: splitting requests by trace, the messages, the quorum
rules of the distributor's fan-out and of the querier's merge (with fake ingester clients)."""

from __future__ import annotations

import threading
import time
from collections import Counter

import grpc
import pyarrow as pa
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tracelake.codec.decode import decode_otlp
from tracelake.errors import InvalidInputError, UnavailableError
from tracelake.model.schema import SPAN_SCHEMA
from tracelake.otlp.split import split_by_trace
from tracelake.push import PushError
from tracelake.ring import MemberSource, RingWatcher
from tracelake.rpc import messages
from tracelake.rpc.metrics import ingester_failures
from tracelake.rpc.pusher import RingPusher
from tracelake.rpc.recent import RingRecentTraces, dedupe_spans
from tracelake.synth import SynthConfig, generate_request_bytes


def _request(traces: int = 40) -> bytes:
    return b"".join(generate_request_bytes(SynthConfig(traces=traces, seed=7, services=3)))


def _spans(request: ExportTraceServiceRequest) -> list[tuple[bytes, bytes, bytes, bytes]]:
    """(resource, scope, trace id, whole span) of every span."""
    return [
        (
            rs.resource.SerializeToString() + rs.schema_url.encode(),
            ss.scope.SerializeToString() + ss.schema_url.encode(),
            span.trace_id,
            span.SerializeToString(),
        )
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    ]


def test_split_sends_every_span_to_its_traces_owner_under_its_resource_and_scope() -> None:
    payload = _request()
    original = ExportTraceServiceRequest.FromString(payload)
    parts = split_by_trace(payload, lambda trace_id: trace_id[0] % 3)
    assert set(parts) == {0, 1, 2}
    got: list = []
    for owner, part in parts.items():
        spans = _spans(ExportTraceServiceRequest.FromString(part))
        assert all(trace_id[0] % 3 == owner for _, _, trace_id, _ in spans)
        got += spans
        assert decode_otlp(part).table.num_rows == len(spans)  # the ingesters' decoder reads it
    assert Counter(got) == Counter(_spans(original))


def test_split_refuses_what_is_not_protobuf() -> None:
    with pytest.raises(InvalidInputError):
        split_by_trace(b"\x0a\xff\xff\xff", lambda t: 0)
    assert split_by_trace(b"", lambda t: 0) == {}


def test_messages_round_trip() -> None:
    request = messages.PushRequest("acme", 1_700_000_000_123_456_789, [b"one", b"", b"three"])
    assert messages.PushRequest.decode(request.encode()) == request
    results = [
        messages.BatchResult(accepted=5, refused=Counter({"invalid_span_id": 2, "trace_too_large": 1})),
        messages.BatchResult(error_status=503, error_message="busy", error_reason="x", retry_after_ms=1000),
    ]
    assert messages.decode_push_response(messages.encode_push_response(results)) == results
    assert messages.decode_find_trace(messages.encode_find_trace("t", b"\x01" * 16)) == ("t", b"\x01" * 16)
    table = decode_otlp(_request(3)).table
    (back,) = messages.decode_tables(messages.encode_tables([table]))
    assert back.equals(table)


class _Future:
    def __init__(self, value: bytes | None, error: grpc.StatusCode | None) -> None:
        self.value, self.error = value, error

    def result(self) -> bytes:
        if self.error is not None:
            raise _RpcError(self.error)
        assert self.value is not None
        return self.value

    def exception(self) -> Exception | None:
        return None if self.error is None else _RpcError(self.error)

    def add_done_callback(self, callback) -> None:
        callback(self)


class _HungFuture(_Future):
    """A replica that does not answer (SIGSTOPped, overloaded) until the test lets it fail."""

    def __init__(self) -> None:
        super().__init__(None, grpc.StatusCode.DEADLINE_EXCEEDED)
        self.callbacks: list = []
        self.expired = threading.Event()

    def result(self) -> bytes:
        self.expired.wait(10)  # a caller that waits for it waits this long
        return super().result()

    def add_done_callback(self, callback) -> None:
        self.callbacks.append(callback)

    def expire(self) -> None:
        self.expired.set()
        for callback in self.callbacks:
            callback(self)


class _RpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code


class _FakeIngester:
    """Answers pushes like an ingester that accepts every span, or fails as told."""

    def __init__(self, address: str, pool: _FakePool) -> None:
        self.address, self.pool = address, pool
        self.push = self
        self.find_trace = _FindTrace(self)
        self.received: list[messages.PushRequest] = []

    def future(self, data: bytes, timeout: float) -> _Future:
        request = messages.PushRequest.decode(data)
        self.received.append(request)
        mode = self.pool.modes.get(self.address)
        if mode == "closed":  # the ring dropped the member and closed its channel meanwhile
            raise ValueError("Cannot invoke RPC on closed channel!")
        if mode == "dead":
            return _Future(None, grpc.StatusCode.UNAVAILABLE)
        if mode == "hung":
            hung = _HungFuture()
            self.pool.hung.append(hung)
            return hung
        results = []
        for batch in request.batches:
            if mode == "invalid":
                results.append(
                    messages.BatchResult(error_status=400, error_message="bad", error_reason="bad")
                )
            else:
                spans = len(_spans(ExportTraceServiceRequest.FromString(batch)))
                results.append(messages.BatchResult(accepted=spans, refused=Counter({"too_old": 1})))
        return _Future(messages.encode_push_response(results), None)


class _FindTrace:
    """The find_trace method of a fake ingester, called as a gRPC future."""

    def __init__(self, ingester: _FakeIngester) -> None:
        self.ingester = ingester

    def future(self, data: bytes, timeout: float) -> _Future:
        pool = self.ingester.pool
        pool.asked.append(self.ingester.address)
        mode = pool.modes.get(self.ingester.address)
        if mode == "dead":
            return _Future(None, grpc.StatusCode.DEADLINE_EXCEEDED)
        if mode == "hung":
            hung = _HungFuture()
            pool.hung.append(hung)
            return hung
        return _Future(messages.encode_tables(pool.tables), None)


class _FakePool:
    def __init__(self, modes: dict[str, str] | None = None) -> None:
        self.modes = modes or {}
        self.clients: dict[str, _FakeIngester] = {}
        self.tables: list[pa.Table] = []
        self.hung: list[_HungFuture] = []
        self.asked: list[str] = []

    def get(self, address: str) -> _FakeIngester:
        return self.clients.setdefault(address, _FakeIngester(address, self))


def _watcher(members: int, rf: int) -> RingWatcher:
    return RingWatcher(MemberSource([f"127.0.0.1:{9000 + i}" for i in range(members)]), rf)


def test_each_trace_goes_to_its_replicas_and_counts_once() -> None:
    payload = _request()
    total = len(_spans(ExportTraceServiceRequest.FromString(payload)))
    pool = _FakePool()
    watcher = _watcher(5, 3)
    result = RingPusher(watcher, pool, timeout=1).forward("t", payload, 123)  # type: ignore[arg-type]
    assert result.accepted_spans == total  # each batch counted once, not once per replica
    per_ingester = Counter()
    for address, client in pool.clients.items():
        (request,) = client.received
        assert request.tenant == "t" and request.received_unix_nano == 123
        for batch in request.batches:
            for span in ExportTraceServiceRequest.FromString(batch).resource_spans[0].scope_spans[0].spans:
                from tracelake.ring import ring_key

                assert address in watcher.ring.replicas(ring_key("t", span.trace_id))
        per_ingester[address] = sum(
            len(_spans(ExportTraceServiceRequest.FromString(b))) for b in request.batches
        )
    assert sum(per_ingester.values()) == 3 * total  # every span on exactly three ingesters


def test_a_write_survives_one_dead_replica_of_three_but_not_two() -> None:
    payload = _request()
    members = [f"127.0.0.1:{9000 + i}" for i in range(3)]
    ok = RingPusher(_watcher(3, 3), _FakePool({members[0]: "dead"}), 1).forward("t", payload, 1)  # type: ignore[arg-type]
    assert ok.accepted_spans > 0
    closed = _FakePool({members[1]: "closed"})
    assert RingPusher(_watcher(3, 3), closed, 1).forward("t", payload, 1).accepted_spans > 0  # type: ignore[arg-type]
    with pytest.raises(PushError) as refused:
        RingPusher(_watcher(3, 3), _FakePool({m: "dead" for m in members[:2]}), 1).forward("t", payload, 1)  # type: ignore[arg-type]
    assert refused.value.status == 503 and refused.value.retry_after


def test_a_hung_replica_does_not_hold_a_write_that_has_its_quorum() -> None:
    """The answer goes out once two of three replicas stored every batch; the third's late failure
    is still counted."""
    members = [f"127.0.0.1:{9000 + i}" for i in range(3)]
    pool = _FakePool({members[2]: "hung"})
    before = ingester_failures.labels(members[2], "push")._value.get()
    started = time.monotonic()
    result = RingPusher(_watcher(3, 3), pool, timeout=30).forward("t", _request(), 1)  # type: ignore[arg-type]
    assert time.monotonic() - started < 5  # not the 30 s deadline
    assert result.accepted_spans > 0
    (hung,) = pool.hung
    hung.expire()
    assert ingester_failures.labels(members[2], "push")._value.get() == before + 1


def test_a_request_every_replica_refuses_is_refused_with_their_status() -> None:
    members = [f"127.0.0.1:{9000 + i}" for i in range(3)]
    pool = _FakePool({m: "invalid" for m in members})
    with pytest.raises(PushError) as refused:
        RingPusher(_watcher(3, 3), pool, 1).forward("t", _request(), 1)  # type: ignore[arg-type]
    assert refused.value.status == 400


def test_no_ingester_in_the_ring_is_503() -> None:
    with pytest.raises(PushError) as refused:
        RingPusher(_watcher(0, 3), _FakePool(), 1).forward("t", _request(), 1)  # type: ignore[arg-type]
    assert refused.value.status == 503


def test_reads_skip_up_to_quorum_minus_one_dead_ingesters() -> None:
    members = [f"127.0.0.1:{9000 + i}" for i in range(3)]
    table = decode_otlp(_request(2)).table
    pool = _FakePool({members[0]: "dead"})
    pool.tables = [table]
    recent = RingRecentTraces(_watcher(3, 3), pool, 1)  # type: ignore[arg-type]
    assert [t.num_rows for t in recent.find_trace("t", b"\x01" * 16)] == [table.num_rows] * 2
    pool.modes[members[1]] = "dead"
    with pytest.raises(UnavailableError):
        recent.find_trace("t", b"\x01" * 16)
    recent.close()


def test_a_trace_is_looked_up_on_its_replicas_only() -> None:
    from tracelake.ring import ring_key

    pool = _FakePool()
    watcher = _watcher(6, 3)
    recent = RingRecentTraces(watcher, pool, 1)  # type: ignore[arg-type]
    for trace_id in (b"\x01" * 16, b"\x02" * 16, b"\xfe" * 16):
        pool.asked.clear()
        recent.find_trace("t", trace_id)
        assert sorted(pool.asked) == sorted(watcher.ring.replicas(ring_key("t", trace_id)))
        assert len(pool.asked) == 3
    recent.close()


def test_a_hung_replica_does_not_hold_a_lookup_the_others_answered() -> None:
    members = [f"127.0.0.1:{9000 + i}" for i in range(3)]
    table = decode_otlp(_request(2)).table
    pool = _FakePool({members[1]: "hung"})
    pool.tables = [table]
    recent = RingRecentTraces(_watcher(3, 3), pool, 30)  # type: ignore[arg-type]
    started = time.monotonic()
    assert [t.num_rows for t in recent.find_trace("t", b"\x01" * 16)] == [table.num_rows] * 2
    assert time.monotonic() - started < 5  # not the 30 s deadline
    # One more missing than a quorum allows: the answer waits for the hung call's deadline, then 503.
    pool.modes[members[0]] = "dead"
    deadline = threading.Timer(0.3, lambda: [hung.expire() for hung in pool.hung])
    deadline.start()
    with pytest.raises(UnavailableError, match="2 of 3 ingesters did not answer"):
        recent.find_trace("t", b"\x01" * 16)
    deadline.join()
    recent.close()


def test_replicated_spans_are_merged_once_in_arrival_order() -> None:
    table = decode_otlp(_request(5)).table
    merged = dedupe_spans([table, table.slice(3), table])
    assert merged.equals(table)
    assert dedupe_spans([SPAN_SCHEMA.empty_table(), table]).num_rows == table.num_rows


def test_when_every_member_replicates_every_trace_the_request_goes_as_it_came() -> None:
    payload = _request()
    pool = _FakePool()
    RingPusher(_watcher(3, 3), pool, 1).forward("t", payload, 1)  # type: ignore[arg-type]
    assert len(pool.clients) == 3
    assert all(client.received[0].batches == [payload] for client in pool.clients.values())


def test_split_reads_trace_ids_written_after_other_fields() -> None:
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    from tracelake.otlp.wire import len_field

    def span(first: int) -> bytes:
        # name (field 5) before trace_id (field 1): legal protobuf, not how the SDKs write it
        return b"\x2a\x01n" + Span(trace_id=bytes([first]) * 16, span_id=b"\x01" * 8).SerializeToString()

    scope = len_field(2, span(1)) + len_field(2, span(2))
    payload = len_field(1, len_field(2, scope))
    parts = split_by_trace(payload, lambda trace_id: trace_id[0])
    assert set(parts) == {1, 2}
    for owner, part in parts.items():
        (got,) = ExportTraceServiceRequest.FromString(part).resource_spans[0].scope_spans[0].spans
        assert got.trace_id == bytes([owner]) * 16 and got.name == "n"


def test_after_the_members_change_a_lookup_asks_every_ingester_until_placement_settles() -> None:
    """Spans written before a ring change sit on the trace's old replicas until those flushed them:
    for ``placement_settle`` after a change (or after the process started) every ingester is asked."""
    from tracelake.ring import MemberSource, ring_key

    pool = _FakePool()
    watcher = _watcher(6, 3)
    recent = RingRecentTraces(watcher, pool, 1, placement_settle=60)  # type: ignore[arg-type]
    trace_id = b"\x01" * 16
    recent.find_trace("t", trace_id)
    assert sorted(pool.asked) == sorted(watcher.ring.members)  # just started: placement unknown
    watcher.changed_at -= 61
    pool.asked.clear()
    recent.find_trace("t", trace_id)
    assert sorted(pool.asked) == sorted(watcher.ring.replicas(ring_key("t", trace_id)))
    watcher.source = MemberSource([f"127.0.0.1:{9000 + i}" for i in range(7)])  # one more ingester
    assert watcher.refresh_now()
    pool.asked.clear()
    recent.find_trace("t", trace_id)
    assert len(pool.asked) == 7
    recent.close()
