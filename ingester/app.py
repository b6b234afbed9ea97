"""``tracelake serve``: the single-process server (every receiver, the distributor, the ingester, the
HTTP API on ``server.http_listen_port``) in one asyncio loop, with a bounded graceful shutdown.

The same server runs the write path's roles alone: ``distributor`` (receivers and limits; spans go to
the ring's ingesters over RPC) and ``ingester`` (the ingester behind its gRPC service on
``server.grpc_listen_port``, no receivers)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import entry_points

from tracelake.backend import open_backend
from tracelake.config import Config
from tracelake.db import TraceDB
from tracelake.errors import ConfigError
from tracelake.ingester.distributor import Distributor
from tracelake.ingester.ingester import Ingester
from tracelake.ingester.limits import Overrides
from tracelake.ingester.receivers import grpc as grpc_receivers
from tracelake.ingester.receivers import jaeger_http, otlp_http, udp, zipkin_http
from tracelake.ingester.receivers.http import HTTPReceiver
from tracelake.ingester.rpc_server import IngesterService
from tracelake.ingester.rpc_server import build_server as build_ingester_server
from tracelake.service import ServiceApp, UvicornServer, load_background, split_endpoint, uvicorn_server

log = logging.getLogger(__name__)

# Decoding is C and numpy, but the GIL still serialises much of a push: more threads than cores
# only add contention (measured: 2 threads 100.6k, 8 threads 90.7k spans per CPU-second on 2 cores).
PUSH_THREADS = max(2, os.cpu_count() or 2)


def load_apis(cfg: Config, db: TraceDB, ingester: Ingester) -> list:
    return [entry.load()(cfg, db, ingester) for entry in entry_points(group="tracelake.api")]


WRITE_TARGETS = ("all", "distributor", "ingester")


class WritePathServer:
    def __init__(self, cfg: Config, target: str = "all") -> None:
        if target not in WRITE_TARGETS:
            raise ConfigError(f"target {target!r} is not one of the write path's {', '.join(WRITE_TARGETS)}")
        self.cfg = cfg
        self.target = target
        self.overrides = Overrides(cfg.overrides)
        self.cluster = None
        self.db: TraceDB | None = None
        self.ingester: Ingester | None = None
        if target == "distributor":
            from tracelake.rpc.cluster import connect

            self.cluster = connect(cfg)
            self.distributor = Distributor(cfg, None, self.overrides, forward=self.cluster.pusher())
        else:
            self.db = TraceDB(open_backend(cfg.storage.trace), cfg.storage.trace)
            self.ingester = Ingester(cfg, self.db, self.overrides, update_index=target == "all")
            self.distributor = Distributor(cfg, self.ingester, self.overrides)
        # The all-in-one runs the background services too (the compactor, sharing the backend); in
        # microservices mode each is a role of its own (`tracelake compactor`).
        self.background = (
            load_background(cfg, self.db.backend) if target == "all" and self.db is not None else []
        )
        self.executor = ThreadPoolExecutor(PUSH_THREADS, thread_name_prefix="push")
        self._stop = asyncio.Event()
        self._grpc: list = []
        self.flushed = False
        # Ready only once every receiver listens: a client that waited for /ready must not be refused.
        self._listening = False
        self._receivers: list[UvicornServer] = []
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

    def _uvicorn(self, app, endpoint: str) -> UvicornServer:
        return uvicorn_server(app, endpoint, self.cfg.server.graceful_shutdown_timeout / 2)

    def _ready(self) -> str | None:
        if self.ingester is not None and not self.ingester.ready:
            return "replaying the WAL"
        if not self._listening or not all(server.started for server in self._receivers):
            return "starting the receivers"
        if self.cluster is not None and not self.cluster.watcher.ring.members:
            return "no ingester in the ring (ingester.lifecycler.ring.members)"
        return None

    def _service_app(self) -> ServiceApp:
        ring_view = self.cluster.watcher.view if self.cluster is not None else None
        if self.target == "all":
            assert self.db is not None and self.ingester is not None
            apis = load_apis(self.cfg, self.db, self.ingester)
        else:  # the query API is the querier role's
            apis = []
        return ServiceApp(self.cfg, self._ready, apis, self.executor, ring_view)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        server_cfg = self.cfg.server
        api = self._uvicorn(
            self._service_app(), f"{server_cfg.http_listen_address}:{server_cfg.http_listen_port}"
        )
        api_task = asyncio.create_task(api.serve())
        if self.ingester is not None:  # replays the WAL; /ready says 503 meanwhile
            await loop.run_in_executor(None, self.ingester.start)
        if self.target == "ingester":
            self._grpc = [self._ingester_service()]
            for server in self._grpc:
                await server.start()
            return await self._serve_until_stopped(api, [], [api_task])
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
        for service in self.background:  # last, once the receivers are up
            service.start()
        return await self._serve_until_stopped(api, receivers, [api_task, *tasks])

    def _ingester_service(self):
        assert self.ingester is not None
        server_cfg = self.cfg.server
        endpoint = f"{server_cfg.http_listen_address}:{server_cfg.grpc_listen_port}"
        return build_ingester_server(
            IngesterService(self.ingester, self.executor), endpoint, self.cfg.distributor.max_request_bytes
        )

    async def _serve_until_stopped(
        self, api: UvicornServer, receivers: list[UvicornServer], tasks: list[asyncio.Task]
    ) -> int:
        """Until SIGTERM/SIGINT or a server dies; ``tasks[0]`` serves the API and stops last."""
        server_cfg = self.cfg.server
        self._receivers = receivers
        self._listening = True
        log.info(
            "tracelake started",
            extra={
                "target": self.target,
                "receivers": ",".join(self.cfg.distributor.enabled_receivers()) if receivers else "",
                "api_port": server_cfg.http_listen_port,
                "grpc_port": server_cfg.grpc_listen_port if self.target == "ingester" else "",
            },
        )
        stop_wait = asyncio.create_task(self._stop.wait())
        done, _ = await asyncio.wait([stop_wait, *tasks], return_when=asyncio.FIRST_COMPLETED)
        if stop_wait not in done:  # a server died (e.g. its port is taken): stop the rest
            log.error("a server stopped unexpectedly; shutting down")
        return await self._shutdown(api, receivers, tasks)

    async def _shutdown(
        self, api: UvicornServer, receivers: list[UvicornServer], tasks: list[asyncio.Task]
    ) -> int:
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
        flushed = True
        if self.ingester is not None:
            flushed = await loop.run_in_executor(
                None, self.ingester.shutdown, max(0.0, deadline - time.monotonic())
            )
        self.flushed = flushed  # run_server leaves with os._exit only when a block write is stuck
        api.should_exit = True
        await asyncio.wait(tasks[:1], timeout=2)
        self.executor.shutdown(wait=False, cancel_futures=True)
        for service in self.background:
            await loop.run_in_executor(None, service.stop)
        if self.db is not None:
            self.db.close()
        if self.cluster is not None:
            self.cluster.close()
        log.info("stopped", extra={"flushed": flushed})
        return 0


def run_server(cfg: Config, target: str = "all") -> int:
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is installed with uvicorn[standard]
        factory = None
    server = WritePathServer(cfg, target)
    with asyncio.Runner(loop_factory=factory) as runner:
        code = runner.run(server.run())
    if not server.flushed:
        # A block write still running (e.g. retrying an unreachable store) sits in threads the
        # interpreter would wait for at exit; the WAL holds those spans, so leave now.
        logging.shutdown()
        os._exit(code)
    return code
