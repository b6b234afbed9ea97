"""The span model: one Arrow row per span, shared by codecs, blocks and queries."""
