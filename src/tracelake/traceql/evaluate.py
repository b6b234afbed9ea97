"""Evaluate a parsed TraceQL query over a ``SpanFrame``: one boolean mask per condition, computed
column-wise (Arrow compute, numpy), never a Python loop per span.

Semantics (contract §5.1, as Tempo): a spanset filter ``{…}`` selects the spans for which the whole
field expression holds; a trace matches when its spanset is non-empty. ``A && B`` needs both spansets
non-empty in the trace and returns the spans of both; ``A || B`` returns the spans of those that
matched. ``resource.x``/``span.x`` look in one scope, ``.x`` in either. An attribute whose value has
another type than the literal never matches (only ``nil`` tests presence). Regular expressions are
RE2 (Arrow's engine, like Go's) and fully anchored.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tracelake.errors import InvalidInputError
from tracelake.model.schema import AttrType
from tracelake.traceql.ast import (
    Aggregate,
    Attribute,
    Comparison,
    Field,
    FieldAnd,
    FieldExpr,
    FieldOr,
    Intrinsic,
    KindValue,
    Literal,
    LiteralKind,
    Op,
    Query,
    ScalarFilter,
    Scope,
    Select,
    SpansetAnd,
    SpansetExpr,
    SpansetFilter,
    SpansetOr,
    StatusValue,
    Structural,
    StructuralOp,
)
from tracelake.traceql.frame import DEDICATED_RESOURCE, DEDICATED_SPAN, Entries, SpanFrame, plain

STATUS_CODES = {StatusValue.UNSET: 0, StatusValue.OK: 1, StatusValue.ERROR: 2}
STATUS_NAMES = {v: k.value for k, v in STATUS_CODES.items()}
KIND_CODES = {k: i for i, k in enumerate(KindValue)}  # unspecified=0 ... consumer=5, OTLP's order
KIND_NAMES = {v: k.value for k, v in KIND_CODES.items()}

_NUMPY_OPS: dict[Op, Callable] = {
    Op.EQ: operator.eq,
    Op.NE: operator.ne,
    Op.GT: operator.gt,
    Op.GE: operator.ge,
    Op.LT: operator.lt,
    Op.LE: operator.le,
}
_ARROW_OPS: dict[Op, Callable] = {
    Op.EQ: pc.equal,
    Op.NE: pc.not_equal,
    Op.GT: pc.greater,
    Op.GE: pc.greater_equal,
    Op.LT: pc.less,
    Op.LE: pc.less_equal,
}
SPAN_COLUMNS = ("trace_id", "span_id", "start_time_unix_nano", "duration_nano", "name")
_NEEDS_WHOLE_TRACE = frozenset(
    {
        Intrinsic.TRACE_DURATION,
        Intrinsic.ROOT_NAME,
        Intrinsic.ROOT_SERVICE_NAME,
        Intrinsic.PARENT_ID,
        Intrinsic.CHILD_COUNT,
    }
)
_TRACE_LEVEL = (
    Intrinsic.TRACE_DURATION,
    Intrinsic.ROOT_NAME,
    Intrinsic.ROOT_SERVICE_NAME,
    Intrinsic.TRACE_ID,
)


class UnsupportedQueryError(InvalidInputError):
    """A well-formed query that uses something we do not evaluate (yet), or a bad regex."""


# ---------------------------------------------------------------------------- walking the tree


def comparisons(expr: SpansetExpr | FieldExpr | None) -> Iterator[Comparison]:
    """Every leaf condition, in the order written."""
    if expr is None:
        return
    if isinstance(expr, Comparison):
        yield expr
    elif isinstance(expr, SpansetFilter):
        yield from comparisons(expr.expr)
    elif isinstance(expr, Structural):
        yield from comparisons(expr.lhs)
        yield from comparisons(expr.rhs)
    else:
        for term in expr.terms:
            yield from comparisons(term)


def fields_used(query: Query) -> list[Field]:
    """Every field the query reads: conditions, then pipeline stages."""
    out = [c.field for c in comparisons(query.expr)]
    for stage in query.stages:
        if isinstance(stage, SpansetFilter):
            out += [c.field for c in comparisons(stage)]
        elif isinstance(stage, Select):
            out += list(stage.fields)
        elif stage.field is not None:
            out.append(stage.field)
    return out


def _has_structure(expr: SpansetExpr) -> bool:
    if isinstance(expr, Structural):
        return True
    if isinstance(expr, SpansetFilter):
        return False
    return any(_has_structure(t) for t in expr.terms)


def columns_for(query: Query, with_spans: bool = True) -> list[str]:
    """The ``data.parquet`` columns evaluating ``query`` reads; ``with_spans``: also what listing the
    matched spans needs (a tag search lists none)."""
    wanted = list(SPAN_COLUMNS if with_spans else ("trace_id",))
    needed = [c for f in fields_used(query) for c in _field_columns(f, _string_only(query, f))]
    if _has_structure(query.expr):
        needed.append("parent_index")
    if any(isinstance(s, ScalarFilter) for s in query.stages):
        needed.append("duration_nano")
    for column in needed:
        if column not in wanted:
            wanted.append(column)
    return wanted


def selected_span_attributes(query: Query) -> list[Attribute]:
    """Span-scoped (or unscoped) attributes of ``select(...)``: their span values are read for the
    listed spans only."""
    out: list[Attribute] = []
    for stage in query.stages:
        if isinstance(stage, Select):
            for f in stage.fields:
                if isinstance(f, Attribute) and f.scope in (Scope.SPAN, Scope.NONE) and f not in out:
                    out.append(f)
    return out


def condition_span_attributes(query: Query) -> set[str]:
    """Span-scoped (or unscoped) attribute names that conditions and aggregates read (what a block
    must hold for its ``attributes`` column to be worth reading before results are chosen)."""
    fields = [c.field for c in all_comparisons(query)]
    fields += [s.field for s in query.stages if isinstance(s, ScalarFilter) and s.field is not None]
    return {f.name for f in fields if isinstance(f, Attribute) and f.scope in (Scope.SPAN, Scope.NONE)}


def resource_attribute_names(query: Query) -> set[str]:
    """Resource-scoped (or unscoped) attribute names the query reads or shows."""
    return {
        f.name
        for f in fields_used(query)
        if isinstance(f, Attribute) and f.scope in (Scope.RESOURCE, Scope.NONE)
    }


def span_attribute_names(query: Query) -> set[str]:
    """Names of the span-scoped (or unscoped) attributes the query reads."""
    return {
        f.name for f in fields_used(query) if isinstance(f, Attribute) and f.scope in (Scope.SPAN, Scope.NONE)
    }


def _string_only(query: Query, field: Field) -> bool:
    """Whether every use of ``field`` compares it with a string (so a dedicated resource column,
    which holds the string values, answers it without the serialized resources)."""
    if not isinstance(field, Attribute):
        return False
    uses = [c for c in all_comparisons(query) if c.field == field]
    selected = any(isinstance(s, Select) and field in s.fields for s in query.stages)
    scalar = any(isinstance(s, ScalarFilter) and s.field == field for s in query.stages)
    return (
        bool(uses) and not selected and not scalar and all(c.value.kind is LiteralKind.STRING for c in uses)
    )


def all_comparisons(query: Query) -> list[Comparison]:
    stages = [s for s in query.stages if isinstance(s, SpansetFilter)]
    return [*comparisons(query.expr), *(c for s in stages for c in comparisons(s))]


def _field_columns(field: Field, string_only: bool = False) -> list[str]:
    if isinstance(field, Attribute):
        out = []
        if field.scope in (Scope.SPAN, Scope.NONE):
            out.append("attributes")
            if field.name in DEDICATED_SPAN:
                out.append(DEDICATED_SPAN[field.name][0])
        if field.scope in (Scope.RESOURCE, Scope.NONE):
            if string_only and field.name in DEDICATED_RESOURCE:
                out.append(DEDICATED_RESOURCE[field.name])
            else:
                out.append("resource")
        if field.scope is Scope.INSTRUMENTATION:
            out.append("scope")
        if field.scope is Scope.EVENT:
            out.append("events")
        if field.scope is Scope.LINK:
            out.append("links")
        return out
    return {
        Intrinsic.NAME: ["name"],
        Intrinsic.DURATION: ["duration_nano"],
        Intrinsic.TRACE_DURATION: ["start_time_unix_nano", "duration_nano"],
        Intrinsic.SPAN_ID: ["span_id"],
        Intrinsic.TRACE_ID: ["trace_id"],
        Intrinsic.STATUS: ["status_code"],
        Intrinsic.STATUS_MESSAGE: ["status_message"],
        Intrinsic.KIND: ["kind"],
        Intrinsic.PARENT_ID: ["parent_index", "parent_span_id", "span_id"],
        Intrinsic.CHILD_COUNT: ["parent_index"],
        Intrinsic.ROOT_NAME: ["parent_index", "parent_span_id", "name"],
        Intrinsic.ROOT_SERVICE_NAME: ["parent_index", "parent_span_id", "service_name"],
        Intrinsic.EVENT_NAME: ["events"],
        Intrinsic.EVENT_TIME_SINCE_START: ["events"],
        Intrinsic.LINK_TRACE_ID: ["links"],
        Intrinsic.LINK_SPAN_ID: ["links"],
        Intrinsic.INSTRUMENTATION_NAME: ["scope_name"],
        Intrinsic.INSTRUMENTATION_VERSION: ["scope_version"],
    }.get(field, [])


def check_supported(query: Query) -> None:
    """Refuse, before any block is read, what the evaluator cannot answer."""
    for cmp in all_comparisons(query):
        if cmp.field is Intrinsic.EVENT_TIME_SINCE_START:
            raise UnsupportedQueryError("event:timeSinceStart is not supported yet")
        if cmp.value.kind is LiteralKind.STRING and cmp.op in (Op.RE, Op.NRE):
            try:
                pc.match_substring_regex(pa.array([""]), pattern=_anchored(str(cmp.value.value)))
            except pa.ArrowInvalid as exc:
                raise UnsupportedQueryError(f"invalid regular expression {cmp.value.value!r}: {exc}") from exc


def _anchored(pattern: str) -> str:
    return f"^(?:{pattern})$"


# ---------------------------------------------------------------------------- comparing values


def _string_mask(array: pa.Array, op: Op, value: str) -> np.ndarray:
    """``array op value`` for a (possibly dictionary) string array; nulls never match."""
    if pa.types.is_dictionary(array.type):
        per_value = _string_mask(array.dictionary, op, value)
        indices = array.indices
        valid = indices.is_valid().to_numpy(zero_copy_only=False)
        return per_value[pc.fill_null(indices, 0).to_numpy()] & valid if len(per_value) else valid & False
    if len(array) == 0:
        return np.zeros(0, bool)
    if op in (Op.RE, Op.NRE):
        result = pc.match_substring_regex(array, pattern=_anchored(value))
        if op is Op.NRE:
            result = pc.invert(result)
    else:
        result = _ARROW_OPS[op](array, pa.scalar(value, pa.string()))
    return pc.fill_null(result, False).to_numpy(zero_copy_only=False)


def _number_mask(values: np.ndarray, op: Op, value: float | int) -> np.ndarray:
    if op in (Op.RE, Op.NRE):
        return np.zeros(len(values), bool)
    return np.asarray(_NUMPY_OPS[op](values, value), bool)


def entries_mask(entries: Entries, op: Op, lit: Literal) -> np.ndarray:
    """Which entries satisfy ``op lit``; entries of another type than the literal never do."""
    types = entries.types
    out = np.zeros(len(types), bool)
    if lit.kind is LiteralKind.STRING:
        is_str = types == AttrType.STRING
        if is_str.any():
            out |= _string_mask(entries.strs, op, str(lit.value)) & is_str
    elif lit.kind in (LiteralKind.INT, LiteralKind.FLOAT):
        is_int = types == AttrType.INT
        is_float = types == AttrType.DOUBLE
        if is_int.any():
            out |= _number_mask(entries.ints, op, lit.value) & is_int  # type: ignore[arg-type]
        if is_float.any():
            out |= _number_mask(entries.doubles, op, lit.value) & is_float  # type: ignore[arg-type]
    elif lit.kind is LiteralKind.BOOL and op in (Op.EQ, Op.NE):
        is_bool = types == AttrType.BOOL
        out |= _number_mask(entries.ints != 0, op, bool(lit.value)) & is_bool
    return out


def _scatter(n: int, rows: np.ndarray) -> np.ndarray:
    mask = np.zeros(n, bool)
    mask[rows] = True
    return mask


# ---------------------------------------------------------------------------- one condition


class Evaluator:
    """Masks for the conditions of one query over one frame."""

    def __init__(self, frame: SpanFrame, relaxed: bool = False) -> None:
        """``relaxed``: conditions that need whole traces hold everywhere (a superset, for frames
        whose traces are incomplete or unsorted)."""
        self.frame = frame
        self.relaxed = relaxed

    def attribute_sources(self, attr: Attribute) -> list[tuple[Entries, np.ndarray | None]]:
        """(entries, span index per entry row) pairs for ``attr``; None means entry rows are spans."""
        frame = self.frame
        sources: list[tuple[Entries, np.ndarray | None]] = []
        if attr.scope in (Scope.SPAN, Scope.NONE):
            sources.append((frame.span_entries(attr.name), None))
        if attr.scope in (Scope.RESOURCE, Scope.NONE):
            dedicated = DEDICATED_RESOURCE.get(attr.name)
            if frame.has("resource"):
                sources.append(frame.dictionary_entries("resource", attr.name))
            elif dedicated is not None and frame.has(dedicated):
                sources.append(frame.dedicated_resource_entries(dedicated))  # string values only
            # else: not read, because no resource of the block has the key
        if attr.scope is Scope.INSTRUMENTATION:
            sources.append(frame.dictionary_entries("scope", attr.name))
        if attr.scope in (Scope.EVENT, Scope.LINK):
            column = "events" if attr.scope is Scope.EVENT else "links"
            sources.append((frame.nested_entries(column, attr.name), None))
        return sources

    def _entries_to_spans(self, entries: Entries, index: np.ndarray | None, hit: np.ndarray) -> np.ndarray:
        n = self.frame.n
        if index is None:
            return _scatter(n, entries.rows[hit])
        size = max(int(index.max(initial=-1)), int(entries.rows.max(initial=-1))) + 1
        if size == 0:
            return np.zeros(n, bool)
        per_value = _scatter(size, entries.rows[hit])
        return np.where(index >= 0, per_value[np.maximum(index, 0)], False)

    def attribute_mask(self, attr: Attribute, op: Op, lit: Literal) -> np.ndarray:
        n = self.frame.n
        mask = np.zeros(n, bool)
        for entries, index in self.attribute_sources(attr):
            if lit.kind is LiteralKind.NIL:
                hit = np.ones(len(entries.rows), bool)
            else:
                hit = entries_mask(entries, op, lit)
            mask |= self._entries_to_spans(entries, index, hit)
        if lit.kind is LiteralKind.NIL and op is Op.EQ:
            return ~mask
        return mask

    def intrinsic_mask(self, field: Intrinsic, op: Op, lit: Literal) -> np.ndarray:
        frame = self.frame
        match field:
            case Intrinsic.NAME:
                return _string_mask(frame.column("name"), op, str(lit.value))
            case Intrinsic.STATUS_MESSAGE:
                return _string_mask(frame.column("status_message"), op, str(lit.value))
            case Intrinsic.INSTRUMENTATION_NAME:
                return _string_mask(frame.column("scope_name"), op, str(lit.value))
            case Intrinsic.INSTRUMENTATION_VERSION:
                return _string_mask(frame.column("scope_version"), op, str(lit.value))
            case Intrinsic.STATUS:
                codes = frame.column("status_code").to_numpy()
                return _number_mask(codes, op, STATUS_CODES[lit.value])  # type: ignore[index]
            case Intrinsic.KIND:
                kinds = frame.column("kind").to_numpy()
                return _number_mask(kinds, op, KIND_CODES[lit.value])  # type: ignore[index]
            case Intrinsic.DURATION:
                return _number_mask(frame.durations, op, lit.value)  # type: ignore[arg-type]
            case Intrinsic.TRACE_DURATION:
                per_trace = _number_mask(frame.trace_durations, op, lit.value)  # type: ignore[arg-type]
                return frame.per_span(per_trace)
            case Intrinsic.CHILD_COUNT:
                parents = frame.parent_row
                counts = np.bincount(parents[parents >= 0], minlength=frame.n)
                return _number_mask(counts, op, lit.value)  # type: ignore[arg-type]
            case Intrinsic.ROOT_NAME | Intrinsic.ROOT_SERVICE_NAME:
                column = "name" if field is Intrinsic.ROOT_NAME else "service_name"
                roots = pa.array(frame.root_rows, mask=frame.root_rows < 0)  # no root: no match
                per_trace = _string_mask(plain(frame.column(column)).take(roots), op, str(lit.value))
                return frame.per_span(per_trace)
            case Intrinsic.SPAN_ID | Intrinsic.TRACE_ID | Intrinsic.PARENT_ID:
                return _string_mask(self.hex_ids(field), op, str(lit.value).lower())
            case Intrinsic.EVENT_NAME:
                entries = frame.nested_entries("events", None)
                return self._entries_to_spans(entries, None, entries_mask(entries, op, lit))
            case Intrinsic.LINK_TRACE_ID | Intrinsic.LINK_SPAN_ID:
                entries = frame.link_ids("trace_id" if field is Intrinsic.LINK_TRACE_ID else "span_id")
                return self._entries_to_spans(entries, None, entries_mask(entries, op, lit))
        raise UnsupportedQueryError(f"{field.value} is not supported yet")

    def hex_ids(self, field: Intrinsic) -> pa.Array:
        """Span, trace or parent ids as lowercase hex (for the rare queries that compare them)."""
        frame = self.frame
        if field is Intrinsic.PARENT_ID:
            span_ids = frame.column("span_id").cast(pa.binary())
            parents = frame.parent_row
            from_index = span_ids.take(pa.array(np.maximum(parents, 0), mask=parents < 0))
            ids = pc.coalesce(from_index, frame.column("parent_span_id").cast(pa.binary()))
        else:
            ids = frame.column("span_id" if field is Intrinsic.SPAN_ID else "trace_id")
        return pa.array([None if v is None else v.hex() for v in ids.to_pylist()], pa.string())

    def comparison_mask(self, cmp: Comparison) -> np.ndarray:
        if isinstance(cmp.field, Attribute):
            return self.attribute_mask(cmp.field, cmp.op, cmp.value)
        if self.relaxed and cmp.field in _NEEDS_WHOLE_TRACE:
            return np.ones(self.frame.n, bool)
        if cmp.value.kind is LiteralKind.NIL:  # intrinsics are always present
            return np.full(self.frame.n, cmp.op is Op.NE)
        return self.intrinsic_mask(cmp.field, cmp.op, cmp.value)

    def field_mask(self, expr: FieldExpr | None) -> np.ndarray:
        if expr is None:
            return np.ones(self.frame.n, bool)
        if isinstance(expr, Comparison):
            return self.comparison_mask(expr)
        masks = [self.field_mask(t) for t in expr.terms]
        combine = np.logical_and if isinstance(expr, FieldAnd) else np.logical_or
        assert isinstance(expr, FieldAnd | FieldOr)
        return combine.reduce(masks)


# ---------------------------------------------------------------------------- spansets


@dataclass
class Match:
    """Per trace of the frame: whether it matched; per span: whether it is in the result spanset."""

    traces: np.ndarray
    spans: np.ndarray


def evaluate(query: Query, frame: SpanFrame) -> Match:
    ev = Evaluator(frame)
    match = _spanset(query.expr, ev)
    for stage in query.stages:
        if isinstance(stage, SpansetFilter):
            spans = match.spans & ev.field_mask(stage.expr)
            match = Match(frame.any_per_trace(spans), spans)
        elif isinstance(stage, ScalarFilter):
            keep = match.traces & _aggregate_holds(ev, stage, match.spans)
            match = Match(keep, match.spans & frame.per_span(keep))
    return match


def _spanset(expr: SpansetExpr, ev: Evaluator) -> Match:
    frame = ev.frame
    if isinstance(expr, SpansetFilter):
        spans = ev.field_mask(expr.expr)
        return Match(frame.any_per_trace(spans), spans)
    if isinstance(expr, Structural):
        lhs, rhs = _spanset(expr.lhs, ev), _spanset(expr.rhs, ev)
        spans = structural(frame, expr.op, lhs.spans, rhs.spans)
        return Match(frame.any_per_trace(spans), spans)
    parts = [_spanset(t, ev) for t in expr.terms]
    if isinstance(expr, SpansetAnd):
        traces = np.logical_and.reduce([p.traces for p in parts])
        spans = np.logical_or.reduce([p.spans for p in parts]) & frame.per_span(traces)
        return Match(traces, spans)
    assert isinstance(expr, SpansetOr)
    traces = np.logical_or.reduce([p.traces for p in parts])
    spans = np.logical_or.reduce([p.spans & frame.per_span(p.traces) for p in parts])
    return Match(traces, spans)


# ---------------------------------------------------------------------------- the span tree


def _has_ancestor_in(parent: np.ndarray, marked: np.ndarray) -> np.ndarray:
    """Spans with an ancestor in ``marked``: one vectorised step per tree level."""
    out = np.zeros(len(parent), bool)
    rows = np.flatnonzero(parent >= 0)
    up = parent[rows]
    while len(rows):
        out[rows] |= marked[up]
        keep = parent[up] >= 0
        rows, up = rows[keep], parent[up[keep]]
    return out


def _is_ancestor_of(parent: np.ndarray, marked: np.ndarray) -> np.ndarray:
    """Spans that are an ancestor of some span in ``marked``."""
    out = np.zeros(len(parent), bool)
    up = parent[np.flatnonzero(marked)]
    up = up[up >= 0]
    while len(up):
        up = np.unique(up)
        fresh = up[~out[up]]  # a visited span's ancestors are marked already
        out[fresh] = True
        up = parent[fresh]
        up = up[up >= 0]
    return out


def _child_of(parent: np.ndarray, marked: np.ndarray) -> np.ndarray:
    return (parent >= 0) & marked[np.maximum(parent, 0)]


def _parent_of(parent: np.ndarray, marked: np.ndarray) -> np.ndarray:
    out = np.zeros(len(parent), bool)
    out[parent[marked & (parent >= 0)]] = True
    return out


def _sibling_of(parent: np.ndarray, marked: np.ndarray) -> np.ndarray:
    """Spans sharing their parent with another span in ``marked``."""
    counts = np.bincount(parent[marked & (parent >= 0)], minlength=len(parent))
    has_parent = parent >= 0
    others = counts[np.maximum(parent, 0)] - (marked & has_parent)
    return has_parent & (others > 0)


_RELATIONS = {
    ">>": (_has_ancestor_in, _is_ancestor_of),  # rhs spans below lhs; lhs spans above those
    "<<": (_is_ancestor_of, _has_ancestor_in),
    ">": (_child_of, _parent_of),
    "<": (_parent_of, _child_of),
    "~": (_sibling_of, _sibling_of),
}


def structural(frame: SpanFrame, op: StructuralOp, lhs: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """The result spans of ``{lhs} op {rhs}`` (Tempo's semantics: right-hand spans related to some
    left-hand span; ``!`` forms: right-hand spans that are not; ``&`` forms: both related sides)."""
    parent = frame.parent_row
    base = op.value.lstrip("!&")
    forward, backward = _RELATIONS[base]
    related = forward(parent, lhs)
    if op.value.startswith("!"):
        return rhs & ~related
    right = rhs & related
    if op.value.startswith("&"):
        return right | (lhs & backward(parent, right))
    return right


# ---------------------------------------------------------------------------- pipelines


def numeric_values(ev: Evaluator, field: Field) -> np.ndarray:
    """A number per span for aggregates (NaN where the span has none)."""
    frame = ev.frame
    if field is Intrinsic.DURATION:
        return frame.durations.astype(np.float64)
    if field is Intrinsic.TRACE_DURATION:
        return frame.per_span(frame.trace_durations).astype(np.float64)
    if field is Intrinsic.CHILD_COUNT:
        parents = frame.parent_row
        return np.bincount(parents[parents >= 0], minlength=frame.n).astype(np.float64)
    out = np.full(frame.n, np.nan)
    if isinstance(field, Attribute):
        for entries, index in ev.attribute_sources(field):
            values = np.where(entries.types == AttrType.INT, entries.ints, entries.doubles).astype(np.float64)
            numeric = (entries.types == AttrType.INT) | (entries.types == AttrType.DOUBLE)
            if index is None:
                out[entries.rows[numeric]] = values[numeric]
            else:
                per_value = np.full(
                    max(int(index.max(initial=-1)), int(entries.rows.max(initial=-1))) + 1, np.nan
                )
                per_value[entries.rows[numeric]] = values[numeric]
                found = np.where(
                    index >= 0, per_value[np.maximum(index, 0)] if len(per_value) else np.nan, np.nan
                )
                out = np.where(np.isnan(out), found, out)
    return out


def _aggregate_holds(ev: Evaluator, stage: ScalarFilter, spans: np.ndarray) -> np.ndarray:
    frame = ev.frame
    traces = frame.trace_of_row
    if stage.aggregate is Aggregate.COUNT:
        result = np.bincount(traces[spans], minlength=frame.traces).astype(np.float64)
    else:
        assert stage.field is not None
        values = numeric_values(ev, stage.field)
        use = spans & ~np.isnan(values)
        rows, vals = traces[use], values[use]
        counts = np.bincount(rows, minlength=frame.traces)
        if stage.aggregate is Aggregate.SUM:
            result = np.bincount(rows, vals, minlength=frame.traces)
        elif stage.aggregate is Aggregate.AVG:
            with np.errstate(invalid="ignore", divide="ignore"):
                result = np.bincount(rows, vals, minlength=frame.traces) / counts
        else:
            fill = np.inf if stage.aggregate is Aggregate.MIN else -np.inf
            result = np.full(frame.traces, fill)
            (np.minimum if stage.aggregate is Aggregate.MIN else np.maximum).at(result, rows, vals)
        result = np.where(counts > 0, result, np.nan)
    with np.errstate(invalid="ignore"):
        return np.asarray(_NUMPY_OPS[stage.op](result, float(stage.value.value)), bool)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- what results show


def shown_fields(query: Query) -> list[Field]:
    """Fields whose values each returned span carries, in query order (Tempo: those the query
    touched, except name, duration and the trace-level intrinsics and ids)."""
    out: list[Field] = []
    skip = (Intrinsic.NAME, Intrinsic.DURATION, Intrinsic.SPAN_ID, Intrinsic.PARENT_ID, *_TRACE_LEVEL)
    fields = [c.field for c in comparisons(_result_side(query.expr))]
    for stage in query.stages:
        if isinstance(stage, SpansetFilter):
            fields += [c.field for c in comparisons(stage)]
        elif isinstance(stage, Select):
            fields += list(stage.fields)
    for field in fields:
        if field not in skip and field not in out:
            out.append(field)
    return out


def _result_side(expr: SpansetExpr) -> SpansetExpr:
    """The part of the query whose spans are returned: the right side of a structural operator
    (both sides of its ``&`` form)."""
    if isinstance(expr, Structural) and not expr.op.value.startswith("&"):
        return _result_side(expr.rhs)
    return expr


def shown_key(field: Field) -> str:
    """The unscoped key Tempo uses in a result span's attributes."""
    if isinstance(field, Attribute):
        return field.name
    return {
        Intrinsic.STATUS: "status",
        Intrinsic.KIND: "kind",
        Intrinsic.STATUS_MESSAGE: "statusMessage",
        Intrinsic.CHILD_COUNT: "childCount",
    }.get(field, field.value.split(":", 1)[1])


TypedValue = tuple[str, str | int | float | bool]  # (OTLP AnyValue field, value)


def shown_values(ev: Evaluator, field: Field, rows: np.ndarray) -> dict[int, TypedValue]:
    """The value of ``field`` for each of ``rows`` that has one (a few rows: Python is fine here)."""
    frame = ev.frame
    wanted = set(rows.tolist())
    out: dict[int, TypedValue] = {}
    if isinstance(field, Attribute):
        for entries, index in reversed(ev.attribute_sources(field)):  # span scope wins over resource
            if index is None:
                keep = np.flatnonzero(np.isin(entries.rows, rows))
                pairs = zip(entries.rows[keep].tolist(), keep.tolist(), strict=True)
            else:
                position = {r: i for i, r in enumerate(entries.rows.tolist())}
                pairs = [(r, position[int(index[r])]) for r in wanted if int(index[r]) in position]
            for row, i in pairs:
                typed = _entry_value(entries, i)
                if typed is not None:
                    out[row] = typed
        return out
    take = pa.array(sorted(wanted), pa.int64())
    if field is Intrinsic.STATUS:
        values = frame.column("status_code").take(take).to_pylist()
        return {
            r: ("stringValue", STATUS_NAMES.get(v, str(v)))
            for r, v in zip(sorted(wanted), values, strict=True)
        }
    if field is Intrinsic.KIND:
        values = frame.column("kind").take(take).to_pylist()
        return {
            r: ("stringValue", KIND_NAMES.get(v, str(v))) for r, v in zip(sorted(wanted), values, strict=True)
        }
    column = {
        Intrinsic.STATUS_MESSAGE: "status_message",
        Intrinsic.INSTRUMENTATION_NAME: "scope_name",
        Intrinsic.INSTRUMENTATION_VERSION: "scope_version",
    }.get(field)  # type: ignore[call-overload]
    if column is not None:
        values = plain(frame.column(column)).take(take).to_pylist()
        return {r: ("stringValue", v) for r, v in zip(sorted(wanted), values, strict=True) if v is not None}
    return out


def _entry_value(entries: Entries, i: int) -> TypedValue | None:
    t = int(entries.types[i])
    if t == AttrType.STRING:
        return ("stringValue", entries.strs[i].as_py())
    if t == AttrType.INT:
        return ("intValue", int(entries.ints[i]))
    if t == AttrType.DOUBLE:
        return ("doubleValue", float(entries.doubles[i]))
    if t == AttrType.BOOL:
        return ("boolValue", bool(entries.ints[i]))
    return None
