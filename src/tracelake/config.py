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


def _durations(*names: str):
    return field_validator(*names, mode="before")(lambda v: parse_duration(v))


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


class WALConfig(_Section):
    path: str = "./wal"
    # "always": a request is acknowledged only after an fsync that covers it (concurrent requests share
    # one fsync); "never": written to the OS before the ack (survives a process crash, not a power cut).
    fsync: Literal["always", "never"] = "always"
    segment_bytes: int = 64 * 1024 * 1024


class TraceStorageConfig(_Section):
    backend: Literal["local", "s3"] = "local"
    wal: WALConfig = WALConfig()
    local: LocalStorageConfig = LocalStorageConfig()
    s3: S3StorageConfig = S3StorageConfig()
    block: BlockConfig = BlockConfig()
    blocklist_poll: float = 300.0
    # Readers list the bucket instead of trusting a tenant index older than this (0 = never).
    blocklist_poll_stale_tenant_index: float = 0.0
    # Bloom filter shards a reader keeps in memory (every block's, up to this; then least recently
    # used out). About 1.2 bytes per trace at a 1% false-positive rate.
    bloom_cache_max_bytes: int = 1 << 30
    # Narrow block columns search keeps decoded (4-8 bytes per span and column; 0 = none).
    search_cache_max_bytes: int = 512 << 20
    # Parsed data.parquet footers of the blocks lookups read (about 38 KiB per row group: ~9.5 MiB per
    # 1M spans), least recently used out.
    footer_cache_max_bytes: int = 256 << 20

    _d = _durations("blocklist_poll", "blocklist_poll_stale_tenant_index")


class StorageConfig(_Section):
    trace: TraceStorageConfig = TraceStorageConfig()


class RingConfig(_Section):
    """The ingesters' ring (Tempo's ``ingester.lifecycler.ring`` keys, plus the member list)."""

    replication_factor: int = 1
    # Ingester gRPC addresses: "host:port", or "dns+name:port" for every address of a name (a
    # Kubernetes headless service), resolved again every dns_refresh_period.
    members: list[str] = []
    dns_refresh_period: float = 15.0

    _d = _durations("dns_refresh_period")

    @field_validator("replication_factor")
    @classmethod
    def _rf_positive(cls, v: int) -> int:
        if v < 1:
            raise ValueError("must be at least 1")
        return v


class LifecyclerConfig(_Section):
    ring: RingConfig = RingConfig()
    num_tokens: int = 128  # virtual tokens per ingester


class IngesterClientConfig(_Section):
    """Calls from distributors and queriers to ingesters (Tempo's ``ingester_client``)."""

    remote_timeout: float = 5.0

    _d = _durations("remote_timeout")


class IngesterConfig(_Section):
    """Tempo's ingester keys and defaults."""

    lifecycler: LifecyclerConfig = LifecyclerConfig()

    # A trace that received no span for this long moves from the live traces to the head block.
    trace_idle_period: float = 10.0
    # The head block is completed (written to the backend) after this long, or at this many bytes.
    max_block_duration: float = 1800.0
    max_block_bytes: int = 500 * 1024 * 1024
    # A completed block stays queryable from the ingester this long (readers poll the blocklist).
    complete_block_timeout: float = 900.0
    flush_check_period: float = 10.0

    _d = _durations("trace_idle_period", "max_block_duration", "complete_block_timeout", "flush_check_period")


class ServerConfig(_Section):
    http_listen_address: str = "0.0.0.0"
    http_listen_port: int = 3200
    grpc_listen_port: int = 9095
    graceful_shutdown_timeout: float = 30.0

    _d = _durations("graceful_shutdown_timeout")


class CompactionConfig(_Section):
    """Tempo's ``compactor.compaction`` keys and defaults, then ours (docs/compaction.md)."""

    # Blocks whose newest span falls in the same window are merged together (docs/compaction.md).
    compaction_window: float = 3600.0
    # Most traces (Tempo's "objects") and bytes a job may put into its one output block.
    max_compaction_objects: int = 6_000_000
    max_block_bytes: int = 100 * 1024**3
    # Blocks whose newest span is older than this are deleted (per-tenant override: block_retention).
    block_retention: float = 14 * 86400.0
    # Replaced blocks stay readable this long, so readers with an older block list still find spans.
    compacted_block_retention: float = 3600.0
    compaction_cycle: float = 30.0
    # Ours. Inputs per job: 100 small blocks become 10, then 1 (each span rewritten twice).
    max_input_blocks: int = 10
    # Decoded rows held by a job's merge: the per-input batch size is derived from it.
    memory_budget_bytes: int = 64 * 1024 * 1024
    # How long a compactor owns the inputs of a job (lease objects written with If-None-Match).
    lease_duration: float = 600.0
    # A block folder without meta.json is an unfinished write; it is deleted once this old.
    partial_block_grace_period: float = 3600.0

    _d = _durations(
        "compaction_window",
        "block_retention",
        "compacted_block_retention",
        "compaction_cycle",
        "lease_duration",
        "partial_block_grace_period",
    )

    @field_validator("max_input_blocks")
    @classmethod
    def _at_least_two(cls, v: int) -> int:
        if v < 2:
            raise ValueError("must be at least 2")
        return v


class CompactorConfig(_Section):
    compaction: CompactionConfig = CompactionConfig()
    # Ours: ``tracelake serve`` runs the compactor unless this is true.
    disabled: bool = False
    # Ours: the lease owner name (default: the host name). A compactor restarted under the same name
    # takes its own leases back at once; two compactors must have different names.
    instance_id: str = ""


# Receiver name -> (path of its config in distributor.receivers, Tempo's default endpoint).
RECEIVERS: dict[str, tuple[tuple[str, ...], str]] = {
    "otlp_http": (("otlp", "protocols", "http"), "0.0.0.0:4318"),
    "otlp_grpc": (("otlp", "protocols", "grpc"), "0.0.0.0:4317"),
    "zipkin": (("zipkin",), "0.0.0.0:9411"),
    "jaeger_grpc": (("jaeger", "protocols", "grpc"), "0.0.0.0:14250"),
    "jaeger_thrift_http": (("jaeger", "protocols", "thrift_http"), "0.0.0.0:14268"),
    "jaeger_thrift_compact": (("jaeger", "protocols", "thrift_compact"), "0.0.0.0:6831"),
    "jaeger_thrift_binary": (("jaeger", "protocols", "thrift_binary"), "0.0.0.0:6832"),
}


class DistributorConfig(_Section):
    # Tempo's layout; None means the section is absent: every receiver on its default endpoint.
    receivers: dict[str, Any] | None = None
    # Spans whose times lie outside [now - max_span_age, now + max_span_future] are refused.
    max_span_age: float = 14 * 86400.0
    max_span_future: float = 3600.0
    # Largest request body accepted by the HTTP receivers (413 beyond it).
    max_request_bytes: int = 20 * 1024 * 1024

    _d = _durations("max_span_age", "max_span_future")

    def enabled_receivers(self) -> dict[str, str]:
        """Receiver name -> "host:port" for every receiver that is on."""
        if self.receivers is None:
            return {name: endpoint for name, (_, endpoint) in RECEIVERS.items()}
        enabled: dict[str, str] = {}
        for name, (path, default) in RECEIVERS.items():
            node: Any = self.receivers
            present = True
            for part in path:
                if not isinstance(node, dict) or part not in node:
                    present = False
                    break
                node = node[part]
            if present:
                endpoint = node.get("endpoint") if isinstance(node, dict) else None
                enabled[name] = str(endpoint or default)
        return enabled


class TenantLimits(_Section):
    """Per-tenant limits (Tempo's flat ``overrides`` keys); 0 means unlimited."""

    ingestion_rate_limit_bytes: int = 15_000_000
    ingestion_burst_size_bytes: int = 20_000_000
    max_bytes_per_trace: int = 5_000_000
    max_attribute_bytes: int = 2048  # longer string values are truncated (and counted)
    # The compactor deletes this tenant's blocks older than this (0: compactor.compaction.block_retention).
    block_retention: float = 0.0

    _block_retention = _durations("block_retention")


class OverridesConfig(TenantLimits):
    # A YAML file ``overrides: {<tenant>: {<limit>: value}}``, reloaded every period.
    per_tenant_override_config: str = ""
    per_tenant_override_period: float = 10.0

    _d = _durations("per_tenant_override_period")

    def defaults(self) -> TenantLimits:
        return TenantLimits(**{k: getattr(self, k) for k in TenantLimits.model_fields})


class FrontendTraceByIDConfig(_Section):
    # Jobs per lookup: one for the ingesters plus at most this many shards of the block-id space...
    query_shards: int = 4
    # ...one per this many blocks that may hold the trace (by id and time range, from the frontend's
    # block list), none without such a block: each shard costs a querier request, and a querier
    # checks a block's bloom filter in microseconds once it is cached.
    blocks_per_shard: int = 16
    # A job not answered after this long is sent to another querier too; the first answer wins.
    hedge_requests_at: float = 2.0
    hedge_requests_up_to: int = 2

    _d = _durations("hedge_requests_at")


class FrontendSearchConfig(_Section):
    concurrent_jobs: int = 8
    # Blocks are grouped into jobs of about this many bytes.
    target_bytes_per_job: int = 100 * 1024 * 1024
    hedge_requests_at: float = 4.0
    hedge_requests_up_to: int = 2

    _d = _durations("hedge_requests_at")


class QueryFrontendConfig(_Section):
    """``tracelake query-frontend``: Tempo's keys; queriers are reached over HTTP at these addresses
    (``host:port``, or ``dns+name:port`` for every address a name resolves to, re-resolved)."""

    querier_addresses: list[str] = []
    max_retries: int = 2
    query_timeout: float = 30.0
    trace_by_id: FrontendTraceByIDConfig = FrontendTraceByIDConfig()
    search: FrontendSearchConfig = FrontendSearchConfig()

    _d = _durations("query_timeout")


class Config(_Section):
    target: str = "all"
    multitenancy_enabled: bool = False
    storage: StorageConfig = StorageConfig()
    ingester: IngesterConfig = IngesterConfig()
    server: ServerConfig = ServerConfig()
    distributor: DistributorConfig = DistributorConfig()
    ingester_client: IngesterClientConfig = IngesterClientConfig()
    overrides: OverridesConfig = OverridesConfig()
    compactor: CompactorConfig = CompactorConfig()
    query_frontend: QueryFrontendConfig = QueryFrontendConfig()

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


def load_tenant_overrides(path: str | Path, defaults: TenantLimits) -> dict[str, TenantLimits]:
    """Per-tenant limits from a Tempo-style overrides file (``overrides: {tenant: {key: value}}``)."""
    try:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"overrides file {path}: {exc}") from exc
    tenants = loaded.get("overrides", loaded) if isinstance(loaded, dict) else None
    if not isinstance(tenants, dict):
        raise ConfigError(f"overrides file {path}: expected a mapping of tenant -> limits")
    out: dict[str, TenantLimits] = {}
    for tenant, values in tenants.items():
        try:
            out[str(tenant)] = defaults.model_copy(
                update=TenantLimits.model_validate(values or {}).model_dump(exclude_unset=True)
            )
        except ValidationError as exc:
            raise ConfigError(f"overrides file {path}: tenant {tenant}: {exc.errors()[0]['msg']}") from exc
    return out
