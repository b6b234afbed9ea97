"""Search: requests, the per-frame and per-block steps, results (see search/engine.py)."""
