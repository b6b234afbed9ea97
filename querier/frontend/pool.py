"""The queriers a frontend sends jobs to, over HTTP: addresses from config (``host:port``) or DNS
(``dns+name:port``: every address the name resolves to, re-resolved every ``_RESOLVE_SECONDS``, as a
Kubernetes headless service lists its pods), taken in turn.

A job that fails (no connection, a timeout, a 5xx) is sent again to a querier it has not tried, up to
``max_retries`` times (a querier that refused a connection is avoided for a few seconds); one that
has not answered after ``hedge_at`` seconds is also sent to another querier (up to ``hedge_up_to``
copies in flight) and the first answer wins.
"""

from __future__ import annotations

import http.client
import itertools
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from urllib.parse import urlencode

from tracelake.querier.frontend import metrics
from tracelake.ring.members import MemberSource

_RESOLVE_SECONDS = 15.0
_IDLE_PER_QUERIER = 64  # idle keep-alive connections kept per querier; more are closed
# what a request on a kept-alive connection the querier has closed raises (no answer was read)
_CLOSED_BY_PEER = (
    http.client.RemoteDisconnected,
    ConnectionResetError,
    BrokenPipeError,
    ConnectionAbortedError,
)
_DOWN_SECONDS = 5.0  # a querier that refused a connection is avoided this long


@dataclass(frozen=True)
class Job:
    op: str  # "trace_by_id", "search", ... (metrics label)
    path: str
    params: dict[str, str]
    headers: dict[str, str]

    @property
    def target(self) -> str:
        return self.path + ("?" + urlencode(self.params) if self.params else "")


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes


class JobFailed(Exception):
    """Every attempt of a job failed; the message says how the last one did."""


class _Connections:
    """Idle keep-alive HTTP connections per querier, for any thread to take one and give it back."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._idle: dict[tuple[str, int], list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def new(self, member: tuple[str, int]) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(member[0], member[1], timeout=self.timeout)

    def take(self, member: tuple[str, int]) -> tuple[http.client.HTTPConnection, bool]:
        """An idle connection (True: it was used before, the querier may have closed it) or a new one."""
        with self._lock:
            idle = self._idle.get(member)
            if idle:
                return idle.pop(), True
        return self.new(member), False

    def give(self, member: tuple[str, int], conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(member, [])
            if not self._closed and len(idle) < _IDLE_PER_QUERIER:
                idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for conn in conns:
            conn.close()


def _host_port(member: str) -> tuple[str, int]:
    host, _, port = member.rpartition(":")
    return host.strip("[]"), int(port)


class QuerierPool:
    def __init__(self, addresses: list[str], timeout: float, max_retries: int, threads: int = 32) -> None:
        self.addresses = addresses
        self.timeout = timeout
        self.max_retries = max_retries
        # jobs wait on their attempts: two pools, so waiting jobs can never starve the attempts
        self._jobs = ThreadPoolExecutor(threads, thread_name_prefix="frontend-job")
        self._attempts = ThreadPoolExecutor(threads * 2, thread_name_prefix="frontend-attempt")
        self._lock = threading.Lock()
        self._source = MemberSource(addresses)  # static and dns+ entries, as the ingesters' ring
        self._members: list[tuple[str, int]] = []
        self._resolved_at = 0.0
        self._turn = itertools.count()
        self._down: dict[tuple[str, int], float] = {}  # querier -> until when it is avoided
        self._connections = _Connections(timeout)

    def close(self) -> None:
        self._jobs.shutdown(wait=False, cancel_futures=True)
        self._attempts.shutdown(wait=False, cancel_futures=True)
        self._connections.close()

    def members(self) -> list[tuple[str, int]]:
        with self._lock:
            if not self._members or time.monotonic() - self._resolved_at > _RESOLVE_SECONDS:
                # a DNS hiccup keeps the last answer (MemberSource logs it)
                self._members = [_host_port(m) for m in self._source.members()] or self._members
                self._resolved_at = time.monotonic()
            return list(self._members)

    def _next(self, tried: set[tuple[str, int]]) -> tuple[str, int]:
        """The next querier in turn, skipping those this job already tried and those that failed
        recently (unless nothing else is left)."""
        members = self.members()
        if not members:
            raise JobFailed("no querier addresses (query_frontend.querier_addresses)")
        now = time.monotonic()
        with self._lock:
            healthy = [m for m in members if self._down.get(m, 0.0) <= now]
        for candidates in (
            [m for m in healthy if m not in tried],
            [m for m in members if m not in tried],
            members,
        ):
            if candidates:
                return candidates[next(self._turn) % len(candidates)]
        raise AssertionError("unreachable")

    def _mark_down(self, member: tuple[str, int]) -> None:
        with self._lock:
            self._down[member] = time.monotonic() + _DOWN_SECONDS

    def _once(self, job: Job, member: tuple[str, int]) -> Answer:
        """The job on a kept-alive connection to ``member`` (a new one when none is idle): a new
        connection per job cost the frontend more CPU than the rest of a lookup."""
        conn, reused = self._connections.take(member)
        try:
            return self._exchange(conn, job, member)
        except _CLOSED_BY_PEER:
            if not reused:
                raise
        # the querier closed the idle connection meanwhile (keep-alive timeout, restart): a new one
        return self._exchange(self._connections.new(member), job, member)

    def _exchange(self, conn: http.client.HTTPConnection, job: Job, member: tuple[str, int]) -> Answer:
        """One request and its answer; the connection goes back to the idle ones only when whole."""
        try:
            conn.request("GET", job.target, headers=job.headers)
            response = conn.getresponse()
            body = response.read()
        except BaseException:
            conn.close()
            raise
        if response.will_close:
            conn.close()
        else:
            self._connections.give(member, conn)
        return Answer(response.status, response.getheader("content-type", ""), body)

    def _attempt(self, job: Job, tried: set[tuple[str, int]]) -> Answer:
        """One try on a querier this job has not tried; raises on what is worth another try."""
        member = self._next(tried)
        tried.add(member)
        try:
            answer = self._once(job, member)
        except (OSError, http.client.HTTPException) as exc:
            self._mark_down(member)
            raise JobFailed(f"querier {member[0]}:{member[1]}: {exc}") from exc
        if answer.status >= 500:
            raise JobFailed(
                f"querier {member[0]}:{member[1]} answered {answer.status}: {answer.body[:200]!r}"
            )
        return answer

    def run(self, job: Job, hedge_at: float | None = None, hedge_up_to: int = 1) -> Answer:
        """The job's answer (4xx included: the request itself is wrong), retried and hedged."""
        metrics.jobs.labels(job.op).inc()
        last: Exception | None = None
        tried: set[tuple[str, int]] = set()
        for attempt in range(self.max_retries + 1):
            if attempt:
                metrics.retries.labels(job.op).inc()
            try:
                return self._hedged(job, hedge_at, hedge_up_to, tried)
            except JobFailed as exc:
                last = exc
        metrics.failed.labels(job.op).inc()
        raise JobFailed(str(last))

    def _hedged(
        self, job: Job, hedge_at: float | None, hedge_up_to: int, tried: set[tuple[str, int]]
    ) -> Answer:
        pending: set[Future[Answer]] = {self._attempts.submit(self._attempt, job, tried)}
        copies = 1
        error: Exception | None = None
        while pending:
            timeout = hedge_at if hedge_at and copies < hedge_up_to else None
            done, pending = wait(pending, timeout=timeout, return_when=FIRST_COMPLETED)
            for future in done:
                try:
                    return future.result()
                except JobFailed as exc:
                    error = exc
            if not done and copies < hedge_up_to:  # slow: ask another querier as well
                metrics.hedged.labels(job.op).inc()
                pending.add(self._attempts.submit(self._attempt, job, tried))
                copies += 1
        raise JobFailed(str(error))

    def run_all(self, jobs: list[Job], hedge_at: float | None = None, hedge_up_to: int = 1) -> list[Answer]:
        """Every job at once, answers in job order; raises JobFailed when one fails every attempt (a
        partial answer would be silently wrong)."""
        futures = [self._jobs.submit(self.run, job, hedge_at, hedge_up_to) for job in jobs]
        return [future.result() for future in futures]
