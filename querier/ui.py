"""``GET /``: a trace view of our own, for users without Grafana.

One static page (``ui/index.html``, shipped as package data) that fetches ``/api/v2/traces/{id}`` from
the browser and draws the waterfall there: the server only hands out the file, so the page sees exactly
what Grafana sees and needs no API of its own.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from tracelake.asgi import Request, Response
from tracelake.config import Config
from tracelake.db import TraceDB
from tracelake.query import RecentTraces

PATHS = frozenset({"/", "/index.html"})
# The page is self-contained (inline CSS and JS, no CDN): nothing may load from anywhere else.
_HEADERS = (
    ("cache-control", "no-cache"),
    ("x-content-type-options", "nosniff"),
    (
        "content-security-policy",
        "default-src 'none'; connect-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "img-src data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
)


@cache
def page() -> bytes:
    """The page's bytes, read once from the installed package."""
    return (files("tracelake.querier") / "ui" / "index.html").read_bytes()


class TraceView:
    """The page's route, loaded beside the query API through the ``tracelake.api`` entry point so the
    API module (and its routing) does not have to know about it."""

    def handle(self, request: Request) -> Response | None:
        """The page for ``GET /``; None for every other path."""
        if request.path not in PATHS:
            return None
        if request.method != "GET":
            return Response(405, b"method not allowed\n", headers=(("allow", "GET"),))
        return Response(200, page(), "text/html; charset=utf-8", _HEADERS)


def create(cfg: Config, db: TraceDB, recent: RecentTraces | None) -> TraceView:
    """Entry point (``tracelake.api``), with the signature every API there has; the page needs none of
    them: it reads traces through ``/api/v2/traces/{id}`` like any other client."""
    return TraceView()
