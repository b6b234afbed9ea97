"""``tracelake serve``: the single-process server (every receiver, the distributor, the ingester, the
HTTP API on ``server.http_listen_port``) in one asyncio loop, with a bounded graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import entry_points

import uvicorn

from tracelake.asgi import Request, Response, gzip_if_accepted, lifespan, send_response, status_response
from tracelake.backend import open_backend
from tracelake.compactor.service import CompactorService
from tracelake.config import Config
from tracelake.db import TraceDB
from tracelake.errors import ConfigError
from tracelake.ingester.distributor import Distributor
from tracelake.ingester.ingester import Ingester
from tracelake.ingester.limits import Overrides
from tracelake.ingester.receivers import grpc as grpc_receivers
from tracelake.ingester.receivers import jaeger_http, otlp_http, udp, zipkin_http
from tracelake.ingester.receivers.http import HTTPReceiver

log = logging.getLogger(__name__)

# Decoding is C and numpy, but the GIL still serialises much of a push: more threads than cores
# only add contention (measured: 2 threads 100.6k, 8 threads 90.7k spans per CPU-second on 2 cores).
PUSH_THREADS = max(2, os.cpu_count() or 2)


def split_endpoint(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    if not port.isdigit():
        raise ConfigError(f"receiver endpoint {endpoint!r} must be host:port")
    return (host.strip("[]") or "0.0.0.0"), int(port)


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to us: several run in one loop, one shutdown for all."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class APIApp:
    """``server.http_listen_port``: readiness, metrics, build info, and the query API.

    The query side plugs in through the ``tracelake.api`` entry point (``tracelake.querier``), so this
    service never imports it; it hands over the ingester as the source of recent traces.
    """

    def __init__(self, ingester: Ingester, apis: list, executor: ThreadPoolExecutor) -> None:
        self.ingester = ingester
        self.apis = apis
        self.executor = executor

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = Request.from_scope(scope)
        await send_response(send, gzip_if_accepted(request, await self._respond(request)))

    async def _respond(self, request: Request) -> Response:
        path = request.path
        if path == "/ready":
            ready = self.ingester.ready
            return Response(200 if ready else 503, b"ready\n" if ready else b"not ready: replaying the WAL\n")
        common = status_response(path)
        if common is not None:
            return common
        loop = asyncio.get_running_loop()
        for api in self.apis:
            response = await loop.run_in_executor(self.executor, api.handle, request)
            if response is not None:
                return response
        return Response(404, b"not found\n")


def load_apis(cfg: Config, db: TraceDB, ingester: Ingester) -> list:
    return [entry.load()(cfg, db, ingester) for entry in entry_points(group="tracelake.api")]


class WritePathServer:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.db = TraceDB(open_backend(cfg.storage.trace), cfg.storage.trace)
        self.overrides = Overrides(cfg.overrides)
        self.ingester = Ingester(cfg, self.db, self.overrides)
        self.distributor = Distributor(cfg, self.ingester, self.overrides)
        # The compactor shares the backend; its first cycle waits one compaction_cycle.
        self.compactor = None if cfg.compactor.disabled else CompactorService(cfg, self.db.backend)
        self.executor = ThreadPoolExecutor(PUSH_THREADS, thread_name_prefix="push")
        self._stop = asyncio.Event()
        self._grpc: list = []
        self.flushed = False
        self._udp: list[asyncio.DatagramTransport] = []

    def _http_receivers(self) -> dict[str, HTTPReceiver]:
        routes = {
            "otlp_http": otlp_http.ROUTES,
            "zipkin": zipkin_http.ROUTES,
            "jaeger_thrift_http": jaeger_http.ROUTES,
        }
        enabled = self.cfg.distributor.enabled_receivers()
        return {
            name: HTTPReceiver(
                name,
                routes[name],
                self.distributor,
                self.executor,
                multitenancy_enabled=self.cfg.multitenancy_enabled,
                max_body_bytes=self.cfg.distributor.max_request_bytes,
            )
            for name in routes
            if name in enabled
        }

    def _uvicorn(self, app, endpoint: str) -> _Server:
        host, port = split_endpoint(endpoint)
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=max(1, int(self.cfg.server.graceful_shutdown_timeout / 2)),
        )
        return _Server(config)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        server_cfg = self.cfg.server
        api = self._uvicorn(
            APIApp(self.ingester, load_apis(self.cfg, self.db, self.ingester), self.executor),
            f"{server_cfg.http_listen_address}:{server_cfg.http_listen_port}",
        )
        api_task = asyncio.create_task(api.serve())
        await loop.run_in_executor(None, self.ingester.start)  # replays the WAL; /ready says 503 meanwhile
        enabled = self.cfg.distributor.enabled_receivers()
        receivers = [self._uvicorn(app, enabled[name]) for name, app in self._http_receivers().items()]
        tasks = [asyncio.create_task(r.serve()) for r in receivers]
        self._grpc = [
            grpc_receivers.build_server(
                name,
                enabled[name],
                self.distributor,
                self.executor,
                multitenancy_enabled=self.cfg.multitenancy_enabled,
                max_message_bytes=self.cfg.distributor.max_request_bytes,
            )
            for name in grpc_receivers.METHODS
            if name in enabled
        ]
        for server in self._grpc:
            await server.start()
        self._udp = []
        for name in udp.PROTOCOLS:
            if name in enabled:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda name=name: udp.AgentProtocol(name, self.distributor, self.executor),
                    local_addr=split_endpoint(enabled[name]),
                )
                self._udp.append(transport)
        if self.compactor is not None:  # last, once the receivers are up
            self.compactor.start(first_delay=self.cfg.compactor.compaction.compaction_cycle)
        log.info(
            "tracelake started",
            extra={"receivers": ",".join(enabled), "api_port": server_cfg.http_listen_port},
        )
        stop_wait = asyncio.create_task(self._stop.wait())
        done, _ = await asyncio.wait([stop_wait, api_task, *tasks], return_when=asyncio.FIRST_COMPLETED)
        if stop_wait not in done:  # a server died (e.g. its port is taken): stop the rest
            log.error("a server stopped unexpectedly; shutting down")
        return await self._shutdown(api, receivers, [api_task, *tasks])

    async def _shutdown(self, api: _Server, receivers: list[_Server], tasks: list[asyncio.Task]) -> int:
        deadline = time.monotonic() + self.cfg.server.graceful_shutdown_timeout
        log.info("shutting down: receivers stop, then the ingester flushes")
        for server in receivers:
            server.should_exit = True
        for transport in self._udp:
            transport.close()
        grace = max(0.1, (deadline - time.monotonic()) / 2)
        await asyncio.gather(*(server.stop(grace) for server in self._grpc))
        if tasks[1:]:
            await asyncio.wait(tasks[1:], timeout=grace)
        loop = asyncio.get_running_loop()
        flushed = await loop.run_in_executor(
            None, self.ingester.shutdown, max(0.0, deadline - time.monotonic())
        )
        api.should_exit = True
        await asyncio.wait(tasks[:1], timeout=2)
        self.executor.shutdown(wait=False, cancel_futures=True)
        if self.compactor is not None:
            await loop.run_in_executor(None, self.compactor.stop)
        self.db.close()
        log.info("stopped", extra={"flushed": flushed})
        return 0


def run_server(cfg: Config) -> int:
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is installed with uvicorn[standard]
        factory = None
    server = WritePathServer(cfg)
    with asyncio.Runner(loop_factory=factory) as runner:
        code = runner.run(server.run())
    if not server.flushed:
        # A block write still running (e.g. retrying an unreachable store) sits in threads the
        # interpreter would wait for at exit; the WAL holds those spans, so leave now.
        logging.shutdown()
        os._exit(code)
    return code
