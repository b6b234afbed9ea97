"""Object names inside the backend: ``<tenant>/<block-id>/<file>`` and ``<tenant>/index.json.gz``."""

from __future__ import annotations

META = "meta.json"
COMPACTED_META = "meta.compacted.json"
DATA = "data.parquet"
SUMMARY = "summary.parquet"
TENANT_INDEX = "index.json.gz"


def block_prefix(tenant: str, block_id: str) -> str:
    return f"{tenant}/{block_id}/"


def block_key(tenant: str, block_id: str, name: str) -> str:
    return f"{tenant}/{block_id}/{name}"


def bloom_name(shard: int) -> str:
    return f"bloom-{shard}"


def tenant_index_key(tenant: str) -> str:
    return f"{tenant}/{TENANT_INDEX}"
