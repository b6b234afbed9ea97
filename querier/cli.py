"""The query side's commands for ``tracelake`` (registered through the ``tracelake.commands`` entry
point): ``querier`` and ``query-frontend``, each a role (``tracelake.roles``) that ``target`` can name."""

from __future__ import annotations

import argparse

from tracelake.cli.roles import run_role


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("querier", help="serve the query API: the blocks, and recent spans from the ingesters")
    p.set_defaults(run=lambda args, cfg: run_role(cfg, "querier"), logs="info")
    p = sub.add_parser(
        "query-frontend",
        help="run the query-frontend: Tempo's API, requests split into jobs for the queriers "
        "in query_frontend.querier_addresses",
    )
    p.set_defaults(run=lambda args, cfg: run_role(cfg, "query-frontend"), logs="info")
