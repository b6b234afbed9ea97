"""``tracelake query-frontend``: the frontend's HTTP server (Tempo's API on ``server.http_listen_port``,
plus ``/ready``, ``/metrics``, ``/api/echo``, build info)."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

import uvicorn

from tracelake.asgi import Request, Response, gzip_if_accepted, lifespan, send_response, status_response
from tracelake.backend import open_backend
from tracelake.config import Config
from tracelake.db import TraceDB
from tracelake.querier.frontend.api import FrontendAPI
from tracelake.querier.frontend.pool import QuerierPool

log = logging.getLogger("tracelake.frontend")


class FrontendApp:
    def __init__(self, api: FrontendAPI, executor: ThreadPoolExecutor) -> None:
        self.api = api
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
        if request.path == "/ready":
            return Response(200, b"ready\n")
        common = status_response(request.path)
        if common is not None:
            return common
        loop = asyncio.get_running_loop()
        response = await loop.run_in_executor(self.executor, self.api.handle, request)
        return response if response is not None else Response(404, b"not found\n")


def run_frontend(cfg: Config) -> int:
    fe = cfg.query_frontend
    db = TraceDB(open_backend(cfg.storage.trace), cfg.storage.trace)
    pool = QuerierPool(fe.querier_addresses, fe.query_timeout, fe.max_retries)
    app = FrontendApp(FrontendAPI(cfg, db, pool), ThreadPoolExecutor(16, thread_name_prefix="frontend"))
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=cfg.server.http_listen_address,
            port=cfg.server.http_listen_port,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
    )
    log.info(
        "query-frontend listening",
        extra={"port": cfg.server.http_listen_port, "queriers": ",".join(fe.querier_addresses)},
    )
    try:
        server.run()  # until SIGTERM/SIGINT
    finally:
        pool.close()
        db.close()
    return 0
