"""Receivers: each protocol's transport, turning requests into OTLP bytes for a ``SpanPusher``."""
