"""Compaction in the core library: what to merge (``plan``), who merges it (``lease``), merging and
committing one job (``job``), what to delete (``cleanup``). The service loop is ``tracelake.compactor``.
"""
