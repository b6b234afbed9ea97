"""``tracelake loadgen`` against a real server: what it reports as accepted is there to be found."""

from __future__ import annotations

import json
from pathlib import Path

from tests.querier.test_trace_by_id_api import HOLD, get
from tests.server.harness import Server
from tracelake.cli.loadgen import run_loadgen


def test_loadgen_sends_recent_traces_the_server_holds(tmp_path: Path) -> None:
    server = Server(tmp_path, receivers=("otlp_http",), extra=HOLD).start()
    try:
        accepted = run_loadgen(
            server.url("otlp_http"), traces_per_second=40, seconds=1.5, tenant=None, seed=3
        )
        assert accepted >= 10 and accepted % 10 == 0
        status, _, body = get(server, "/api/search?limit=1000")  # no range: the ingester's recent data
        assert status == 200
        assert len(json.loads(body)["traces"]) == accepted
    finally:
        server.stop()
