"""The one typed place for configuration: a YAML file in Tempo's layout plus environment overrides.

A Tempo user's ``storage:`` section works unchanged. Keys we do not implement yet are kept and reported
(so a Tempo file loads), but a wrong value type in a key we do implement is an error naming the key.

Environment overrides: ``TRACELAKE_STORAGE__TRACE__S3__BUCKET=b`` sets ``storage.trace.s3.bucket``
(``__`` separates levels); ``${VAR}`` and ``${VAR:-default}`` inside the YAML are expanded, as Tempo
does with ``-config.expand-env``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tracelake.errors import ConfigError

DEFAULT_CONFIG_FILE = "tracelake.yaml"
ENV_PREFIX = "TRACELAKE_"
DEFAULT_TENANT = "single-tenant"

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}


def parse_duration(value: str | int | float) -> float:
    """Seconds from a Go-style duration ("5m", "1h30m", "250ms"); a bare number is seconds."""
    if isinstance(value, int | float):
        return float(value)
    text = value.strip()
    if text in ("0", ""):
        return 0.0
    try:
        return float(text)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        raise ValueError(f"invalid duration {value!r} (expected e.g. 30s, 5m, 1h30m)")
    return total


class _Section(BaseModel):
    """Keys we do not know are kept (a Tempo file has many), and listed by ``unknown_keys``."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class LocalStorageConfig(_Section):
    path: str = "./data"


class S3StorageConfig(_Section):
    bucket: str = ""
    endpoint: str = ""
    region: str = ""
    access_key: str = ""
    secret_key: str = Field(default="", repr=False)
    session_token: str = Field(default="", repr=False)
    insecure: bool = False
    forcepathstyle: bool = False
    prefix: str = ""
    # Ours: retries with backoff on throttling and 5xx, and the multipart part size.
    max_retries: int = 8
    part_size: int = 16 * 1024 * 1024
    connect_timeout: float = 5.0
    read_timeout: float = 30.0


class BlockConfig(_Section):
    """How blocks are cut into files (Tempo keys where they exist)."""

    bloom_filter_false_positive: float = 0.01
    bloom_filter_shard_size_bytes: int = 100 * 1024
    # Spans per Parquet row group (rounded to whole traces): small groups make a lookup read little.
    parquet_row_group_size_spans: int = 4000
    parquet_zstd_level: int = 3

    @field_validator("bloom_filter_false_positive")
    @classmethod
    def _fp_in_range(cls, v: float) -> float:
        if not 0.0 < v < 1.0:
            raise ValueError("must be between 0 and 1 (exclusive), e.g. 0.01")
        return v


class TraceStorageConfig(_Section):
    backend: Literal["local", "s3"] = "local"
    local: LocalStorageConfig = LocalStorageConfig()
    s3: S3StorageConfig = S3StorageConfig()
    block: BlockConfig = BlockConfig()
    blocklist_poll: float = 300.0
    # Readers list the bucket instead of trusting a tenant index older than this (0 = never).
    blocklist_poll_stale_tenant_index: float = 0.0

    _durations = field_validator("blocklist_poll", "blocklist_poll_stale_tenant_index", mode="before")(
        lambda v: parse_duration(v)
    )


class StorageConfig(_Section):
    trace: TraceStorageConfig = TraceStorageConfig()


class IngesterConfig(_Section):
    # A block is cut when the spans held for it reach this many bytes in memory (Tempo's key).
    max_block_bytes: int = 500 * 1024 * 1024


class Config(_Section):
    target: str = "all"
    multitenancy_enabled: bool = False
    storage: StorageConfig = StorageConfig()
    ingester: IngesterConfig = IngesterConfig()

    def unknown_keys(self) -> list[str]:
        """Dotted paths of keys present in the file that no section implements."""
        found: list[str] = []
        _collect_extra(self, "", found)
        return found


def _collect_extra(model: BaseModel, prefix: str, out: list[str]) -> None:
    for key in model.model_extra or {}:
        out.append(prefix + key)
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            _collect_extra(value, f"{prefix}{name}.", out)


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(text: str, environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return _ENV_REF.sub(lambda m: env.get(m.group(1), m.group(2) or ""), text)


def _apply_env_overrides(data: dict[str, Any], environ: dict[str, str]) -> None:
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        if path[0] not in Config.model_fields:
            continue  # e.g. TRACELAKE_TEST_S3_ENDPOINT belongs to the test suite, not the config
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[path[-1]] = yaml.safe_load(value) if value else ""


def load_config(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Config:
    """Load ``path``, else ``./tracelake.yaml`` if present, else built-in defaults; then env overrides."""
    env = dict(os.environ if environ is None else environ)
    data: dict[str, Any] = {}
    source = Path(path) if path is not None else Path(DEFAULT_CONFIG_FILE)
    if path is not None and not source.is_file():
        raise ConfigError(f"config file {source} does not exist")
    if source.is_file():
        try:
            loaded = yaml.safe_load(expand_env(source.read_text(), env))
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {source} is not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {source} must hold a mapping at the top level")
        data = loaded or {}
    _apply_env_overrides(data, env)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"config key {where}: {first['msg']} (got {first.get('input')!r})") from exc
