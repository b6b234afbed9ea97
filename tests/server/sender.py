"""Send synthetic OTLP requests and remember exactly which spans the server acknowledged."""

from __future__ import annotations

import http.client
import threading
from collections import Counter

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tracelake.synth import SynthConfig, generate_request_bytes


def span_ids(payload: bytes) -> list[tuple[bytes, bytes]]:
    request = ExportTraceServiceRequest.FromString(payload)
    return [
        (s.trace_id, s.span_id) for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans
    ]


def post(port: int, payload: bytes, timeout: float = 10) -> int:
    """POST one OTLP/HTTP protobuf request; the status, or 0 when the connection failed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/v1/traces", payload, {"Content-Type": "application/x-protobuf"})
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        conn.close()


class Sender:
    """A thread posting requests until stopped; ``acked`` holds the spans of every 200 answer."""

    def __init__(self, port: int, seed: int, traces: int = 100_000) -> None:
        self.port = port
        self.payloads = generate_request_bytes(SynthConfig(traces=traces, traces_per_request=5, seed=seed))
        self.acked: Counter[tuple[bytes, bytes]] = Counter()
        self.unacked: Counter[tuple[bytes, bytes]] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for payload in self.payloads:
            if self._stop.is_set():
                return
            target = self.acked if post(self.port, payload) == 200 else self.unacked
            target.update(span_ids(payload))

    def start(self) -> Sender:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
