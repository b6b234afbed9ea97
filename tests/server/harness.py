"""``tracelake serve`` as a real process for tests: free loopback ports, a config file, start/stop/kill."""

from __future__ import annotations

import os
import signal
import socket
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
from tracelake.backend import open_backend
from tracelake.blocklist.tenant_index import hide_replaced, list_blocks
from tracelake.config import TraceStorageConfig
from tracelake.db import TraceDB

UDP_RECEIVERS = ("jaeger_thrift_compact", "jaeger_thrift_binary")
RECEIVER_PATHS = {
    "otlp_http": ("otlp", "protocols", "http"),
    "otlp_grpc": ("otlp", "protocols", "grpc"),
    "zipkin": ("zipkin",),
    "jaeger_grpc": ("jaeger", "protocols", "grpc"),
    "jaeger_thrift_http": ("jaeger", "protocols", "thrift_http"),
    "jaeger_thrift_compact": ("jaeger", "protocols", "thrift_compact"),
    "jaeger_thrift_binary": ("jaeger", "protocols", "thrift_binary"),
}


@dataclass
class Server:
    root: Path
    receivers: tuple[str, ...] = ("otlp_http", "otlp_grpc")
    extra: dict[str, Any] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    command: str = "serve"  # or another role, e.g. "query-frontend"

    def __post_init__(self) -> None:
        self.ports = {name: free_port() for name in (*self.receivers, "api")}
        receivers: dict[str, Any] = {}
        for name in self.receivers:
            node = receivers
            *parents, last = RECEIVER_PATHS[name]
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = {"endpoint": f"127.0.0.1:{self.ports[name]}"}
        config: dict[str, Any] = {
            "server": {"http_listen_address": "127.0.0.1", "http_listen_port": self.ports["api"]},
            "distributor": {"receivers": receivers},
            "ingester": {
                "trace_idle_period": "1s",
                "max_block_duration": "2s",
                "flush_check_period": "200ms",
            },
            "storage": {
                "trace": {"local": {"path": str(self.root / "data")}, "wal": {"path": str(self.root / "wal")}}
            },
        }
        _merge(config, self.extra)
        self.config_path = self.root / "tracelake.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.storage = TraceStorageConfig.model_validate(config["storage"]["trace"])

    def url(self, receiver: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[receiver]}{path}"

    def start(self, wait: bool = True) -> Server:
        self.log_path = self.root / f"server-{time.monotonic_ns()}.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tracelake.cli.main", "--config", str(self.config_path), self.command],
            stdout=self.log_path.open("wb"),
            stderr=subprocess.STDOUT,
            env=env,
        )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url("api", "/ready"), timeout=1) as response:
                    if response.status == 200 and self._receivers_listen():
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.05)
        raise AssertionError(f"server not ready after {timeout}s:\n{self.log()}")

    def _receivers_listen(self) -> bool:
        """/ready turns 200 when the WAL is replayed, a moment before the receivers bind their ports:
        under load a test could send in between. UDP receivers cannot be probed and are skipped."""
        for name in self.receivers:
            if name in UDP_RECEIVERS:
                continue
            try:
                socket.create_connection(("127.0.0.1", self.ports[name]), timeout=1).close()
            except OSError:
                return False
        return True

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait: the graceful path (flushes everything)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def metrics(self) -> str:
        with urllib.request.urlopen(self.url("api", "/metrics"), timeout=5) as response:
            return response.read().decode()

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample of /metrics (0 when absent)."""
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in self.metrics().splitlines():
            if line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            metric, _, label_text = key.partition("{")
            got = ",".join(sorted(label_text.rstrip("}").split(","))) if label_text else ""
            if metric == name and got == want:
                return float(value)
        return 0.0

    def stored_spans(self, tenant: str = "single-tenant"):
        """Every span in the backend's blocks of ``tenant`` (a SPAN_SCHEMA table), read like a querier."""
        import pyarrow as pa

        from tracelake.model.schema import SPAN_SCHEMA

        db = TraceDB(open_backend(self.storage), self.storage)
        try:
            tables = [
                t
                for meta in hide_replaced(list_blocks(db.backend, tenant)).metas
                for t in db.reader(meta).iter_spans()
            ]
        finally:
            db.close()
        return pa.concat_tables(tables) if tables else SPAN_SCHEMA.empty_table()


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
