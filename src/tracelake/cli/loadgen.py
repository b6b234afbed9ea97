"""``tracelake loadgen``: realistic synthetic traces (``tracelake.synth``) sent over OTLP/HTTP at a
steady rate, for demos and the deployment in ``deploy/``. Retries what the server refuses with 429/503
(after its ``Retry-After``), as an OpenTelemetry SDK would."""

from __future__ import annotations

import itertools
import logging
import time
import urllib.error
import urllib.request

from tracelake.synth import SynthConfig, generate_request_bytes

log = logging.getLogger("tracelake.loadgen")
_PER_REQUEST = 10  # traces per request


def _post(url: str, payload: bytes, tenant: str | None, timeout: float) -> int:
    headers = {"Content-Type": "application/x-protobuf"}
    if tenant:
        headers["X-Scope-OrgID"] = tenant
    request = urllib.request.Request(url, payload, headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        if exc.code in (429, 503):
            time.sleep(float(exc.headers.get("Retry-After", "1") or 1))
        return exc.code
    except (urllib.error.URLError, OSError):
        time.sleep(1)  # the server is not up yet (or restarting): try again
        return 0


def run_loadgen(
    endpoint: str, traces_per_second: float, seconds: float, tenant: str | None, seed: int
) -> int:
    """Send until ``seconds`` have passed (0: forever); returns how many traces were accepted."""
    url = endpoint.rstrip("/") + "/v1/traces"
    interval = _PER_REQUEST / max(traces_per_second, 0.001)
    deadline = time.monotonic() + seconds if seconds else float("inf")
    accepted = 0
    next_at = time.monotonic()
    for round_ in itertools.count():
        synth = SynthConfig(
            traces=_PER_REQUEST, traces_per_request=_PER_REQUEST, seed=seed + round_, window_seconds=1.0
        )
        payload = next(generate_request_bytes(synth))
        while time.monotonic() < deadline:
            status = _post(url, payload, tenant, timeout=10)
            if status == 200:
                accepted += _PER_REQUEST
                break
        if time.monotonic() >= deadline:
            break
        if round_ % 100 == 0:
            log.info("loadgen", extra={"accepted_traces": accepted, "endpoint": url})
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    return accepted
