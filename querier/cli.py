"""The query side's commands for ``tracelake`` (registered through the ``tracelake.commands`` entry point)."""

from __future__ import annotations

import argparse

from tracelake.config import Config


def cmd_query_frontend(args: argparse.Namespace, cfg: Config) -> int:
    from tracelake.querier.frontend.app import run_frontend

    return run_frontend(cfg)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "query-frontend",
        help="run the query-frontend: Tempo's API, requests split into jobs for the queriers "
        "in query_frontend.querier_addresses",
    )
    p.set_defaults(run=cmd_query_frontend, logs="info")
