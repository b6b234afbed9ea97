"""The querier role: the query API on ``server.http_listen_port``, reading the blocks from the backend
and recent spans from every ingester of the ring over RPC (``tracelake.rpc.recent``)."""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import entry_points

from tracelake.backend import open_backend
from tracelake.config import Config
from tracelake.db import TraceDB
from tracelake.rpc.cluster import connect
from tracelake.service import ServiceApp, uvicorn_server

log = logging.getLogger(__name__)


async def _serve(cfg: Config) -> int:
    db = TraceDB(open_backend(cfg.storage.trace), cfg.storage.trace)
    cluster = connect(cfg)
    recent = cluster.recent()
    executor = ThreadPoolExecutor(8, thread_name_prefix="query")
    apis = [entry.load()(cfg, db, recent) for entry in entry_points(group="tracelake.api")]
    app = ServiceApp(cfg, lambda: None, apis, executor, cluster.watcher.view)
    server_cfg = cfg.server
    server = uvicorn_server(
        app,
        f"{server_cfg.http_listen_address}:{server_cfg.http_listen_port}",
        server_cfg.graceful_shutdown_timeout,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(server.serve())
    log.info(
        "tracelake started",
        extra={
            "target": "querier",
            "api_port": server_cfg.http_listen_port,
            "ingesters": len(cluster.watcher.ring.members),
        },
    )
    stop_wait = asyncio.create_task(stop.wait())
    await asyncio.wait([stop_wait, task], return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    await asyncio.wait([task], timeout=server_cfg.graceful_shutdown_timeout)
    recent.close()
    cluster.close()
    executor.shutdown(wait=False, cancel_futures=True)
    db.close()
    log.info("stopped")
    return 0


def run(cfg: Config) -> int:
    """Entry point (``tracelake.roles``: querier)."""
    return asyncio.run(_serve(cfg))
