"""Building OTLP requests from other protocols: one ScopeSpans per (scope name, version) in a resource."""

from __future__ import annotations

from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans


def scope_spans_for(
    resource_spans: ResourceSpans, scopes: dict[tuple[str, str], ScopeSpans], scope: tuple[str, str]
) -> ScopeSpans:
    """The ScopeSpans of ``scope`` (name, version) in ``resource_spans``, added on first use.

    ``scopes`` is the caller's index for that ResourceSpans; an empty name or version stays unset.
    """
    scope_spans = scopes.get(scope)
    if scope_spans is None:
        scope_spans = resource_spans.scope_spans.add()
        if scope[0]:
            scope_spans.scope.name = scope[0]
        if scope[1]:
            scope_spans.scope.version = scope[1]
        scopes[scope] = scope_spans
    return scope_spans
