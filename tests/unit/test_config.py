"""Config: Tempo's storage section as is, env overrides, durations, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracelake.config import load_config, parse_duration
from tracelake.errors import ConfigError

TEMPO_STORAGE = """
server:
  http_listen_port: 3200
  log_level: info
storage:
  trace:
    backend: s3
    blocklist_poll: 5m
    s3:
      bucket: tempo
      endpoint: ${MINIO_HOST:-minio:9000}
      access_key: tempo
      secret_key: supersecret
      insecure: true
      forcepathstyle: true
      region: eu-west-1
      prefix: traces
    wal:
      path: /var/tempo/wal
    pool:
      max_workers: 400
"""


def test_a_tempo_storage_section_loads_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "tempo.yaml"
    path.write_text(TEMPO_STORAGE)
    cfg = load_config(path, environ={})
    s3 = cfg.storage.trace.s3
    assert cfg.storage.trace.backend == "s3"
    assert (s3.bucket, s3.endpoint, s3.insecure, s3.forcepathstyle, s3.prefix) == (
        "tempo",
        "minio:9000",
        True,
        True,
        "traces",
    )
    assert cfg.storage.trace.blocklist_poll == 300.0
    assert cfg.storage.trace.wal.path == "/var/tempo/wal"
    assert "storage.trace.pool" in cfg.unknown_keys() and "server.log_level" in cfg.unknown_keys()


def test_env_expansion_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "tempo.yaml"
    path.write_text(TEMPO_STORAGE)
    cfg = load_config(
        path,
        environ={"MINIO_HOST": "127.0.0.1:9000", "TRACELAKE_STORAGE__TRACE__S3__BUCKET": "other"},
    )
    assert cfg.storage.trace.s3.endpoint == "127.0.0.1:9000"
    assert cfg.storage.trace.s3.bucket == "other"


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_config(environ={})
    assert cfg.storage.trace.backend == "local" and cfg.storage.trace.local.path == "./data"
    assert cfg.storage.trace.block.bloom_filter_false_positive == 0.01


def test_bad_values_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("storage:\n  trace:\n    backend: gcs\n")
    with pytest.raises(ConfigError, match=r"storage\.trace\.backend"):
        load_config(path, environ={})
    path.write_text("storage:\n  trace:\n    block:\n      bloom_filter_false_positive: 2\n")
    with pytest.raises(ConfigError, match="bloom_filter_false_positive"):
        load_config(path, environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml", environ={})


@pytest.mark.parametrize(
    ("text", "seconds"), [("5m", 300), ("1h30m", 5400), ("250ms", 0.25), ("0", 0), (12, 12), ("1.5s", 1.5)]
)
def test_parse_duration(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


def test_parse_duration_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration("5 minutes")
