"""The read path's command for ``tracelake``: ``querier`` (registered through ``tracelake.commands``)."""

from __future__ import annotations

import argparse

from tracelake.cli.roles import run_role


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("querier", help="serve the query API: the blocks, and recent spans from the ingesters")
    p.set_defaults(run=lambda args, cfg: run_role(cfg, "querier"), logs="info")
