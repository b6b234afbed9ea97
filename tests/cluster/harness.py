"""The roles as separate processes on loopback: one config file each, shared storage and ring."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import free_port
from tests.server.harness import _merge


@dataclass
class Role:
    name: str
    command: str
    root: Path
    config: dict[str, Any]
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def __post_init__(self) -> None:
        self.config_path = self.root / f"{self.name}.yaml"
        self.config_path.write_text(yaml.safe_dump(self.config))

    def start(self) -> Role:
        self.log_path = self.root / f"{self.name}-{time.monotonic_ns()}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tracelake.cli.main", "--config", str(self.config_path), self.command],
            stdout=self.log_path.open("wb"),
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        return self

    def url(self, path: str, port: str = "api") -> str:
        return f"http://127.0.0.1:{self.ports[port]}{path}"

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url("/ready"), timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.05)
        raise AssertionError(f"{self.name} not ready after {timeout}s:\n{self.log()}")

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url(path), headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def status(self) -> dict[str, Any]:
        code, body = self.get("/status")
        assert code == 200, body
        return json.loads(body)

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        _, body = self.get("/metrics")
        total = 0.0
        for line in body.decode().splitlines():
            if line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            metric, _, label_text = key.partition("{")
            have = dict(part.split("=", 1) for part in label_text.rstrip("}").split(",") if "=" in part)
            if metric == name and all(have.get(k) == f'"{v}"' for k, v in labels.items()):
                total += float(value)
        return total

    def stop(self, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""


@dataclass
class Cluster:
    ingesters: list[Role]
    distributor: Role
    queriers: list[Role]
    frontend: Role | None = None
    # Started by the test when it wants compaction to begin (``start_compactor``), not with the rest.
    compactor: Role | None = None

    @property
    def querier(self) -> Role:
        return self.queriers[0]

    @property
    def roles(self) -> list[Role]:
        optional = [r for r in (self.frontend, self.compactor) if r is not None]
        return [*self.ingesters, self.distributor, *self.queriers, *optional]

    def start(self) -> Cluster:
        first = [r for r in self.roles if r is not self.compactor]
        for role in first:
            role.start()
        for role in first:
            role.wait_ready()
        return self

    def start_compactor(self) -> Role:
        assert self.compactor is not None
        self.compactor.start().wait_ready()
        return self.compactor

    def stop(self) -> None:
        for role in self.roles:
            if role.proc is not None and role.proc.poll() is None:
                try:
                    role.stop()
                except subprocess.TimeoutExpired:
                    role.kill()

    def logs(self) -> str:
        return "\n".join(f"===== {r.name}\n{r.log()[-4000:]}" for r in self.roles)


def make_cluster(
    root: Path,
    storage: dict[str, Any],
    ingesters: int = 3,
    replication_factor: int = 3,
    extra: dict | None = None,
    queriers: int = 1,
    frontend: dict | None = None,
    compactor: dict | None = None,
    frontend_extra: dict | None = None,
) -> Cluster:
    """``ingesters`` ingester processes, a distributor (OTLP/HTTP and gRPC) and ``queriers`` queriers;
    a query-frontend over the queriers when ``frontend`` (its ``query_frontend`` keys) is given, and a
    compactor (not started) when ``compactor`` (its ``compactor`` keys) is given; ``frontend_extra``
    is merged into the frontend's own config."""
    grpc_ports = [free_port() for _ in range(ingesters)]
    common: dict[str, Any] = {
        "storage": {"trace": {**storage, "blocklist_poll": "500ms"}},
        "ingester": {
            "lifecycler": {
                "ring": {
                    "replication_factor": replication_factor,
                    "members": [f"127.0.0.1:{p}" for p in grpc_ports],
                }
            },
            "trace_idle_period": "1s",
            "max_block_duration": "3s",
            "flush_check_period": "200ms",
            "complete_block_timeout": "2s",
        },
        "ingester_client": {"remote_timeout": "5s"},
        "server": {"http_listen_address": "127.0.0.1", "graceful_shutdown_timeout": "10s"},
    }
    _merge(common, extra or {})

    def config(**overrides: Any) -> dict[str, Any]:
        out = json.loads(json.dumps(common))
        _merge(out, overrides)
        return out

    def api_role(name: str, command: str, **overrides: Any) -> Role:
        port = free_port()
        cfg = config(server={"http_listen_port": port}, **overrides)
        return Role(name, command, root, cfg, {"api": port})

    roles: list[Role] = []
    for i, grpc_port in enumerate(grpc_ports):
        api = free_port()
        cfg = config(
            server={"http_listen_port": api, "grpc_listen_port": grpc_port},
            storage={"trace": {"wal": {"path": str(root / f"wal-{i}")}}},
        )
        roles.append(Role(f"ingester-{i}", "ingester", root, cfg, {"api": api, "grpc": grpc_port}))
    ports = {"api": free_port(), "otlp_http": free_port(), "otlp_grpc": free_port()}
    receivers = {
        "otlp": {
            "protocols": {
                "http": {"endpoint": f"127.0.0.1:{ports['otlp_http']}"},
                "grpc": {"endpoint": f"127.0.0.1:{ports['otlp_grpc']}"},
            }
        }
    }
    distributor = Role(
        "distributor",
        "distributor",
        root,
        config(server={"http_listen_port": ports["api"]}, distributor={"receivers": receivers}),
        ports,
    )
    query_roles = [api_role(f"querier-{i}", "querier") for i in range(queriers)]
    frontend_role = None
    if frontend is not None:
        addresses = [f"127.0.0.1:{q.ports['api']}" for q in query_roles]
        own: dict[str, Any] = {"query_frontend": {**frontend, "querier_addresses": addresses}}
        _merge(own, json.loads(json.dumps(frontend_extra or {})))
        frontend_role = api_role("query-frontend", "query-frontend", **own)
    compactor_role = None if compactor is None else api_role("compactor", "compactor", compactor=compactor)
    return Cluster(roles, distributor, query_roles, frontend_role, compactor_role)
