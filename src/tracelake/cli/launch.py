"""The ``tracelake`` console script. Standard library only: it runs before pyarrow is loaded, the one
moment Arrow's default memory pool can still be chosen (``ARROW_DEFAULT_MEMORY_POOL`` is read when the
library loads; ``pyarrow.set_memory_pool`` later reaches only the allocations made from Python, while
Parquet's readers and writers keep the pool chosen at load).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

# Processes that run nothing but the compactor allocate and free row batches all day. mimalloc (the
# wheels' default) keeps freed pages mapped; jemalloc returns them: `tracelake compact` on
# `python benchmarks/compaction_bench.py` printed 246-252 MiB peak RSS with mimalloc and 213-219 MiB
# with jemalloc as the load-time pool (and malloc_trim per job), CPU within noise (docs/compaction.md).
COMPACTOR_COMMANDS = frozenset({"compact", "compactor"})
ARROW_POOL_VARIABLE = "ARROW_DEFAULT_MEMORY_POOL"


def arrow_pool_for(argv: Sequence[str]) -> str | None:
    """The Arrow memory pool a ``tracelake`` command line should load with, or None for the default.
    Any word of the command line naming a compactor command counts: a false match only picks the
    allocator."""
    return "jemalloc" if COMPACTOR_COMMANDS.intersection(argv) else None


def main() -> int:
    pool = arrow_pool_for(sys.argv[1:])
    if pool is not None:
        os.environ.setdefault(ARROW_POOL_VARIABLE, pool)  # the user's own choice wins
    from tracelake.cli.main import main as run

    return run()


if __name__ == "__main__":
    sys.exit(main())
