"""TraceQL parser: every form of contract §5.1, precedence, literals, errors and a format round trip."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracelake.errors import InvalidInputError
from tracelake.traceql import TraceQLError, format, parse
from tracelake.traceql.ast import (
    Attribute,
    Comparison,
    FieldAnd,
    FieldExpr,
    FieldOr,
    Intrinsic,
    KindValue,
    Literal,
    LiteralKind,
    Op,
    Query,
    Scope,
    SpansetAnd,
    SpansetExpr,
    SpansetFilter,
    SpansetOr,
    StatusValue,
    make_and,
    make_or,
    make_spanset_and,
    make_spanset_or,
)

MS = 1_000_000
S = 1_000_000_000


def s(v: str) -> Literal:
    return Literal(LiteralKind.STRING, v)


def res(name: str) -> Attribute:
    return Attribute(Scope.RESOURCE, name)


def span(name: str) -> Attribute:
    return Attribute(Scope.SPAN, name)


def cond(text: str) -> FieldExpr:
    """The field expression of a single-filter query."""
    q = parse(text)
    assert isinstance(q.expr, SpansetFilter)
    assert q.expr.expr is not None
    return q.expr.expr


def value(text: str) -> Literal:
    c = cond("{.x=" + text + "}")
    assert isinstance(c, Comparison)
    return c.value


# ------------------------------------------------------------------------------------ §5.1 examples

CONTRACT_EXAMPLES = [
    "{}",
    '{resource.service.name="frontend" && name="GET /cart" && status=error && duration>100ms}',
    '{resource.service.name="frontend" && traceDuration>=1s && traceDuration<5s}',
    '{span.http.status_code=500 && .deployment.environment="prod"}',
    '{(resource.service.name="a" || resource.service.name="b") && kind=server}',
    '{resource.service.name=~"api|web" && span.http.url!~"/health.*"}',
    '{span.db.name="orders" || span.db.system="orders" || span.peer.service="orders"}',
]


@pytest.mark.parametrize("q", CONTRACT_EXAMPLES)
def test_contract_examples_parse_and_are_canonical(q: str) -> None:
    # Grafana's own spelling is already our canonical form.
    assert format(parse(q)) == q


def test_empty_filter() -> None:
    assert parse("{}") == Query(SpansetFilter(None))
    assert parse("  {  }  ") == Query(SpansetFilter(None))


def test_example_trees() -> None:
    assert cond(CONTRACT_EXAMPLES[1]) == FieldAnd(
        (
            Comparison(res("service.name"), Op.EQ, s("frontend")),
            Comparison(Intrinsic.NAME, Op.EQ, s("GET /cart")),
            Comparison(Intrinsic.STATUS, Op.EQ, Literal(LiteralKind.STATUS, StatusValue.ERROR)),
            Comparison(Intrinsic.DURATION, Op.GT, Literal(LiteralKind.DURATION, 100 * MS)),
        )
    )
    assert cond(CONTRACT_EXAMPLES[3]) == FieldAnd(
        (
            Comparison(span("http.status_code"), Op.EQ, Literal(LiteralKind.INT, 500)),
            Comparison(Attribute(Scope.NONE, "deployment.environment"), Op.EQ, s("prod")),
        )
    )
    a = Comparison(res("service.name"), Op.EQ, s("a"))
    b = Comparison(res("service.name"), Op.EQ, s("b"))
    server = Comparison(Intrinsic.KIND, Op.EQ, Literal(LiteralKind.KIND, KindValue.SERVER))
    assert cond(CONTRACT_EXAMPLES[4]) == FieldAnd((FieldOr((a, b)), server))
    assert cond(CONTRACT_EXAMPLES[5]) == FieldAnd(
        (
            Comparison(res("service.name"), Op.RE, s("api|web")),
            Comparison(span("http.url"), Op.NRE, s("/health.*")),
        )
    )
    assert isinstance(cond(CONTRACT_EXAMPLES[6]), FieldOr)
    assert len(cond(CONTRACT_EXAMPLES[6]).terms) == 3  # type: ignore[union-attr]


# ------------------------------------------------------------------------------ structure, precedence

A = Comparison(Attribute(Scope.NONE, "a"), Op.EQ, Literal(LiteralKind.INT, 1))
B = Comparison(Attribute(Scope.NONE, "b"), Op.EQ, Literal(LiteralKind.INT, 2))
C = Comparison(Attribute(Scope.NONE, "c"), Op.EQ, Literal(LiteralKind.INT, 3))


def test_and_binds_tighter_than_or() -> None:
    assert cond("{.a=1 || .b=2 && .c=3}") == FieldOr((A, FieldAnd((B, C))))
    assert cond("{.a=1 && .b=2 || .c=3}") == FieldOr((FieldAnd((A, B)), C))


def test_parentheses_override_precedence() -> None:
    assert cond("{(.a=1 || .b=2) && .c=3}") == FieldAnd((FieldOr((A, B)), C))
    assert cond("{.a=1 && (.b=2 || .c=3)}") == FieldAnd((A, FieldOr((B, C))))
    assert cond("{((.a=1))}") == A


def test_associative_operators_flatten() -> None:
    assert cond("{.a=1 && (.b=2 && .c=3)}") == cond("{(.a=1 && .b=2) && .c=3}") == FieldAnd((A, B, C))
    assert cond("{.a=1 || (.b=2 || .c=3)}") == FieldOr((A, B, C))


def test_spanset_operators_and_parentheses() -> None:
    fa, fb, fc = SpansetFilter(A), SpansetFilter(B), SpansetFilter(C)
    assert parse("{.a=1} && {.b=2}").expr == SpansetAnd((fa, fb))
    assert parse("{.a=1} || {.b=2} && {.c=3}").expr == SpansetOr((fa, SpansetAnd((fb, fc))))
    assert parse("({.a=1} || {.b=2}) && {.c=3}").expr == SpansetAnd((SpansetOr((fa, fb)), fc))
    assert parse("{} && ({})").expr == SpansetAnd((SpansetFilter(None), SpansetFilter(None)))


def test_whitespace_anywhere() -> None:
    spaced = ' \n{ \t resource.service.name  =~  "a"\n&&\n( kind != client ||duration<= 2s ) }\t'
    tight = '{resource.service.name=~"a"&&(kind!=client||duration<=2s)}'
    assert parse(spaced) == parse(tight)


# ------------------------------------------------------------------------------------------ operators


@pytest.mark.parametrize("op", list(Op))
def test_all_operators(op: Op) -> None:
    c = cond(f'{{span.x {op.value} "v"}}')
    assert c == Comparison(span("x"), op, s("v"))


def test_operators_without_spaces_stop_attribute_names() -> None:
    assert cond("{span.x!=1}") == Comparison(span("x"), Op.NE, Literal(LiteralKind.INT, 1))
    assert cond("{span.x!~`a`}") == Comparison(span("x"), Op.NRE, s("a"))
    assert cond("{span.x<=-1}") == Comparison(span("x"), Op.LE, Literal(LiteralKind.INT, -1))


# -------------------------------------------------------------------------------------------- fields


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("name", Intrinsic.NAME),
        ("span:name", Intrinsic.NAME),
        ("statusMessage", Intrinsic.STATUS_MESSAGE),
        ("span:statusMessage", Intrinsic.STATUS_MESSAGE),
        ("rootName", Intrinsic.ROOT_NAME),
        ("trace:rootName", Intrinsic.ROOT_NAME),
        ("rootServiceName", Intrinsic.ROOT_SERVICE_NAME),
        ("trace:rootService", Intrinsic.ROOT_SERVICE_NAME),
        ("span:id", Intrinsic.SPAN_ID),
        ("span:parentID", Intrinsic.PARENT_ID),
        ("trace:id", Intrinsic.TRACE_ID),
        ("event:name", Intrinsic.EVENT_NAME),
        ("link:traceID", Intrinsic.LINK_TRACE_ID),
        ("link:spanID", Intrinsic.LINK_SPAN_ID),
        ("instrumentation:name", Intrinsic.INSTRUMENTATION_NAME),
        ("instrumentation:version", Intrinsic.INSTRUMENTATION_VERSION),
        ("resource.service.name", res("service.name")),
        ("span.http.status_code", span("http.status_code")),
        ("event.exception.message", Attribute(Scope.EVENT, "exception.message")),
        ("link.x", Attribute(Scope.LINK, "x")),
        ("instrumentation.lib-name", Attribute(Scope.INSTRUMENTATION, "lib-name")),
        (".deployment.environment", Attribute(Scope.NONE, "deployment.environment")),
        ('span."a b"', span("a b")),
        ('resource."k=\\"v\\""', res('k="v"')),
        ('."x y"', Attribute(Scope.NONE, "x y")),
    ],
)
def test_string_fields(text: str, field: object) -> None:
    assert cond(f'{{{text}="v"}}') == Comparison(field, Op.EQ, s("v"))  # type: ignore[arg-type]


def test_duration_and_enum_intrinsics() -> None:
    assert cond("{duration>1s}") == cond("{span:duration>1s}")
    assert cond("{traceDuration>1s}") == cond("{trace:duration>1s}")
    c = cond("{traceDuration>1s}")
    assert isinstance(c, Comparison)
    assert c.field is Intrinsic.TRACE_DURATION
    assert cond("{event:timeSinceStart>1ms}") == Comparison(
        Intrinsic.EVENT_TIME_SINCE_START, Op.GT, Literal(LiteralKind.DURATION, MS)
    )
    assert cond("{span:childCount>2}") == Comparison(
        Intrinsic.CHILD_COUNT, Op.GT, Literal(LiteralKind.INT, 2)
    )
    assert cond("{span:status=ok}") == cond("{status=ok}")
    assert cond("{span:kind=client}") == cond("{kind=client}")
    # aliases print in their short form
    assert format(parse("{trace:rootService=`x`}")) == '{rootServiceName="x"}'
    assert format(parse("{span:id=`x`}")) == '{span:id="x"}'


@pytest.mark.parametrize("kw", list(StatusValue))
def test_status_keywords(kw: StatusValue) -> None:
    assert cond(f"{{status={kw.value}}}") == Comparison(
        Intrinsic.STATUS, Op.EQ, Literal(LiteralKind.STATUS, kw)
    )


@pytest.mark.parametrize("kw", list(KindValue))
def test_kind_keywords(kw: KindValue) -> None:
    assert cond(f"{{kind!={kw.value}}}") == Comparison(Intrinsic.KIND, Op.NE, Literal(LiteralKind.KIND, kw))


# ------------------------------------------------------------------------------------------- literals


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("100ns", 100),
        ("10us", 10_000),
        ("10µs", 10_000),
        ("500us", 500_000),
        ("150ms", 150 * MS),
        ("1s", S),
        ("1.5s", 1_500 * MS),
        ("0.1s", 100 * MS),
        ("2m", 120 * S),
        ("1h", 3600 * S),
        ("1h30m", 5400 * S),
        ("1d", 86400 * S),
        ("1w", 7 * 86400 * S),
        ("0s", 0),
        ("-5ms", -5 * MS),
    ],
)
def test_durations_are_nanoseconds(text: str, ns: int) -> None:
    assert value(text) == Literal(LiteralKind.DURATION, ns)


@pytest.mark.parametrize(
    ("text", "lit"),
    [
        ("0", Literal(LiteralKind.INT, 0)),
        ("500", Literal(LiteralKind.INT, 500)),
        ("-7", Literal(LiteralKind.INT, -7)),
        ("1.5", Literal(LiteralKind.FLOAT, 1.5)),
        ("2.", Literal(LiteralKind.FLOAT, 2.0)),
        ("1e3", Literal(LiteralKind.FLOAT, 1000.0)),
        ("-2.5E-1", Literal(LiteralKind.FLOAT, -0.25)),
        ("true", Literal(LiteralKind.BOOL, True)),
        ("false", Literal(LiteralKind.BOOL, False)),
        ("nil", Literal(LiteralKind.NIL, None)),
        ("error", Literal(LiteralKind.STATUS, StatusValue.ERROR)),
        ("server", Literal(LiteralKind.KIND, KindValue.SERVER)),
    ],
)
def test_scalar_literals(text: str, lit: Literal) -> None:
    assert value(text) == lit


@pytest.mark.parametrize(
    ("text", "decoded"),
    [
        ('"plain"', "plain"),
        ('""', ""),
        ('"a\\"b"', 'a"b'),
        ('"back\\\\slash"', "back\\slash"),
        ('"tab\\tnl\\n"', "tab\tnl\n"),
        ('"\\x41\\u00e9\\U0001F600"', "Aé😀"),
        ('"\\d+\\.go"', "\\d+\\.go"),  # unknown escapes stay literal: regexes keep working
        ('`raw \\d "q"`', 'raw \\d "q"'),  # backticks are raw, like Go
        ("``", ""),
        ('"ünï cødé"', "ünï cødé"),
        ('"{}&&||()"', "{}&&||()"),
    ],
)
def test_strings(text: str, decoded: str) -> None:
    assert value(text) == s(decoded)


def test_lenient_unescaped_quotes() -> None:
    # Older Grafana builders send inner quotes unescaped (contract §5.1).
    assert value('"say "hi" now"') == s('say "hi" now')
    assert cond('{name="a"b" && .x="c"}') == FieldAnd(
        (Comparison(Intrinsic.NAME, Op.EQ, s('a"b')), Comparison(Attribute(Scope.NONE, "x"), Op.EQ, s("c")))
    )
    assert format(parse('{name="a"b"}')) == '{name="a\\"b"}'


def test_type_compatible_comparisons() -> None:
    parse("{duration > 100}")  # numbers compare with durations
    parse("{span:childCount > 1.5}")
    parse("{name = nil}")
    parse("{span.x = error}")  # attributes: type known only per span
    parse("{.x > 1ms && .x =~ `a` && .x != true}")


# --------------------------------------------------------------------------------------------- errors

ERRORS = [
    ("", 0, "empty query"),
    ("   ", 0, "empty query"),
    ("{", 1, "expected an attribute or intrinsic, found end of query"),
    ("{name=", 6, "expected a value after '='"),
    ("{resource.x = }", 14, "expected a value after '='"),
    ("{.a=1", 5, "expected '&&', '||' or '}'"),
    ('{name="abc}', 6, "unterminated string"),
    ("{name=`abc}", 6, "unterminated string"),
    ('{span."abc=1}', 6, "unterminated string"),
    ("{foo=1}", 1, "unknown intrinsic 'foo'"),
    ("{span:nope=1}", 1, "unknown intrinsic 'span:nope'"),
    ("{trace:name=`x`}", 1, "unknown intrinsic 'trace:name'"),
    ("{bogus.x=1}", 1, "unknown attribute scope 'bogus'"),
    ("{parent.x=1}", 1, "unknown attribute scope 'parent'"),
    ("{span.=1}", 6, "expected an attribute name after '.'"),
    ('{span.""=1}', 6, "empty attribute name"),
    ("{name}", 5, "expected a comparison operator after 'name'"),
    ("{.a 1}", 4, "expected a comparison operator"),
    ("{.a==1}", 4, "expected a value after '='"),
    ("{.a=1 &&}", 8, "expected an attribute or intrinsic, found '}'"),
    ("{.a=1 & .b=2}", 6, "unexpected '&'"),
    ("{.a=1} | by(.x)", 9, "pipeline stage 'by' is not supported"),
    ("{.a=1} | count() > `x`", 19, "'count()' compares with a number or a duration"),
    ("{.a=1} | select()", 16, "expected an attribute or intrinsic, found ')'"),
    ("{.a=1} | count() =~ 1", 17, "expected a comparison after 'count()'"),
    ("{!(.a=1)}", 1, "unary '!' is not supported"),
    ("{.a=1} >> .b=1", 10, "expected '{'"),
    ("{.a=1} {.b=1}", 7, "expected '&&', '||', '|' or end of query"),
    ("{(.a=1}", 6, "expected '&&', '||' or ')'"),
    ("({.a=1}", 7, "expected ')'"),
    (".a=1", 0, "expected '{'"),
    ("{.a=1}}", 6, "expected '&&', '||', '|' or end of query"),
    ("{.a=5xx}", 4, "invalid duration '5xx'"),
    ("{.a=1h30}", 6, "missing unit in duration"),
    ("{.a=1e3s}", 4, "invalid duration"),
    ('{.a="\\x4"}', 5, "invalid escape"),
    ("{.a=@}", 4, "unexpected character '@'"),
    ("{.a=abc}", 4, "expected a value after '=', found 'abc'"),
    ("{.a=~1}", 5, "'=~' needs a string value"),
    ("{.a!~nil}", 5, "'!~' needs a string value"),
    ("{.a>nil}", 3, "nil can only be compared with '=' or '!='"),
    ('{duration="x"}', 10, "binary operations must operate on the same type"),
    ("{status=server}", 8, "binary operations must operate on the same type"),
    ("{kind=error}", 6, "binary operations must operate on the same type"),
    ("{name=1}", 6, "binary operations must operate on the same type"),
    ("{status=~`err`}", 9, "binary operations must operate on the same type"),
    ("{traceDuration>true}", 15, "binary operations must operate on the same type"),
    ("{error=1}", 1, "expected an attribute or intrinsic, found 'error'"),
]


@pytest.mark.parametrize(("text", "pos", "reason"), ERRORS)
def test_malformed_queries(text: str, pos: int, reason: str) -> None:
    with pytest.raises(TraceQLError) as info:
        parse(text)
    err = info.value
    assert err.position == pos, err.message
    assert reason in err.message
    assert str(err) == f"parse error at line 1, col {pos + 1}: {err.message}"


def test_error_is_invalid_input_with_line_and_col() -> None:
    with pytest.raises(InvalidInputError) as info:
        parse('{\n  name = "x" &&\n  foo = 1\n}')
    err = info.value
    assert isinstance(err, TraceQLError)
    assert (err.position, err.line, err.col) == (20, 3, 3)
    assert str(err) == "parse error at line 3, col 3: unknown intrinsic 'foo'"


# ----------------------------------------------------------------------------------------- round trip

_scopes = st.sampled_from(list(Scope))
_attr_names = st.text(min_size=1, max_size=12)
_fields = st.one_of(st.builds(Attribute, _scopes, _attr_names), st.sampled_from(list(Intrinsic)))
_any_literals = st.one_of(
    st.builds(Literal, st.just(LiteralKind.STRING), st.text(max_size=12)),
    st.builds(Literal, st.just(LiteralKind.INT), st.integers(-(2**63), 2**63 - 1)),
    st.builds(Literal, st.just(LiteralKind.FLOAT), st.floats(allow_nan=False, allow_infinity=False)),
    st.builds(Literal, st.just(LiteralKind.DURATION), st.integers(-(10**15), 10**15)),
    st.builds(Literal, st.just(LiteralKind.BOOL), st.booleans()),
    st.just(Literal(LiteralKind.NIL, None)),
    st.builds(Literal, st.just(LiteralKind.STATUS), st.sampled_from(list(StatusValue))),
    st.builds(Literal, st.just(LiteralKind.KIND), st.sampled_from(list(KindValue))),
)


@st.composite
def _comparisons(draw: st.DrawFn) -> Comparison:
    """Only comparisons the parser accepts, i.e. passing its static type check."""
    from tracelake.traceql.parser import INTRINSIC_TYPES

    field = draw(_fields)
    lit = draw(_any_literals)
    if isinstance(field, Intrinsic) and lit.kind is not LiteralKind.NIL:
        want = INTRINSIC_TYPES[field]
        numeric = {LiteralKind.INT, LiteralKind.FLOAT, LiteralKind.DURATION}
        if not (lit.kind == want or (lit.kind in numeric and want in numeric)):
            lit = draw(_any_literals.filter(lambda x: x.kind == want))
    if lit.kind is LiteralKind.NIL:
        op = draw(st.sampled_from([Op.EQ, Op.NE]))
    elif lit.kind is LiteralKind.STRING:
        op = draw(st.sampled_from(list(Op)))
    else:
        op = draw(st.sampled_from([o for o in Op if o not in (Op.RE, Op.NRE)]))
    return Comparison(field, op, lit)


_field_exprs: st.SearchStrategy[FieldExpr] = st.recursive(
    _comparisons(),
    lambda inner: st.one_of(
        st.lists(inner, min_size=2, max_size=3).map(make_and),
        st.lists(inner, min_size=2, max_size=3).map(make_or),
    ),
    max_leaves=8,
)
_spansets: st.SearchStrategy[SpansetExpr] = st.recursive(
    st.builds(SpansetFilter, st.none() | _field_exprs),
    lambda inner: st.one_of(
        st.lists(inner, min_size=2, max_size=3).map(make_spanset_and),
        st.lists(inner, min_size=2, max_size=3).map(make_spanset_or),
    ),
    max_leaves=4,
)


@settings(max_examples=200, deadline=None)
@given(_spansets.map(Query))
def test_format_round_trip(query: Query) -> None:
    text = format(query)
    parsed = parse(text)
    assert parsed == query
    assert parse(format(parsed)) == parsed
    assert format(parsed) == text


MIXED = '{name="a" || (kind=client && .x=`y`)} || ({} && {.z=nil})'


@pytest.mark.parametrize("q", [*CONTRACT_EXAMPLES, MIXED])
def test_reparse_is_stable(q: str) -> None:
    assert parse(format(parse(q))) == parse(q)


def test_hints_are_accepted_and_kept() -> None:
    q = parse("{ .a = 1 } | select(.b) with (most_recent=true, sample=0.5)")
    assert [k for k, _ in q.hints] == ["most_recent", "sample"]
    assert parse(format(q)) == q
    with pytest.raises(TraceQLError, match="expected '=' after hint 'most_recent'"):
        parse("{ } with (most_recent)")
