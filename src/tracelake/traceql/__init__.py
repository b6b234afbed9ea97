"""TraceQL: parsing the query language Grafana's Tempo data source sends (contract §5)."""

from tracelake.traceql.parser import TraceQLError, format, parse

__all__ = ["TraceQLError", "format", "parse"]
