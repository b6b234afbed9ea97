"""What the read side needs from the rest of the system, as interfaces (one process or several).

The querier never imports the ingester: whatever holds recent spans (the ingester in ``tracelake
serve``; an RPC client in microservices mode) implements ``RecentTraces``.
"""

from __future__ import annotations

from typing import Protocol

import pyarrow as pa

from tracelake.block.meta import BlockMeta


class RecentTraces(Protocol):
    def find_trace(self, tenant: str, trace_id: bytes) -> list[pa.Table]:
        """Spans of ``trace_id`` not yet in the blocks a querier sees (SPAN_SCHEMA tables)."""
        ...

    def recent_spans(self, tenant: str) -> list[pa.Table]:
        """Every span held in memory (live traces, head block, blocks being flushed): SPAN_SCHEMA
        tables in arrival order; a trace may be spread over several."""
        ...

    def recent_blocks(self, tenant: str) -> list[BlockMeta]:
        """Blocks this ingester wrote recently and still answers for (``complete_block_timeout``)."""
        ...
