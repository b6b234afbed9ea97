"""How the S3 backend fails: each failure a user can meet becomes one clear tracelake error.

Everything goes over real HTTP on 127.0.0.1: moto (with and without credential checks) or a small
scripted stub/proxy (``http_stub``), so botocore's and pyarrow's own retry and error handling run.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tracelake.backend import Backend, RangeByteRequest, open_backend
from tracelake.backend.s3 import S3Backend, endpoint_url, normalize_prefix
from tracelake.config import S3StorageConfig, TraceStorageConfig
from tracelake.errors import BackendAuthError, BackendError, ConfigError, ObjectNotFoundError

Op = Callable[[Backend], Any]


def _operations(tmp_path: Path) -> dict[str, Op]:
    """Every backend call that talks to the store, by name."""
    source = tmp_path / "upload.bin"
    source.write_bytes(b"payload")
    return {
        "read": lambda b: b.read("t/k"),
        "read_range": lambda b: b.read("t/k", RangeByteRequest(0, 4)),
        "write": lambda b: b.write("t/k", b"v"),
        "write_file": lambda b: b.write_file("t/k", source),
        "write_if_absent": lambda b: b.write_if_absent("t/lease", b"v"),
        "exists": lambda b: b.exists("t/k"),
        "size": lambda b: b.size("t/k"),
        "list": lambda b: list(b.list("t/")),
        "list_dirs": lambda b: b.list_dirs(""),
        "delete_prefix": lambda b: b.delete_prefix("t/"),
        "open_input_file": lambda b: b.open_input_file("t/k"),
    }


def _s3(endpoint: str, **overrides: Any) -> TraceStorageConfig:
    values: dict[str, Any] = {
        "bucket": "tracelake-test",
        "endpoint": endpoint,
        "insecure": True,
        "forcepathstyle": True,
        "access_key": "testing",
        "secret_key": "testing",
        "max_retries": 0,
        "connect_timeout": 1.0,
        "read_timeout": 2.0,
    }
    values.update(overrides)
    return TraceStorageConfig(backend="s3", s3=S3StorageConfig(**values))


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- configuration -------------------------------------------------------------------------------


def test_endpoint_url_is_tempo_style() -> None:
    assert endpoint_url("minio:9000", insecure=True) == "http://minio:9000"
    assert endpoint_url("s3.eu-west-1.amazonaws.com", insecure=False) == (
        "https://s3.eu-west-1.amazonaws.com"
    )
    assert endpoint_url("http://127.0.0.1:9000/", insecure=False) == "http://127.0.0.1:9000"
    assert endpoint_url("https://minio.example", insecure=True) == "https://minio.example"
    assert endpoint_url("", insecure=True) is None


def test_prefix_is_a_folder() -> None:
    assert normalize_prefix("") == ""
    assert normalize_prefix("/") == ""
    assert normalize_prefix("tempo") == "tempo/"
    assert normalize_prefix("/a/b/") == "a/b/"
    with pytest.raises(ValueError):
        normalize_prefix("a/../b")


def test_bad_s3_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="bucket"):
        S3Backend(S3StorageConfig())
    with pytest.raises(ConfigError, match="secret_key"):
        S3Backend(S3StorageConfig(bucket="b", access_key="only-the-key"))
    with pytest.raises(ConfigError, match="part_size"):
        S3Backend(S3StorageConfig(bucket="b", part_size=1024))


def test_description_without_endpoint_names_aws_region() -> None:
    store = S3Backend(S3StorageConfig(bucket="blocks", prefix="tempo", region="eu-west-1"))
    assert store.description == "s3://blocks/tempo at AWS S3 (eu-west-1)"
    store.close()
    store = S3Backend(S3StorageConfig(bucket="blocks"))
    assert store.description == "s3://blocks at AWS S3 (us-east-1)"
    store.close()


def test_full_url_endpoint_and_auto_addressing(s3_endpoint: Any) -> None:
    """A full URL wins over ``insecure``; "auto" addressing works against an IP endpoint."""
    cfg = s3_endpoint.storage_config(endpoint=s3_endpoint.url, insecure=False, forcepathstyle=False)
    with open_backend(cfg) as store:
        store.write("t/k", b"hello")
        assert store.read("t/k") == b"hello"
        with store.open_input_file("t/k") as f:
            assert f.read() == b"hello"
        store.delete_prefix("")


# -- credentials ---------------------------------------------------------------------------------


def test_bad_credentials(s3_auth_endpoint: Any, tmp_path: Path) -> None:
    """Real S3 semantics: moto with credential checks on (or the real store) refuses unknown keys."""
    store = open_backend(s3_auth_endpoint.storage_config(max_retries=0))
    try:
        for name, op in _operations(tmp_path).items():
            with pytest.raises(BackendAuthError) as caught:
                op(store)
            message = str(caught.value)
            assert "refused the credentials" in message, name
            assert s3_auth_endpoint.url in message, name
            assert s3_auth_endpoint.bucket in message, name
    finally:
        store.close()


@pytest.mark.parametrize("code", ["AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId"])
def test_refusals_from_any_s3_server(http_stub: Any, code: str, tmp_path: Path) -> None:
    stub = http_stub.start(lambda i, method, path: http_stub.s3_error(403, code, "refused"))
    with open_backend(_s3(stub.endpoint)) as store:
        for name, op in _operations(tmp_path).items():
            with pytest.raises(BackendAuthError, match="refused the credentials") as caught:
                op(store)
            assert stub.endpoint in str(caught.value), name
        with pytest.raises(BackendAuthError, match=code):
            store.read("t/k")


def test_no_credentials_anywhere(http_stub: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Empty keys mean the AWS chain; when it finds nothing, say so instead of a botocore error."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    stub = http_stub.start(lambda i, method, path: http_stub.s3_error(403, "AccessDenied", "no"))
    with (
        open_backend(_s3(stub.endpoint, access_key="", secret_key="")) as store,
        pytest.raises(BackendAuthError, match="no usable S3 credentials"),
    ):
        store.write("t/k", b"v")
    assert stub.requests == []  # refused before sending anything


# -- missing bucket ------------------------------------------------------------------------------


def test_missing_bucket(s3_endpoint: Any, tmp_path: Path) -> None:
    bucket = f"missing-{uuid.uuid4().hex[:8]}"
    store = open_backend(s3_endpoint.storage_config(bucket=bucket, max_retries=0))
    try:
        for name, op in _operations(tmp_path).items():
            with pytest.raises(BackendError) as caught:
                op(store)
            assert type(caught.value) is BackendError, name  # not "object not found"
            assert f"bucket {bucket} does not exist at {s3_endpoint.url}" in str(caught.value), name
    finally:
        store.close()


def test_missing_object_in_existing_bucket_after_bucket_check(backend_s3: Backend) -> None:
    """The bucket check behind a bare 404 runs once and then answers "object not found"."""
    for _ in range(2):
        assert not backend_s3.exists("t/none")
        with pytest.raises(ObjectNotFoundError):
            backend_s3.size("t/none")


@pytest.fixture
def backend_s3(s3_endpoint: Any) -> Any:
    store = open_backend(s3_endpoint.storage_config())
    yield store
    store.delete_prefix("")
    store.close()


# -- unreachable and slow endpoints --------------------------------------------------------------


def test_unreachable_endpoint(tmp_path: Path) -> None:
    port = _closed_port()
    started = time.monotonic()
    with open_backend(_s3(f"127.0.0.1:{port}")) as store:
        for name, op in _operations(tmp_path).items():
            with pytest.raises(BackendError) as caught:
                op(store)
            assert not isinstance(caught.value, BackendAuthError | ObjectNotFoundError), name
            message = str(caught.value)
            assert f"127.0.0.1:{port}" in message, name
            assert "cannot reach" in message, name
    assert time.monotonic() - started < 10


def test_read_timeout(http_stub: Any) -> None:
    stub = http_stub.start(lambda i, method, path: http_stub.Reply(200, b"late", delay=10))
    started = time.monotonic()
    with (
        open_backend(_s3(stub.endpoint, read_timeout=0.5)) as store,
        pytest.raises(BackendError, match=r"cannot reach S3 endpoint http://127\.0\.0\.1"),
    ):
        store.read("t/k")
    assert time.monotonic() - started < 5


def test_unexpected_server_error_names_code_and_store(http_stub: Any) -> None:
    stub = http_stub.start(lambda i, method, path: http_stub.s3_error(501, "NotImplemented", "nope"))
    with open_backend(_s3(stub.endpoint)) as store:
        with pytest.raises(BackendError, match="NotImplemented") as caught:
            store.write("t/k", b"v")
        assert store.description in str(caught.value)


# -- retries (botocore standard mode, pyarrow's standard strategy) -------------------------------


class Flaky:
    """A stub script: the next ``n`` requests get an error reply, the rest are forwarded."""

    def __init__(self, reply: Any) -> None:
        self.reply = reply
        self.remaining = 0
        self.lock = threading.Lock()

    def arm(self, n: int) -> None:
        with self.lock:
            self.remaining = n

    def __call__(self, index: int, method: str, path: str) -> Any:
        with self.lock:
            if self.remaining > 0:
                self.remaining -= 1
                return self.reply
        return None


@pytest.fixture
def flaky_proxy(s3_endpoint: Any, http_stub: Any) -> Callable[[int, str], tuple[Any, Flaky]]:
    """A proxy in front of the S3 server that fails requests on demand."""

    def start(status: int, code: str) -> tuple[Any, Flaky]:
        script = Flaky(http_stub.s3_error(status, code, "Please reduce your request rate."))
        return http_stub.start(script, upstream=s3_endpoint.url), script

    return start


def test_throttling_is_retried(s3_endpoint: Any, flaky_proxy: Any) -> None:
    """503 SlowDown twice, then the real answer: every call still succeeds."""
    proxy, script = flaky_proxy(503, "SlowDown")
    cfg = s3_endpoint.storage_config(endpoint=proxy.endpoint, insecure=True, max_retries=3)
    with open_backend(cfg) as store:
        script.arm(2)
        store.write("t/k", b"value")
        assert len(proxy.replied) == 2
        assert len(proxy.requests) == 3  # two refusals, then the forwarded request

        script.arm(1)
        assert store.read("t/k") == b"value"
        script.arm(1)
        assert [o.key for o in store.list("t/")] == ["t/k"]
        assert len(proxy.replied) == 4

        script.arm(2)  # pyarrow's client has its own retry strategy
        with store.open_input_file("t/k") as f:
            assert f.read() == b"value"
        assert len(proxy.replied) == 6

        store.delete_prefix("")


@pytest.mark.parametrize(("status", "code"), [(500, "InternalError"), (502, "BadGateway")])
def test_server_errors_are_retried(s3_endpoint: Any, flaky_proxy: Any, status: int, code: str) -> None:
    proxy, script = flaky_proxy(status, code)
    cfg = s3_endpoint.storage_config(endpoint=proxy.endpoint, insecure=True, max_retries=3)
    with open_backend(cfg) as store:
        script.arm(1)
        store.write("t/k", b"value")
        assert len(proxy.replied) == 1
        assert store.read("t/k") == b"value"
        store.delete_prefix("")


def test_retries_give_up_after_max_retries(s3_endpoint: Any, flaky_proxy: Any) -> None:
    proxy, script = flaky_proxy(503, "SlowDown")
    cfg = s3_endpoint.storage_config(endpoint=proxy.endpoint, insecure=True, max_retries=1)
    with open_backend(cfg) as store:
        script.arm(100)
        with pytest.raises(BackendError, match="SlowDown") as caught:
            store.write("t/k", b"value")
        assert "503" in str(caught.value)
        assert len(proxy.requests) == 2  # the first try and one retry

        script.arm(0)
        store.write("t/k", b"value")
        script.arm(100)
        with pytest.raises(BackendError, match=r"SlowDown|503"):
            store.open_input_file("t/k")
        assert len(proxy.requests) == 5  # pyarrow too: the first try and one retry
        script.arm(0)
        store.delete_prefix("")


def test_write_if_absent_survives_a_lost_response(s3_endpoint: Any, http_stub: Any) -> None:
    """The PUT lands but its answer is lost; the retry then meets 412 from our own object.

    Reporting False there would make a lease holder believe someone else holds the lease.
    """
    lost = http_stub.Reply(503, b"", forward_first=True)
    script = Flaky(lost)
    proxy = http_stub.start(script, upstream=s3_endpoint.url)
    cfg = s3_endpoint.storage_config(endpoint=proxy.endpoint, insecure=True, max_retries=2)
    with open_backend(cfg) as store:
        script.arm(1)
        assert store.write_if_absent("leases/compactor", b"owner-a") is True
        assert len(proxy.requests) >= 2  # the lost PUT, its retry (412), the read-back
        assert store.read("leases/compactor") == b"owner-a"

        script.arm(1)  # a genuine loser, retried the same way, still loses
        assert store.write_if_absent("leases/compactor", b"owner-b") is False
        assert store.read("leases/compactor") == b"owner-a"
        store.delete_prefix("")
