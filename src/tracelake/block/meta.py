"""``meta.json``: what a reader must know about a block before it touches ``data.parquet``.

Field names follow Tempo's meta.json where one exists (``blockID``, ``tenantID``, ``totalObjects`` for
traces...), so operators recognise them; ours are added beside them. ``format`` is the version gate:
a reader refuses any value it does not know, with a message naming both.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from tracelake.errors import BlockFormatError

FORMAT_V1 = "tl1"  # attributes as a list of typed structs
FORMAT_V2 = "tl2"  # attributes as the span's OTLP attribute records (one binary value per span)
KNOWN_FORMATS = (FORMAT_V1, FORMAT_V2)
WRITTEN_FORMAT = FORMAT_V2  # what new blocks and compaction outputs are


def check_format(version: object, where: str) -> None:
    """Refuse a block format this version cannot read, naming both."""
    if version not in KNOWN_FORMATS:
        raise BlockFormatError(
            f"{where}: block format {version!r} is not supported "
            f"(this tracelake reads {', '.join(KNOWN_FORMATS)})"
        )


def rfc3339(unix_nano: int) -> str:
    return datetime.fromtimestamp(unix_nano // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class RowGroupRange:
    """Trace ids held by one Parquet row group: a lookup reads only the group that may hold its id."""

    min_id: str
    max_id: str
    first_row: int
    rows: int


@dataclass
class BlockMeta:
    format: str
    block_id: str
    tenant_id: str
    start_unix_nano: int  # earliest span start
    end_unix_nano: int  # latest span end
    min_id: str  # hex trace ids
    max_id: str
    total_traces: int
    total_spans: int
    size: int  # bytes of every object of the block
    compaction_level: int = 0
    bloom_shards: int = 1
    bloom_false_positive: float = 0.01
    footer_size: int = 0  # bytes of data.parquet's footer, so a reader can fetch it in one request
    row_groups: list[RowGroupRange] = field(default_factory=list)
    files: dict[str, int] = field(default_factory=dict)
    replaces: list[str] = field(default_factory=list)  # input blocks of the compaction that made it
    created_at: str = ""
    # Keys of the block's generic span attributes (None: unknown or too many): a search for a span
    # attribute the block never holds skips reading its ``attributes`` column.
    span_attribute_keys: list[str] | None = None
    resource_attribute_keys: list[str] | None = None  # the same for the resources' attributes

    def to_json(self, with_row_groups: bool = True) -> dict:
        out = {
            "format": self.format,
            "blockID": self.block_id,
            "tenantID": self.tenant_id,
            "startTime": rfc3339(self.start_unix_nano),
            "endTime": rfc3339(self.end_unix_nano),
            "startTimeUnixNano": str(self.start_unix_nano),
            "endTimeUnixNano": str(self.end_unix_nano),
            "minID": self.min_id,
            "maxID": self.max_id,
            "totalObjects": self.total_traces,
            "totalSpans": self.total_spans,
            "size": self.size,
            "compactionLevel": self.compaction_level,
            "encoding": "zstd",
            "bloomShards": self.bloom_shards,
            "bloomFalsePositive": self.bloom_false_positive,
            "footerSize": self.footer_size,
            "files": self.files,
            "replaces": self.replaces,
            "createdAt": self.created_at,
        }
        if self.span_attribute_keys is not None:
            out["spanAttributeKeys"] = self.span_attribute_keys
        if self.resource_attribute_keys is not None:
            out["resourceAttributeKeys"] = self.resource_attribute_keys
        if with_row_groups:
            out["rowGroups"] = [asdict(rg) for rg in self.row_groups]
        return out

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, obj: dict, where: str = "meta.json") -> BlockMeta:
        fmt = obj.get("format") if isinstance(obj, dict) else None
        check_format(fmt, where)
        try:
            return cls(
                format=fmt,
                block_id=obj["blockID"],
                tenant_id=obj["tenantID"],
                start_unix_nano=int(obj["startTimeUnixNano"]),
                end_unix_nano=int(obj["endTimeUnixNano"]),
                min_id=obj["minID"],
                max_id=obj["maxID"],
                total_traces=int(obj["totalObjects"]),
                total_spans=int(obj["totalSpans"]),
                size=int(obj["size"]),
                compaction_level=int(obj.get("compactionLevel", 0)),
                bloom_shards=int(obj.get("bloomShards", 1)),
                bloom_false_positive=float(obj.get("bloomFalsePositive", 0.01)),
                footer_size=int(obj.get("footerSize", 0)),
                row_groups=[RowGroupRange(**rg) for rg in obj.get("rowGroups", [])],
                files={str(k): int(v) for k, v in obj.get("files", {}).items()},
                replaces=list(obj.get("replaces", [])),
                created_at=str(obj.get("createdAt", "")),
                span_attribute_keys=_optional_strings(obj.get("spanAttributeKeys")),
                resource_attribute_keys=_optional_strings(obj.get("resourceAttributeKeys")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BlockFormatError(f"{where}: malformed block meta ({exc!r})") from exc

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "meta.json") -> BlockMeta:
        return cls.from_json(_parse_json(data, where), where)


def _parse_json(data: bytes, where: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BlockFormatError(f"{where}: not valid JSON ({exc})") from exc


def _optional_strings(value: object) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("attribute key lists must be lists of strings")
    return value


@dataclass
class CompactedMeta:
    """``meta.compacted.json``: the block was replaced; readers skip it, cleanup deletes it later."""

    meta: BlockMeta
    compacted_unix: float

    def to_json(self) -> dict:
        return {**self.meta.to_json(with_row_groups=False), "compactedTime": self.compacted_unix}

    @classmethod
    def from_json(cls, obj: dict, where: str = "meta.compacted.json") -> CompactedMeta:
        meta = BlockMeta.from_json(obj, where)
        try:
            return cls(meta, float(obj.get("compactedTime", 0)))
        except (TypeError, ValueError) as exc:
            raise BlockFormatError(f"{where}: malformed compactedTime ({exc!r})") from exc

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "meta.compacted.json") -> CompactedMeta:
        return cls.from_json(_parse_json(data, where), where)
