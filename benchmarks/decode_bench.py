"""OTLP decode throughput: upb parse alone vs the C column decoder vs the pure-Python fallback.

    python benchmarks/decode_bench.py [--spans N]

Input: realistic synthetic export requests from ``tracelake.synth`` (5 services, 10 attributes per span,
100 traces per request; a built-in generator of the same shape if synth is unavailable). Figures are
spans per CPU-second of this process (``time.process_time``), each the best of a few repetitions; the
Python fallback runs on a slice of the data to keep the run short.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tracelake.codec.assemble import assemble
from tracelake.codec.pydecode import decode_request_py

try:
    from tracelake.codec.cdecode import decode_request_c
except ImportError:  # extension not built
    decode_request_c = None


def _requests(spans: int) -> tuple[list[bytes], int]:
    try:
        requests = _synth_requests(spans)
    except Exception as exc:
        print(f"(tracelake.synth unusable: {exc!r}; using the built-in generator)")
        requests = _fallback_requests(spans)
    n = sum(len(s.spans) for r in requests for rs in _parse(r).resource_spans for s in rs.scope_spans)
    return requests, n


def _synth_requests(spans: int) -> list[bytes]:
    from tracelake.synth import SynthConfig, generate_request_bytes

    cfg = SynthConfig(
        traces=max(1, spans // 10),  # ~10 spans per trace on average
        services=5,
        attributes_per_span=10,
        traces_per_request=100,
        start_unix_nano=1_700_000_000 * 10**9,
        seed=1,
    )
    return list(generate_request_bytes(cfg))


def _fallback_requests(spans: int) -> list[bytes]:
    """Requests of 100 traces x 10 spans over 5 services, 10 attributes per span; 8 distinct, cycled."""
    rng = random.Random(1)
    distinct = []
    for _ in range(8):
        req = ExportTraceServiceRequest()
        by_service = {}
        for svc in range(5):
            rs = req.resource_spans.add()
            for key, value in (
                ("service.name", f"service-{svc}"),
                ("service.version", "1.4.2"),
                ("telemetry.sdk.language", "java"),
                ("telemetry.sdk.name", "opentelemetry"),
                ("k8s.pod.name", f"service-{svc}-7d9f8b-{rng.randrange(10**5)}"),
            ):
                rs.resource.attributes.add(key=key).value.string_value = value
            ss = rs.scope_spans.add()
            ss.scope.name, ss.scope.version = "io.opentelemetry.http", "2.1.0"
            by_service[svc] = ss
        for _ in range(100):
            trace_id, t0 = rng.randbytes(16), 1_700_000_000 * 10**9 + rng.randrange(10**12)
            parent = b""
            for i in range(10):
                span = by_service[rng.randrange(5)].spans.add(
                    trace_id=trace_id,
                    span_id=rng.randbytes(8),
                    parent_span_id=parent,
                    name=f"GET /api/v1/items/{{id}}/{i}",
                    kind=2,
                    start_time_unix_nano=t0 + i * 1000,
                    end_time_unix_nano=t0 + 10**6 - i * 1000,
                    flags=0x100,
                )
                parent = span.span_id
                attrs = span.attributes
                attrs.add(key="http.request.method").value.string_value = "GET"
                attrs.add(key="http.route").value.string_value = "/api/v1/items/{id}"
                attrs.add(
                    key="url.full"
                ).value.string_value = f"https://shop/api/v1/items/{rng.randrange(10**6)}"
                attrs.add(key="http.response.status_code").value.int_value = 200
                attrs.add(key="server.address").value.string_value = "shop.example.com"
                attrs.add(key="server.port").value.int_value = 443
                attrs.add(key="network.protocol.version").value.string_value = "1.1"
                attrs.add(key="user.id").value.string_value = f"user-{rng.randrange(10**5)}"
                attrs.add(key="thread.id").value.int_value = rng.randrange(200)
                attrs.add(key="sampled").value.bool_value = True
        distinct.append(req.SerializeToString())
    return [distinct[i % len(distinct)] for i in range(max(1, spans // 1000))]


def _parse(data: bytes) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest.FromString(data)


def _cpu_seconds(fn: Callable[[bytes], object], requests: list[bytes], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        for data in requests:
            fn(data)
        best = min(best, time.process_time() - start)
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spans", type=int, default=200_000, help="spans to decode (default 200000)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions, best kept (default 3)")
    args = parser.parse_args(argv)

    requests, n_spans = _requests(args.spans)
    size = sum(map(len, requests))
    print(
        f"{n_spans} spans in {len(requests)} requests, {size / 2**20:.1f} MiB "
        f"({size / n_spans:.0f} B/span), python {sys.version.split()[0]}"
    )

    # the Python fallback is ~20x slower: time it on a slice
    py_requests = requests[: max(1, len(requests) // 10)]
    py_spans = sum(decode_request_py(r).n_spans for r in py_requests)

    rows: list[tuple[str, int, float]] = [
        ("upb ParseFromString only", n_spans, _cpu_seconds(_parse, requests, args.repeat))
    ]
    if decode_request_c is not None:
        rows.append(("C decode -> RawSpans", n_spans, _cpu_seconds(decode_request_c, requests, args.repeat)))
        rows.append(
            (
                "C decode + assemble",
                n_spans,
                _cpu_seconds(lambda data: assemble(decode_request_c(data)), requests, args.repeat),
            )
        )
    else:
        print("(C extension not built: skipping the C decoder)")
    rows.append(("Python fallback -> RawSpans", py_spans, _cpu_seconds(decode_request_py, py_requests, 1)))

    base = rows[0][1] / rows[0][2]
    print(f"\n| {'decoder':<28} | {'spans':>8} | {'CPU s':>7} | {'spans/CPU-s':>12} | {'vs upb':>6} |")
    print(f"|{'-' * 30}|{'-' * 9}:|{'-' * 8}:|{'-' * 13}:|{'-' * 7}:|")
    for name, spans, seconds in rows:
        rate = spans / seconds if seconds > 0 else float("inf")
        print(f"| {name:<28} | {spans:>8} | {seconds:>7.3f} | {rate:>12,.0f} | {rate / base:>5.2f}x |")


if __name__ == "__main__":
    main()
