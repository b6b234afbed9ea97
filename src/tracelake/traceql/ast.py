"""Typed syntax tree for the TraceQL subset Grafana's search builder emits (contract §5.1).

Nodes are frozen dataclasses so parsed queries can be compared, hashed and cached. `&&`/`||` are
stored flattened (n-ary, at least two terms) because both are associative: the evaluator then walks
one list instead of a deep tree, and equal queries compare equal however they were parenthesised.
Intrinsic aliases (`traceDuration` / `trace:duration`) parse to one enum member for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum


class Scope(StrEnum):
    """Where an attribute is looked up; NONE (`.x`) means span first, then resource."""

    NONE = ""
    RESOURCE = "resource"
    SPAN = "span"
    EVENT = "event"
    LINK = "link"
    INSTRUMENTATION = "instrumentation"


class Intrinsic(StrEnum):
    """Built-in span/trace fields; the value is the canonical (colon) spelling."""

    NAME = "span:name"
    STATUS = "span:status"
    STATUS_MESSAGE = "span:statusMessage"
    KIND = "span:kind"
    DURATION = "span:duration"
    SPAN_ID = "span:id"
    PARENT_ID = "span:parentID"
    CHILD_COUNT = "span:childCount"
    TRACE_DURATION = "trace:duration"
    ROOT_NAME = "trace:rootName"
    ROOT_SERVICE_NAME = "trace:rootService"
    TRACE_ID = "trace:id"
    EVENT_NAME = "event:name"
    EVENT_TIME_SINCE_START = "event:timeSinceStart"
    LINK_TRACE_ID = "link:traceID"
    LINK_SPAN_ID = "link:spanID"
    INSTRUMENTATION_NAME = "instrumentation:name"
    INSTRUMENTATION_VERSION = "instrumentation:version"


class StatusValue(StrEnum):
    """Keywords accepted for `status` (span status code)."""

    ERROR = "error"
    OK = "ok"
    UNSET = "unset"


class KindValue(StrEnum):
    """Keywords accepted for `kind` (span kind)."""

    UNSPECIFIED = "unspecified"
    INTERNAL = "internal"
    SERVER = "server"
    CLIENT = "client"
    PRODUCER = "producer"
    CONSUMER = "consumer"


class Op(StrEnum):
    """Comparison operators; the value is the TraceQL spelling."""

    EQ = "="
    NE = "!="
    GT = ">"
    GE = ">="
    LT = "<"
    LE = "<="
    RE = "=~"
    NRE = "!~"


class LiteralKind(Enum):
    """Static type of a literal, used for the parse-time type check Tempo also does."""

    STRING = "string"
    INT = "int"
    FLOAT = "float"
    DURATION = "duration"
    BOOL = "bool"
    NIL = "nil"
    STATUS = "status"
    KIND = "kind"


@dataclass(frozen=True, slots=True)
class Literal:
    """A constant; DURATION values are integer nanoseconds, STATUS/KIND values are enum members."""

    kind: LiteralKind
    value: str | int | float | bool | StatusValue | KindValue | None


@dataclass(frozen=True, slots=True)
class Attribute:
    """A user attribute such as `resource.service.name`, `span."a b"` or `.x`."""

    scope: Scope
    name: str


Field = Attribute | Intrinsic


@dataclass(frozen=True, slots=True)
class Comparison:
    """`field op value` — the only leaf condition the builder emits."""

    field: Field
    op: Op
    value: Literal


@dataclass(frozen=True, slots=True)
class FieldAnd:
    """All terms must hold for the same span (flattened: no term is a FieldAnd)."""

    terms: tuple[FieldExpr, ...]


@dataclass(frozen=True, slots=True)
class FieldOr:
    """Any term must hold for the span (flattened: no term is a FieldOr)."""

    terms: tuple[FieldExpr, ...]


FieldExpr = Comparison | FieldAnd | FieldOr


@dataclass(frozen=True, slots=True)
class SpansetFilter:
    """`{ expr }`; expr None is `{}`, which matches every span."""

    expr: FieldExpr | None


@dataclass(frozen=True, slots=True)
class SpansetAnd:
    """Trace must match every term (flattened)."""

    terms: tuple[SpansetExpr, ...]


@dataclass(frozen=True, slots=True)
class SpansetOr:
    """Trace must match any term (flattened)."""

    terms: tuple[SpansetExpr, ...]


class StructuralOp(StrEnum):
    """Spanset operators on the span tree; the result holds right-hand spans (``&`` forms: both)."""

    DESCENDANT = ">>"
    ANCESTOR = "<<"
    CHILD = ">"
    PARENT = "<"
    SIBLING = "~"
    NOT_DESCENDANT = "!>>"
    NOT_ANCESTOR = "!<<"
    NOT_CHILD = "!>"
    NOT_PARENT = "!<"
    NOT_SIBLING = "!~"
    UNION_DESCENDANT = "&>>"
    UNION_ANCESTOR = "&<<"
    UNION_CHILD = "&>"
    UNION_PARENT = "&<"
    UNION_SIBLING = "&~"


@dataclass(frozen=True, slots=True)
class Structural:
    """``lhs op rhs``: e.g. ``{a} >> {b}`` is the spans of b that have an ancestor in a."""

    op: StructuralOp
    lhs: SpansetExpr
    rhs: SpansetExpr


SpansetExpr = SpansetFilter | SpansetAnd | SpansetOr | Structural


class Aggregate(StrEnum):
    COUNT = "count"
    AVG = "avg"
    MIN = "min"
    MAX = "max"
    SUM = "sum"


@dataclass(frozen=True, slots=True)
class ScalarFilter:
    """``| count() > 2``, ``| avg(duration) > 20ms``: keeps spansets whose aggregate compares true."""

    aggregate: Aggregate
    field: Field | None  # None for count()
    op: Op
    value: Literal


@dataclass(frozen=True, slots=True)
class Select:
    """``| select(a, b)``: returned spans also carry these fields."""

    fields: tuple[Field, ...]


Stage = SpansetFilter | ScalarFilter | Select


@dataclass(frozen=True, slots=True)
class Query:
    """A whole TraceQL query: a spanset expression, then pipeline stages applied in order."""

    expr: SpansetExpr
    stages: tuple[Stage, ...] = ()
    # ``with (most_recent=true)``: hints change how, not what, Tempo searches; our search is newest
    # first anyway, so they are accepted and kept but change nothing
    hints: tuple[tuple[str, Literal], ...] = ()


def make_and(terms: list[FieldExpr]) -> FieldExpr:
    """Build a flattened FieldAnd (or the single term) so equal queries compare equal."""
    flat: list[FieldExpr] = []
    for t in terms:
        flat.extend(t.terms if isinstance(t, FieldAnd) else (t,))
    return flat[0] if len(flat) == 1 else FieldAnd(tuple(flat))


def make_or(terms: list[FieldExpr]) -> FieldExpr:
    """Build a flattened FieldOr (or the single term)."""
    flat: list[FieldExpr] = []
    for t in terms:
        flat.extend(t.terms if isinstance(t, FieldOr) else (t,))
    return flat[0] if len(flat) == 1 else FieldOr(tuple(flat))


def make_spanset_and(terms: list[SpansetExpr]) -> SpansetExpr:
    """Build a flattened SpansetAnd (or the single term)."""
    flat: list[SpansetExpr] = []
    for t in terms:
        flat.extend(t.terms if isinstance(t, SpansetAnd) else (t,))
    return flat[0] if len(flat) == 1 else SpansetAnd(tuple(flat))


def make_spanset_or(terms: list[SpansetExpr]) -> SpansetExpr:
    """Build a flattened SpansetOr (or the single term)."""
    flat: list[SpansetExpr] = []
    for t in terms:
        flat.extend(t.terms if isinstance(t, SpansetOr) else (t,))
    return flat[0] if len(flat) == 1 else SpansetOr(tuple(flat))
