"""What every role's HTTP port serves besides its own API: ``/ready``, ``/metrics``, ``/status``,
``/api/echo`` and build info; and the uvicorn server every role runs it with.

A role hands in how it decides it is ready, what its ring looks like, and the APIs it serves (the query
API through the ``tracelake.api`` entry point), so this module knows no role.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from importlib.metadata import entry_points
from typing import Any, Protocol

import uvicorn
import yaml

from tracelake import __version__
from tracelake.asgi import Request, Response, gzip_if_accepted, lifespan, send_response, status_response
from tracelake.backend import Backend
from tracelake.config import Config
from tracelake.errors import ConfigError

_SECRET_KEYS = ("secret", "password", "token", "access_key")
MASK = "********"


def split_endpoint(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    if not port.isdigit():
        raise ConfigError(f"endpoint {endpoint!r} must be host:port")
    return (host.strip("[]") or "0.0.0.0"), int(port)


class UvicornServer(uvicorn.Server):
    """A uvicorn server that leaves signals to us: several run in one loop, one shutdown for all."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def uvicorn_server(app: Any, endpoint: str, graceful_seconds: float) -> UvicornServer:
    host, port = split_endpoint(endpoint)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=max(1, int(graceful_seconds)),
    )
    return UvicornServer(config)


def masked_config(cfg: Config) -> dict[str, Any]:
    """The effective config as plain data, with every credential replaced by a mask."""

    def mask(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: (MASK if v and any(s in str(k).lower() for s in _SECRET_KEYS) else mask(v))
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [mask(v) for v in node]
        return node

    return mask(cfg.model_dump(mode="json"))


class BackgroundService(Protocol):
    """A loop ``tracelake serve`` runs beside the write path (the compactor), found through the
    ``tracelake.background`` entry points, so the write path never imports another role."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


def load_background(cfg: Config, backend: Backend) -> list[BackgroundService]:
    """Each ``tracelake.background`` entry point is ``factory(cfg, backend)``: a service, or None when
    the config turns it off."""
    services = [entry.load()(cfg, backend) for entry in entry_points(group="tracelake.background")]
    return [service for service in services if service is not None]


class ServiceApp:
    """ASGI app of a role's HTTP port: the common endpoints, then each API in turn (blocking ones run
    on ``executor``)."""

    def __init__(
        self,
        cfg: Config,
        ready: Callable[[], str | None],
        apis: list,
        executor: Executor,
        ring_view: Callable[[], dict] | None = None,
    ) -> None:
        self.cfg = cfg
        self.ready = ready  # None when ready, else why not
        self.apis = apis
        self.executor = executor
        self.ring_view = ring_view

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = Request.from_scope(scope)
        await send_response(send, gzip_if_accepted(request, await self._respond(request)))

    def status(self) -> dict[str, Any]:
        return {
            "target": self.cfg.target,
            "version": __version__,
            "ready": self.ready() is None,
            "ring": self.ring_view() if self.ring_view else None,
            "config": masked_config(self.cfg),
        }

    async def _respond(self, request: Request) -> Response:
        path = request.path
        if path == "/ready":
            why = self.ready()
            return Response(200, b"ready\n") if why is None else Response(503, f"not ready: {why}\n".encode())
        if path == "/status":
            doc = self.status()
            if request.query.get("format") == "yaml":
                return Response(200, yaml.safe_dump(doc, sort_keys=False).encode(), "text/yaml")
            return Response(200, json.dumps(doc, indent=2).encode(), "application/json")
        common = status_response(path)  # /metrics, /api/echo, build info
        if common is not None:
            return common
        loop = asyncio.get_running_loop()
        for api in self.apis:
            response = await loop.run_in_executor(self.executor, api.handle, request)
            if response is not None:
                return response
        return Response(404, b"not found\n")
