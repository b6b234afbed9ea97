"""Shared fixtures for the whole test suite.

Storage fixtures (reuse them in any test that touches blocks):

- ``storage_config``: a ``TraceStorageConfig``, parametrized over ``local`` and ``s3``, so a test that
  asks for it runs once per backend. Each test gets its own directory / unique S3 prefix.
- ``backend``: ``open_backend(storage_config)``, closed (and its S3 prefix emptied) after the test.
- ``s3_endpoint``: the session's S3 server as an ``S3Endpoint`` (moto in server mode as a subprocess,
  or the real store named by ``TRACELAKE_TEST_S3_ENDPOINT``). It starts only when a test needs it.
  ``s3_endpoint.storage_config(**s3_overrides)`` gives a config under a fresh prefix;
  ``s3_endpoint.client()`` a plain boto3 client for checks that go around the backend.
- ``s3_auth_endpoint``: an S3 server that checks credentials, with keys it refuses.

Every test that needs an S3 server gets the ``s3`` marker automatically, so ``pytest -m "not s3"``
runs the fast local-only subset.
"""

from __future__ import annotations

import dataclasses
import os
import random
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tracelake.backend import Backend, open_backend
from tracelake.config import LocalStorageConfig, S3StorageConfig, TraceStorageConfig

MOTO_START_TIMEOUT = 20.0
TEST_PART_SIZE = 5 * 1024 * 1024  # the S3 minimum, so multipart starts at small test objects


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests that use the S3 server, directly or through ``storage_config[s3]``."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        fixtures = getattr(item, "fixturenames", ())
        uses_server = "s3_endpoint" in fixtures or "s3_auth_endpoint" in fixtures
        if params.get("storage_config") == "s3" or uses_server:
            item.add_marker(pytest.mark.s3)


@dataclass(frozen=True)
class S3Endpoint:
    """Where the test S3 server listens, in the terms of ``storage.trace.s3``."""

    endpoint: str  # "host:port" (Tempo style) or a full URL
    bucket: str
    access_key: str
    secret_key: str
    region: str
    insecure: bool

    @property
    def url(self) -> str:
        if "://" in self.endpoint:
            return self.endpoint
        return f"{'http' if self.insecure else 'https'}://{self.endpoint}"

    def s3_config(self, **overrides: Any) -> S3StorageConfig:
        """Test defaults: 5 MiB parts, few retries and short timeouts so failures show fast."""
        values: dict[str, Any] = {
            "bucket": self.bucket,
            "endpoint": self.endpoint,
            "region": self.region,
            "access_key": self.access_key,
            "secret_key": self.secret_key,
            "insecure": self.insecure,
            "forcepathstyle": True,
            "part_size": TEST_PART_SIZE,
            "max_retries": 2,
            "connect_timeout": 2.0,
            "read_timeout": 20.0,
        }
        values.update(overrides)
        return S3StorageConfig(**values)

    def storage_config(self, prefix: str | None = None, **overrides: Any) -> TraceStorageConfig:
        """A config for this endpoint under ``prefix`` (default: a fresh ``test-<uuid>/``)."""
        if prefix is None:
            prefix = f"test-{uuid.uuid4().hex[:12]}/"
        return TraceStorageConfig(backend="s3", s3=self.s3_config(prefix=prefix, **overrides))

    def client(self) -> Any:
        """A plain boto3 client, for checks that go around the backend."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


_PORTS = random.Random(os.getpid() ^ time.time_ns())


def free_port() -> int:
    """A port nobody listens on right now (closed again, so also usable as "unreachable").

    Taken below the kernel's ephemeral range: a port the kernel hands out for port 0 is also what it
    gives outgoing connections, so between this call and the server's bind a client connection of
    another test could take it ("address already in use", seen under load)."""
    low, _ = _ephemeral_range()
    for _ in range(50):
        port = _PORTS.randrange(max(1024, low - 16384), low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class MotoServer:
    """A moto server subprocess; ``stop`` ends exactly this process."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_moto_server(log_path: Path, env: Mapping[str, str] | None = None) -> MotoServer:
    """Start ``python -m moto.server`` on a free loopback port and wait until it answers HTTP."""
    port = free_port()
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    log.close()
    server = MotoServer(process=process, port=port, log_path=log_path)
    deadline = time.monotonic() + MOTO_START_TIMEOUT
    while True:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            pytest.fail(f"moto server exited with code {process.returncode} at start:\n{tail}")
        try:
            with urllib.request.urlopen(f"http://{server.endpoint}/moto-api/", timeout=0.5):
                return server
        except urllib.error.HTTPError:
            return server  # it answered, which is all we wait for
        except OSError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            tail = log_path.read_text(errors="replace")[-2000:]
            pytest.fail(
                f"moto server did not answer on {server.endpoint} within {MOTO_START_TIMEOUT:.0f} s "
                f"(is moto[server] installed?):\n{tail}"
            )
        time.sleep(0.05)


def _endpoint_from_env() -> S3Endpoint | None:
    endpoint = os.environ.get("TRACELAKE_TEST_S3_ENDPOINT", "")
    if not endpoint:
        return None
    insecure = os.environ.get("TRACELAKE_TEST_S3_INSECURE", "true").strip().lower()
    return S3Endpoint(
        endpoint=endpoint,
        bucket=os.environ.get("TRACELAKE_TEST_S3_BUCKET", "tracelake-test"),
        access_key=os.environ.get("TRACELAKE_TEST_S3_ACCESS_KEY", ""),
        secret_key=os.environ.get("TRACELAKE_TEST_S3_SECRET_KEY", ""),
        region=os.environ.get("TRACELAKE_TEST_S3_REGION", "") or "us-east-1",
        insecure=insecure not in ("0", "false", "no", "off"),
    )


def _ensure_bucket(endpoint: S3Endpoint) -> None:
    from botocore.exceptions import ClientError

    client = endpoint.client()
    try:
        client.head_bucket(Bucket=endpoint.bucket)
    except ClientError:
        client.create_bucket(Bucket=endpoint.bucket)
    finally:
        client.close()


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """The S3 server for the session: moto as a subprocess, or ``TRACELAKE_TEST_S3_*``."""
    external = _endpoint_from_env()
    if external is not None:
        _ensure_bucket(external)
        yield external
        return
    server = start_moto_server(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        endpoint = S3Endpoint(
            endpoint=server.endpoint,
            bucket="tracelake-test",
            access_key="testing",
            secret_key="testing",
            region="us-east-1",
            insecure=True,
        )
        _ensure_bucket(endpoint)
        yield endpoint
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_auth_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """An S3 server that checks credentials, with keys it does not know (for auth-error tests).

    Plain moto accepts any keys; with ``INITIAL_NO_AUTH_ACTION_COUNT=0`` it authenticates every
    request against its (empty) IAM and refuses ours as InvalidAccessKeyId, as AWS would. With
    ``TRACELAKE_TEST_S3_ENDPOINT`` set, that store is used with bogus keys instead.
    """
    bogus = {"access_key": "TRACELAKEBOGUSKEY", "secret_key": "not-the-secret"}
    external = _endpoint_from_env()
    if external is not None:
        yield dataclasses.replace(external, **bogus)
        return
    server = start_moto_server(
        tmp_path_factory.mktemp("moto-auth") / "moto.log",
        env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"},
    )
    try:
        yield S3Endpoint(
            endpoint=server.endpoint,
            bucket="tracelake-test",
            region="us-east-1",
            insecure=True,
            **bogus,
        )
    finally:
        server.stop()


@pytest.fixture(params=["local", "s3"])
def storage_config(request: pytest.FixtureRequest, tmp_path: Path) -> TraceStorageConfig:
    """A storage config per backend; the S3 server is started only for the ``s3`` param."""
    if request.param == "local":
        return TraceStorageConfig(backend="local", local=LocalStorageConfig(path=str(tmp_path / "store")))
    endpoint: S3Endpoint = request.getfixturevalue("s3_endpoint")
    return endpoint.storage_config()


@pytest.fixture
def backend(storage_config: TraceStorageConfig) -> Iterator[Backend]:
    """An open backend for ``storage_config``; S3 objects are deleted afterwards to keep moto small."""
    store = open_backend(storage_config)
    try:
        yield store
    finally:
        try:
            if storage_config.backend == "s3":
                store.delete_prefix("")
        finally:
            store.close()
