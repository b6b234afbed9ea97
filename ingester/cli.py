"""The write path's commands for ``tracelake`` (registered through the ``tracelake.commands`` entry
point): ``serve`` runs the config's ``target`` (``all`` by default: everything in one process);
``distributor`` and ``ingester`` run that role alone."""

from __future__ import annotations

import argparse

from tracelake.cli.roles import run_role
from tracelake.config import Config


def run_all(cfg: Config) -> int:
    from tracelake.ingester.app import run_server

    return run_server(cfg, "all")


def run_distributor(cfg: Config) -> int:
    from tracelake.ingester.app import run_server

    return run_server(cfg, "distributor")


def run_ingester(cfg: Config) -> int:
    from tracelake.ingester.app import run_server

    return run_server(cfg, "ingester")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the config's target (default all: the whole system in one process)")
    p.set_defaults(run=lambda args, cfg: run_role(cfg), logs="info")
    p = sub.add_parser("distributor", help="run the receivers and send spans to the ingesters' ring")
    p.set_defaults(run=lambda args, cfg: run_role(cfg, "distributor"), logs="info")
    p = sub.add_parser("ingester", help="run one ingester behind its gRPC service")
    p.set_defaults(run=lambda args, cfg: run_role(cfg, "ingester"), logs="info")
