"""The frontend's querier pool over real HTTP: a dead querier's job is retried on another, a slow
one is hedged and the first answer wins, a 4xx is the answer (not retried)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import REGISTRY

from tests.conftest import free_port
from tracelake.querier.frontend.pool import Job, JobFailed, QuerierPool


def _metric(name: str, op: str) -> float:
    return REGISTRY.get_sample_value(name, {"op": op}) or 0.0


@pytest.fixture
def querier():
    """An HTTP server whose first request of a path hangs until released; later ones answer at once."""
    seen: dict[str, int] = {}
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            count = seen[self.path] = seen.get(self.path, 0) + 1
            if self.path.startswith("/slow") and count == 1:
                release.wait(10)
                body = b"slow"
            elif self.path.startswith("/bad"):
                self.send_response(400)
                self.end_headers()
                self.wfile.write(b"bad request")
                return
            else:
                body = b"fast"
            self.send_response(200)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}", seen
    release.set()
    server.shutdown()


def test_a_dead_querier_is_retried_on_another(querier) -> None:
    address, _ = querier
    dead = f"127.0.0.1:{free_port()}"
    pool = QuerierPool([dead, address], timeout=5, max_retries=2)
    before = _metric("tracelake_query_frontend_retries_total", "t1")
    answers = [pool.run(Job("t1", f"/ok/{i}", {}, {})) for i in range(4)]
    assert [a.body for a in answers] == [b"fast"] * 4
    # the first job to meet the dead querier is retried; the dead one is then avoided for a while
    assert _metric("tracelake_query_frontend_retries_total", "t1") == before + 1
    pool.close()


def test_a_slow_job_is_hedged_and_the_first_answer_wins(querier) -> None:
    address, seen = querier
    pool = QuerierPool([address, address], timeout=15, max_retries=0)
    before = _metric("tracelake_query_frontend_hedged_requests_total", "t2")
    answer = pool.run(Job("t2", "/slow/1", {}, {}), hedge_at=0.2, hedge_up_to=2)
    assert answer.body == b"fast" and seen["/slow/1"] == 2
    assert _metric("tracelake_query_frontend_hedged_requests_total", "t2") == before + 1
    pool.close()


def test_client_errors_are_answers_and_total_failure_is_an_error(querier) -> None:
    address, seen = querier
    pool = QuerierPool([address], timeout=5, max_retries=2)
    answer = pool.run(Job("t3", "/bad", {}, {}))
    assert answer.status == 400 and seen["/bad"] == 1  # not retried
    nobody = QuerierPool([f"127.0.0.1:{free_port()}"], timeout=2, max_retries=1)
    with pytest.raises(JobFailed, match=r"127\.0\.0\.1"):
        nobody.run(Job("t3", "/ok", {}, {}))
    pool.close()
    nobody.close()


@pytest.fixture
def keep_alive():
    """An HTTP/1.1 server that keeps connections open, except that it closes one after answering
    ``/then-close`` (without saying so, as a keep-alive timeout does); the client ports it saw."""
    ports: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            ports.append(self.client_address[1])
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
            if self.path.startswith("/then-close"):
                self.wfile.flush()
                self.close_connection = True

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}", ports
    server.shutdown()


def test_jobs_reuse_a_kept_alive_connection(keep_alive) -> None:
    address, ports = keep_alive
    pool = QuerierPool([address], timeout=5, max_retries=0)
    assert [pool.run(Job("t4", f"/ok/{i}", {}, {})).body for i in range(5)] == [b"ok"] * 5
    assert len(ports) == 5 and len(set(ports)) == 1  # one connection for the five jobs
    pool.close()


def test_a_connection_the_querier_closed_while_idle_is_replaced_not_counted_a_failure(keep_alive) -> None:
    address, ports = keep_alive
    pool = QuerierPool([address], timeout=5, max_retries=0)  # no retry: a failure would raise
    assert pool.run(Job("t5", "/then-close", {}, {})).body == b"ok"
    time.sleep(0.2)  # the server has closed its end of the idle connection
    assert pool.run(Job("t5", "/ok", {}, {})).body == b"ok"
    assert len(set(ports)) == 2 and _metric("tracelake_query_frontend_failed_jobs_total", "t5") == 0
    pool.close()
