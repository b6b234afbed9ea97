"""``tracelake query-frontend``: the frontend's HTTP server — Tempo's API on ``server.http_listen_port``
with every role's ``/ready``, ``/metrics``, ``/status``, ``/api/echo`` and build info — stopped cleanly
by SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor

from tracelake.backend import open_backend
from tracelake.config import Config
from tracelake.db import TraceDB
from tracelake.querier.frontend.api import FrontendAPI
from tracelake.querier.frontend.pool import QuerierPool
from tracelake.service import ServiceApp, uvicorn_server

log = logging.getLogger("tracelake.frontend")


def run_frontend(cfg: Config) -> int:
    fe = cfg.query_frontend
    db = TraceDB(open_backend(cfg.storage.trace), cfg.storage.trace)
    pool = QuerierPool(fe.querier_addresses, fe.query_timeout, fe.max_retries)
    executor = ThreadPoolExecutor(16, thread_name_prefix="frontend")
    view = {"querier_addresses": fe.querier_addresses, "queriers": [f"{h}:{p}" for h, p in pool.members()]}
    app = ServiceApp(cfg, lambda: None, [FrontendAPI(cfg, db, pool)], executor, ring_view=lambda: view)
    endpoint = f"{cfg.server.http_listen_address}:{cfg.server.http_listen_port}"
    server = uvicorn_server(app, endpoint, cfg.server.graceful_shutdown_timeout)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
        log.info(
            "query-frontend listening",
            extra={"endpoint": endpoint, "queriers": ",".join(fe.querier_addresses)},
        )
        await server.serve()

    try:
        asyncio.run(serve())
    finally:
        pool.close()
        executor.shutdown(wait=False, cancel_futures=True)
        db.close()
    log.info("query-frontend stopped")
    return 0
