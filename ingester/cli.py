"""The ingester's commands for ``tracelake`` (registered through the ``tracelake.commands`` entry point)."""

from __future__ import annotations

import argparse

from tracelake.config import Config


def cmd_serve(args: argparse.Namespace, cfg: Config) -> int:
    from tracelake.ingester.app import run_server

    return run_server(cfg)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the whole system in one process (receivers, ingester, API)")
    p.set_defaults(run=cmd_serve, logs="info")
