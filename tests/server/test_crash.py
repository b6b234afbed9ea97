"""SIGKILL the server at random moments and at every flush step; every acknowledged span ends up stored
exactly once, and no span is ever stored twice."""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.server.harness import Server
from tests.server.sender import Sender, post, span_ids
from tracelake.synth import SynthConfig, generate_request_bytes

FAST_CUTS = {
    "ingester": {"trace_idle_period": "200ms", "max_block_duration": "400ms", "flush_check_period": "100ms"}
}


def _stored(server: Server) -> Counter:
    spans = server.stored_spans()
    return Counter(zip(spans["trace_id"].to_pylist(), spans["span_id"].to_pylist(), strict=True))


def _check(stored: Counter, acked: Counter) -> None:
    duplicated = {k: n for k, n in stored.items() if n > 1}
    assert not duplicated, f"{len(duplicated)} span(s) stored more than once"
    lost = [k for k in acked if k not in stored]
    assert not lost, f"{len(lost)} acknowledged span(s) lost"


@pytest.mark.parametrize(
    "failpoint", ["flush.after_journal", "block.before_meta", "flush.after_meta", "flush.after_cleanup"]
)
def test_kill_at_each_flush_step(tmp_path: Path, failpoint: str) -> None:
    server = Server(
        tmp_path, receivers=("otlp_http",), extra=FAST_CUTS, env={"TRACELAKE_FAILPOINT": failpoint}
    )
    server.start()
    acked: Counter = Counter()
    for payload in generate_request_bytes(SynthConfig(traces=40, traces_per_request=5, seed=1)):
        if post(server.ports["otlp_http"], payload) == 200:
            acked.update(span_ids(payload))
        else:
            break  # the server killed itself at the failpoint
    assert acked, "nothing was acknowledged before the crash"
    assert server.proc.wait(30) == -9, "the failpoint should have killed the server"
    server.env = {}
    server.start()
    assert server.stop() == 0
    _check(_stored(server), acked)


def test_random_sigkills_while_sending(tmp_path: Path) -> None:
    server = Server(tmp_path, receivers=("otlp_http",), extra=FAST_CUTS).start()
    rng = random.Random(7)
    acked: Counter = Counter()
    for round_ in range(5):
        sender = Sender(server.ports["otlp_http"], seed=round_).start()
        time.sleep(rng.uniform(0.3, 1.5))
        server.kill()
        sender.stop()
        acked.update(sender.acked)
        server.start()
    assert server.stop() == 0
    assert len(acked) > 1000, "the test should have sent a meaningful number of spans"
    _check(_stored(server), acked)
