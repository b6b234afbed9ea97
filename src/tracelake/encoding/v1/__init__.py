"""Block format ``tl1``: flat spans in ``data.parquet``, ``summary.parquet``, ``bloom-N``, ``meta.json``."""
