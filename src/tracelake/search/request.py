"""A search request, parsed from ``/api/search``'s query string (contract §2.3): pure functions.

``tags`` (logfmt ``key=value`` pairs, Tempo's pre-TraceQL search) becomes the TraceQL query
``{ .k1 = v1 && .k2 = v2 }``: every pair must hold for the same span or its resource. A value that
reads as a number or boolean also matches attributes of that type (``http.status_code=500`` finds the
int 500 as well as the string "500"). Everything then runs through the one TraceQL evaluator.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tracelake.errors import InvalidInputError
from tracelake.traceql.ast import (
    Attribute,
    Comparison,
    FieldExpr,
    Intrinsic,
    Literal,
    LiteralKind,
    Op,
    Query,
    Scope,
    SpansetFilter,
    StatusValue,
    make_and,
    make_or,
)
from tracelake.traceql.evaluate import check_supported
from tracelake.traceql.parser import TraceQLError, parse

DEFAULT_LIMIT = 20  # Tempo's default_result_limit
DEFAULT_SPSS = 3  # Tempo's default spans per span set
MAX_SPSS = 1000

_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_NS_PER = {
    "ns": 1,
    "us": 10**3,
    "µs": 10**3,
    "μs": 10**3,
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}
_LOGFMT = re.compile(r'\s*([^\s=]+)=("(?:[^"\\]|\\.)*"|\S*)')


class SearchRequestError(InvalidInputError):
    """A request ``/api/search`` answers with 400; the message says what is wrong."""


@dataclass(frozen=True)
class SearchRequest:
    query: Query
    traceql: bool  # answered with spanSets (a ``q`` search) or as Tempo's tag search (no spanSets)
    limit: int = DEFAULT_LIMIT
    spss: int = DEFAULT_SPSS
    start_ns: int | None = None  # the request's time range (trace overlaps it), in Unix nanoseconds
    end_ns: int | None = None
    min_duration_ns: int | None = None  # trace duration bounds, inclusive
    max_duration_ns: int | None = None

    @property
    def has_range(self) -> bool:
        return self.start_ns is not None


def go_duration_ns(text: str, what: str) -> int:
    """Nanoseconds of a Go duration such as ``150ms``, ``1.5s``, ``1m30s``."""
    pos, total = 0, 0.0
    text = text.strip()
    for match in _GO_DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _NS_PER[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(text):
        if text == "0":
            return 0
        raise SearchRequestError(f"invalid {what} {text!r}: expected a duration such as 100ms, 1.5s or 2m")
    return int(total)


def parse_logfmt(text: str) -> list[tuple[str, str]]:
    """``a=b c="d e"`` -> [("a", "b"), ("c", "d e")]."""
    pairs, pos = [], 0
    text = text.strip()
    while pos < len(text):
        match = _LOGFMT.match(text, pos)
        if match is None:
            raise SearchRequestError(f"invalid tags {text!r}: expected key=value pairs separated by spaces")
        value = match.group(2)
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        pairs.append((match.group(1), value))
        pos = match.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return pairs


def _tag_condition(key: str, value: str) -> FieldExpr:
    """One ``key=value`` of a tag search as a condition on a span."""
    if key in ("name", "span.name"):
        return Comparison(Intrinsic.NAME, Op.EQ, Literal(LiteralKind.STRING, value))
    if key in ("root.name", "rootName"):
        return Comparison(Intrinsic.ROOT_NAME, Op.EQ, Literal(LiteralKind.STRING, value))
    if key in ("root.service.name", "rootServiceName"):
        return Comparison(Intrinsic.ROOT_SERVICE_NAME, Op.EQ, Literal(LiteralKind.STRING, value))
    if key in ("status.code", "status") and value.lower() in ("error", "ok", "unset", "2", "1", "0"):
        status = {"2": "error", "1": "ok", "0": "unset"}.get(value, value.lower())
        return Comparison(Intrinsic.STATUS, Op.EQ, Literal(LiteralKind.STATUS, StatusValue(status)))
    if key == "error" and value == "true":
        return Comparison(Intrinsic.STATUS, Op.EQ, Literal(LiteralKind.STATUS, StatusValue.ERROR))
    attr = Attribute(Scope.NONE, key)
    options: list[FieldExpr] = [Comparison(attr, Op.EQ, Literal(LiteralKind.STRING, value))]
    if re.fullmatch(r"-?\d+", value):
        options.append(Comparison(attr, Op.EQ, Literal(LiteralKind.INT, int(value))))
    elif re.fullmatch(r"-?(\d+\.\d*|\.\d+)([eE][-+]?\d+)?", value):
        options.append(Comparison(attr, Op.EQ, Literal(LiteralKind.FLOAT, float(value))))
    elif value in ("true", "false"):
        options.append(Comparison(attr, Op.EQ, Literal(LiteralKind.BOOL, value == "true")))
    return make_or(options)


def tags_query(tags: str) -> Query:
    pairs = parse_logfmt(tags)
    if not pairs:
        return Query(SpansetFilter(None))
    return Query(SpansetFilter(make_and([_tag_condition(k, v) for k, v in pairs])))


def count_param(params: dict[str, str], name: str, default: int, maximum: int | None = None) -> int:
    """A positive integer parameter (``limit``, ``spss``); absent or 0 gives ``default``."""
    text = params.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError as exc:
        raise SearchRequestError(f"invalid {name} {text!r}: expected a positive integer") from exc
    if value < 0:
        raise SearchRequestError(f"invalid {name} {text!r}: expected a positive integer")
    if value == 0:
        return default
    return min(value, maximum) if maximum else value


def parse_search(
    params: dict[str, str], default_limit: int = DEFAULT_LIMIT, max_limit: int = 0
) -> SearchRequest:
    """The request behind ``/api/search?...``; raises SearchRequestError / TraceQLError (400)."""
    q = params.get("q", "")
    if q.strip():
        try:
            query = parse(q)
        except TraceQLError as exc:
            raise SearchRequestError(f"invalid TraceQL query: {exc}") from exc
    else:
        query = tags_query(params.get("tags", ""))
    check_supported(query)
    start_text, end_text = params.get("start", "").strip(), params.get("end", "").strip()
    start_ns = end_ns = None
    if start_text or end_text:
        try:
            start_s, end_s = int(start_text or 0), int(end_text or 0)
        except ValueError as exc:
            raise SearchRequestError("invalid start/end: expected Unix seconds") from exc
        if start_s or end_s:
            if end_s <= start_s:
                raise SearchRequestError("invalid start/end: end must be after start")
            start_ns, end_ns = start_s * 10**9, end_s * 10**9
    min_d = params.get("minDuration", "").strip()
    max_d = params.get("maxDuration", "").strip()
    min_ns = go_duration_ns(min_d, "minDuration") if min_d else None
    max_ns = go_duration_ns(max_d, "maxDuration") if max_d else None
    if min_ns is not None and max_ns is not None and max_ns and max_ns < min_ns:
        raise SearchRequestError("invalid maxDuration: must be greater than minDuration")
    return SearchRequest(
        query=query,
        traceql=bool(q.strip()),
        limit=count_param(params, "limit", default_limit, max_limit or None),
        spss=count_param(params, "spss", DEFAULT_SPSS, MAX_SPSS),
        start_ns=start_ns,
        end_ns=end_ns,
        min_duration_ns=min_ns or None,
        max_duration_ns=max_ns or None,
    )
