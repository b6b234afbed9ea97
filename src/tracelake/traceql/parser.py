"""Hand-written lexer and recursive-descent parser for the TraceQL subset of contract §5.1.

Grammar (whitespace allowed between any tokens)::

    query         := spanset_or EOF
    spanset_or    := spanset_and ( "||" spanset_and )*
    spanset_and   := spanset_prim ( "&&" spanset_prim )*
    spanset_prim  := "{" [ field_or ] "}" | "(" spanset_or ")"
    field_or      := field_and ( "||" field_and )*
    field_and     := field_prim ( "&&" field_prim )*
    field_prim    := "(" field_or ")" | field OP value
    field         := SCOPE "." NAME | "." NAME | INTRINSIC | COLON_SCOPE ":" NAME
    OP            := "=" | "!=" | ">" | ">=" | "<" | "<=" | "=~" | "!~"
    value         := STRING | ["-"] NUMBER | ["-"] DURATION | true | false | nil
                   | error | ok | unset | server | client | producer | consumer | internal | unspecified

Errors carry a 0-based character position so the HTTP layer can answer 400 with Tempo's
"parse error at line L, col C: reason" shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum, auto
from fractions import Fraction

from tracelake.errors import InvalidInputError
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
    Stage,
    StatusValue,
    Structural,
    StructuralOp,
    make_and,
    make_or,
    make_spanset_and,
    make_spanset_or,
)


class TraceQLError(InvalidInputError):
    """A query the parser rejects; `position` is the 0-based character offset of the problem."""

    def __init__(self, message: str, position: int, text: str | None = None) -> None:
        self.message = message
        self.position = position
        before = (text or "")[:position]
        self.line = before.count("\n") + 1
        self.col = position - (before.rfind("\n") + 1) + 1
        super().__init__(f"parse error at line {self.line}, col {self.col}: {message}")


# --------------------------------------------------------------------------------------------- tables

_BARE_INTRINSICS: dict[str, Intrinsic] = {
    "name": Intrinsic.NAME,
    "status": Intrinsic.STATUS,
    "statusMessage": Intrinsic.STATUS_MESSAGE,
    "kind": Intrinsic.KIND,
    "duration": Intrinsic.DURATION,
    "traceDuration": Intrinsic.TRACE_DURATION,
    "rootName": Intrinsic.ROOT_NAME,
    "rootServiceName": Intrinsic.ROOT_SERVICE_NAME,
}
_BARE_NAME_OF: dict[Intrinsic, str] = {v: k for k, v in _BARE_INTRINSICS.items()}
_COLON_INTRINSICS: dict[str, Intrinsic] = {i.value: i for i in Intrinsic}
_COLON_SCOPES = frozenset({"span", "trace", "event", "link", "instrumentation"})
_DOT_SCOPES: dict[str, Scope] = {s.value: s for s in Scope if s is not Scope.NONE}

_KEYWORDS: dict[str, Literal] = {
    "true": Literal(LiteralKind.BOOL, True),
    "false": Literal(LiteralKind.BOOL, False),
    "nil": Literal(LiteralKind.NIL, None),
    **{s.value: Literal(LiteralKind.STATUS, s) for s in StatusValue},
    **{k.value: Literal(LiteralKind.KIND, k) for k in KindValue},
}

_STRINGY = (
    Intrinsic.NAME,
    Intrinsic.STATUS_MESSAGE,
    Intrinsic.SPAN_ID,
    Intrinsic.PARENT_ID,
    Intrinsic.ROOT_NAME,
    Intrinsic.ROOT_SERVICE_NAME,
    Intrinsic.TRACE_ID,
    Intrinsic.EVENT_NAME,
    Intrinsic.LINK_TRACE_ID,
    Intrinsic.LINK_SPAN_ID,
    Intrinsic.INSTRUMENTATION_NAME,
    Intrinsic.INSTRUMENTATION_VERSION,
)
INTRINSIC_TYPES: dict[Intrinsic, LiteralKind] = {
    **dict.fromkeys(_STRINGY, LiteralKind.STRING),
    Intrinsic.STATUS: LiteralKind.STATUS,
    Intrinsic.KIND: LiteralKind.KIND,
    Intrinsic.DURATION: LiteralKind.DURATION,
    Intrinsic.TRACE_DURATION: LiteralKind.DURATION,
    Intrinsic.EVENT_TIME_SINCE_START: LiteralKind.DURATION,
    Intrinsic.CHILD_COUNT: LiteralKind.INT,
}
_NUMERIC = frozenset({LiteralKind.INT, LiteralKind.FLOAT, LiteralKind.DURATION})

_NS = 1
_DURATION_UNITS: dict[str, int] = {
    "ns": _NS,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
    "d": 86400 * 1_000_000_000,
    "w": 7 * 86400 * 1_000_000_000,
}
# Units used when printing, largest first (Go style; d/w are accepted but never printed).
_FORMAT_UNITS = (("h", 3600 * 10**9), ("m", 60 * 10**9), ("s", 10**9), ("ms", 10**6), ("us", 10**3))

# Characters that end a bare attribute name (mirrors Tempo's lexer, plus quotes).
_ATTR_STOP = frozenset('{}()=~!<>&|^,"`')
_SIMPLE_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
    "\\": "\\",
    '"': '"',
    "'": "'",
}
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER_RE = re.compile(r"[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?")
_UNIT_RE = re.compile(r"[A-Za-zµμ]+")


# ---------------------------------------------------------------------------------------------- lexer


class T(Enum):
    """Token types."""

    LBRACE = auto()
    RBRACE = auto()
    LPAREN = auto()
    RPAREN = auto()
    AND = auto()
    OR = auto()
    OP = auto()
    FIELD = auto()
    IDENT = auto()
    VALUE = auto()
    STRUCT = auto()  # >> << !>> !<< !> !< &>> &<< &> &< & ~ (and > < !~ as OP tokens, by context)
    PIPE = auto()
    COMMA = auto()
    EOF = auto()


@dataclass(frozen=True, slots=True)
class Token:
    """One lexeme; `value` holds the decoded Op, Field, Literal or identifier text."""

    type: T
    pos: int
    text: str
    value: object = None


class _Lexer:
    """Turns query text into tokens; context-free except for the lenient string rule."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0

    def error(self, message: str, pos: int) -> TraceQLError:
        return TraceQLError(message, pos, self.text)

    def tokens(self) -> list[Token]:
        out: list[Token] = []
        while True:
            tok = self.next()
            out.append(tok)
            if tok.type is T.EOF:
                return out

    def next(self) -> Token:
        s, n = self.text, len(self.text)
        while self.i < n and s[self.i].isspace():
            self.i += 1
        start = self.i
        if start >= n:
            return Token(T.EOF, n, "")
        c = s[start]
        two = s[start : start + 2]
        simple = {"{": T.LBRACE, "}": T.RBRACE, "(": T.LPAREN, ")": T.RPAREN}
        if c in simple:
            self.i += 1
            return Token(simple[c], start, c)
        if two == "&&":
            self.i += 2
            return Token(T.AND, start, two)
        if two == "||":
            self.i += 2
            return Token(T.OR, start, two)
        for text in ("&>>", "&<<", "!>>", "!<<", ">>", "<<", "&>", "&<", "&~", "!>", "!<"):
            if s.startswith(text, start):
                self.i += len(text)
                return Token(T.STRUCT, start, text, StructuralOp(text))
        if c == "~":
            self.i += 1
            return Token(T.STRUCT, start, c, StructuralOp.SIBLING)
        if c == ",":
            self.i += 1
            return Token(T.COMMA, start, c)
        for op in (Op.RE, Op.NRE, Op.NE, Op.GE, Op.LE, Op.EQ, Op.GT, Op.LT):
            if s.startswith(op.value, start):
                self.i += len(op.value)
                return Token(T.OP, start, op.value, op)
        if c == "|":
            self.i += 1
            return Token(T.PIPE, start, c)
        if c == "&":
            raise self.error("unexpected '&' (did you mean '&&'?)", start)
        if c == "!":
            raise self.error("unary '!' is not supported", start)
        if c == '"':
            value = self.lenient_string(start)
            return Token(T.VALUE, start, s[start : self.i], Literal(LiteralKind.STRING, value))
        if c == "`":
            end = s.find("`", start + 1)
            if end < 0:
                raise self.error("unterminated string", start)
            self.i = end + 1
            return Token(T.VALUE, start, s[start : self.i], Literal(LiteralKind.STRING, s[start + 1 : end]))
        if c.isdigit() or (c == "-" and start + 1 < n and s[start + 1].isdigit()):
            lit = self.number(start)
            return Token(T.VALUE, start, s[start : self.i], lit)
        if c == ".":
            self.i += 1
            name = self.attr_name(start)
            return Token(T.FIELD, start, s[start : self.i], Attribute(Scope.NONE, name))
        m = _IDENT_RE.match(s, start)
        if m:
            return self.word(start, m.group())
        raise self.error(f"unexpected character {c!r}", start)

    def word(self, start: int, ident: str) -> Token:
        """Identifier, scoped attribute, colon intrinsic or keyword."""
        s = self.text
        self.i = start + len(ident)
        nxt = s[self.i : self.i + 1]
        if nxt == ":" and ident in _COLON_SCOPES:
            m = _IDENT_RE.match(s, self.i + 1)
            full = f"{ident}:{m.group() if m else ''}"
            if full not in _COLON_INTRINSICS:
                raise self.error(f"unknown intrinsic '{full}'", start)
            self.i = start + len(full)
            return Token(T.FIELD, start, full, _COLON_INTRINSICS[full])
        if nxt == ".":
            if ident not in _DOT_SCOPES:
                raise self.error(f"unknown attribute scope '{ident}'", start)
            self.i += 1
            name = self.attr_name(start)
            return Token(T.FIELD, start, s[start : self.i], Attribute(_DOT_SCOPES[ident], name))
        if ident in _BARE_INTRINSICS:
            return Token(T.FIELD, start, ident, _BARE_INTRINSICS[ident])
        if ident in _KEYWORDS:
            return Token(T.VALUE, start, ident, _KEYWORDS[ident])
        return Token(T.IDENT, start, ident, ident)

    def attr_name(self, attr_start: int) -> str:
        """Name after `scope.`: either quoted (strict escapes) or a run of non-stop characters."""
        s, n = self.text, len(self.text)
        if self.i < n and s[self.i] == '"':
            q = self.i
            name, end = self.strict_string(q)
            self.i = end
            if not name:
                raise self.error("empty attribute name", q)
            return name
        j = self.i
        while j < n and not s[j].isspace() and s[j] not in _ATTR_STOP:
            j += 1
        if j == self.i:
            raise self.error("expected an attribute name after '.'", self.i)
        name, self.i = s[self.i : j], j
        return name

    def escape(self, j: int) -> tuple[str, int]:
        """Decode the escape whose backslash is at j; unknown escapes stay literal (regex-friendly)."""
        s = self.text
        if j + 1 >= len(s):
            raise _Unterminated
        e = s[j + 1]
        if e in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[e], j + 2
        width = {"x": 2, "u": 4, "U": 8}.get(e)
        if width:
            digits = s[j + 2 : j + 2 + width]
            if len(digits) == width and all(ch in "0123456789abcdefABCDEF" for ch in digits):
                cp = int(digits, 16)
                if cp <= 0x10FFFF and not 0xD800 <= cp <= 0xDFFF:
                    return chr(cp), j + 2 + width
            raise self.error(f"invalid escape '\\{e}'", j)
        return "\\" + e, j + 2

    def strict_string(self, start: int) -> tuple[str, int]:
        """Double-quoted string ending at the first unescaped quote; returns (value, end index)."""
        s, j, out = self.text, start + 1, []
        try:
            while j < len(s):
                if s[j] == "\\":
                    ch, j = self.escape(j)
                    out.append(ch)
                elif s[j] == '"':
                    return "".join(out), j + 1
                else:
                    out.append(s[j])
                    j += 1
        except _Unterminated:
            pass
        raise self.error("unterminated string", start)

    def lenient_string(self, start: int) -> str:
        """Value string; an unescaped `"` only closes it if a value may end there.

        Older Grafana builders do not escape `"` inside values (contract §5.1), so `"say "hi""`
        is read as `say "hi"`. If no quote is followed by a legal continuation, fall back to the
        first quote and let the parser report what follows.
        """
        s, j, out = self.text, start + 1, []
        first: tuple[str, int] | None = None
        try:
            while j < len(s):
                if s[j] == "\\":
                    ch, j = self.escape(j)
                    out.append(ch)
                elif s[j] == '"':
                    if self.can_end_value(j + 1):
                        self.i = j + 1
                        return "".join(out)
                    if first is None:
                        first = ("".join(out), j + 1)
                    out.append('"')
                    j += 1
                else:
                    out.append(s[j])
                    j += 1
        except _Unterminated:
            pass
        if first is None:
            raise self.error("unterminated string", start)
        self.i = first[1]
        return first[0]

    def can_end_value(self, j: int) -> bool:
        s = self.text
        while j < len(s) and s[j].isspace():
            j += 1
        return j == len(s) or s[j] in "})" or s.startswith(("&&", "||"), j)

    def number(self, start: int) -> Literal:
        """Integer, float or (possibly compound, e.g. `1h30m`) duration, with optional leading '-'."""
        s = self.text
        j = start + 1 if s[start] == "-" else start
        sign = -1 if j > start else 1
        total = Fraction(0)
        saw_unit = False
        while True:
            m = _NUMBER_RE.match(s, j)
            if not m:
                break
            num = m.group()
            u = _UNIT_RE.match(s, m.end())
            if not u:
                if saw_unit:
                    raise self.error(f"missing unit in duration after '{num}'", m.start())
                self.i = m.end()
                if any(ch in num for ch in ".eE"):
                    return Literal(LiteralKind.FLOAT, sign * float(num))
                return Literal(LiteralKind.INT, sign * int(num))
            unit = u.group()
            if unit not in _DURATION_UNITS or "e" in num.lower():
                raise self.error(f"invalid duration '{s[m.start() : u.end()]}'", m.start())
            total += Fraction(num) * _DURATION_UNITS[unit]
            saw_unit = True
            j = u.end()
        self.i = j
        return Literal(LiteralKind.DURATION, sign * round(total))


class _Unterminated(Exception):
    """Internal: an escape ran into the end of the text."""


# --------------------------------------------------------------------------------------------- parser


def _describe(tok: Token) -> str:
    return "end of query" if tok.type is T.EOF else f"'{tok.text}'"


class _Parser:
    """Recursive descent over the token list; one method per grammar rule."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _Lexer(text).tokens()
        self.k = 0

    @property
    def tok(self) -> Token:
        return self.toks[self.k]

    def advance(self) -> Token:
        tok = self.toks[self.k]
        self.k += 1
        return tok

    def error(self, message: str, pos: int) -> TraceQLError:
        return TraceQLError(message, pos, self.text)

    def expect(self, type_: T, what: str) -> Token:
        if self.tok.type is not type_:
            raise self.error(f"expected {what}, found {_describe(self.tok)}", self.tok.pos)
        return self.advance()

    def query(self) -> Query:
        if self.tok.type is T.EOF:
            raise self.error("empty query", 0)
        expr = self.spanset_or()
        stages: list[Stage] = []
        while self.tok.type is T.PIPE:
            self.advance()
            stages.append(self.stage())
        hints = self.hints() if self.tok.type is T.IDENT and self.tok.text == "with" else ()
        if self.tok.type is not T.EOF:
            raise self.error(
                f"expected '&&', '||', '|' or end of query, found {_describe(self.tok)}", self.tok.pos
            )
        return Query(expr, tuple(stages), hints)

    def hints(self) -> tuple[tuple[str, Literal], ...]:
        """``with (most_recent=true, ...)``: Tempo's query hints, kept with the query."""
        self.advance()
        self.expect(T.LPAREN, "'('")
        hints = []
        while True:
            name = self.tok
            if name.type is not T.IDENT:
                raise self.error(f"expected a hint name, found {_describe(name)}", name.pos)
            self.advance()
            op = self.tok
            if op.type is not T.OP or op.value is not Op.EQ:
                raise self.error(f"expected '=' after hint '{name.text}', found {_describe(op)}", op.pos)
            self.advance()
            value = self.expect(T.VALUE, "a value")
            hints.append((name.text, value.value))
            if self.tok.type is not T.COMMA:
                break
            self.advance()
        self.expect(T.RPAREN, "')'")
        return tuple(hints)  # type: ignore[arg-type]

    def stage(self) -> Stage:
        """One pipeline stage: ``select(...)``, an aggregate compared with a value, or ``{...}``."""
        tok = self.tok
        if tok.type is T.LBRACE:
            return self.spanset_prim()  # type: ignore[return-value]
        if tok.type is not T.IDENT:
            raise self.error(f"expected select(), an aggregate or '{{', found {_describe(tok)}", tok.pos)
        name = tok.text
        self.advance()
        if name == "select":
            self.expect(T.LPAREN, "'('")
            fields = [self.field_token()]
            while self.tok.type is T.COMMA:
                self.advance()
                fields.append(self.field_token())
            self.expect(T.RPAREN, "')'")
            return Select(tuple(fields))
        if name not in Aggregate.__members__.values():
            raise self.error(f"pipeline stage '{name}' is not supported", tok.pos)
        aggregate = Aggregate(name)
        self.expect(T.LPAREN, "'('")
        field = None
        if aggregate is not Aggregate.COUNT:
            field = self.field_token()
        self.expect(T.RPAREN, "')'")
        op_tok = self.tok
        if op_tok.type is not T.OP or op_tok.value in (Op.RE, Op.NRE):
            raise self.error(f"expected a comparison after '{name}()', found {_describe(op_tok)}", op_tok.pos)
        self.advance()
        val_tok = self.expect(T.VALUE, "a value")
        value: Literal = val_tok.value  # type: ignore[assignment]
        if value.kind not in _NUMERIC:
            raise self.error(
                f"'{name}()' compares with a number or a duration, found {_describe(val_tok)}", val_tok.pos
            )
        return ScalarFilter(aggregate, field, op_tok.value, value)  # type: ignore[arg-type]

    def field_token(self) -> Field:
        tok = self.tok
        if tok.type is not T.FIELD:
            raise self.error(f"expected an attribute or intrinsic, found {_describe(tok)}", tok.pos)
        self.advance()
        return tok.value  # type: ignore[return-value]

    def spanset_or(self) -> SpansetExpr:
        terms = [self.spanset_and()]
        while self.tok.type is T.OR:
            self.advance()
            terms.append(self.spanset_and())
        return make_spanset_or(terms)

    def spanset_and(self) -> SpansetExpr:
        terms = [self.spanset_struct()]
        while self.tok.type is T.AND:
            self.advance()
            terms.append(self.spanset_struct())
        return make_spanset_and(terms)

    def spanset_struct(self) -> SpansetExpr:
        """Structural operators bind tighter than ``&&``/``||`` and associate to the left."""
        expr = self.spanset_prim()
        while True:
            tok = self.tok
            if tok.type is T.STRUCT:
                op = tok.value
            elif tok.type is T.OP and tok.text in (">", "<", "!~"):
                op = StructuralOp(tok.text)
            else:
                return expr
            self.advance()
            expr = Structural(op, expr, self.spanset_prim())  # type: ignore[arg-type]

    def spanset_prim(self) -> SpansetExpr:
        if self.tok.type is T.LPAREN:
            self.advance()
            inner = self.spanset_or()
            self.expect(T.RPAREN, "')'")
            return inner
        self.expect(T.LBRACE, "'{'")
        if self.tok.type is T.RBRACE:
            self.advance()
            return SpansetFilter(None)
        if self.tok.type is T.STRUCT and self.tok.text == "~":
            raise self.error("unexpected '~'", self.tok.pos)
        expr = self.field_or()
        if self.tok.type is not T.RBRACE:
            raise self.error(f"expected '&&', '||' or '}}', found {_describe(self.tok)}", self.tok.pos)
        self.advance()
        return SpansetFilter(expr)

    def field_or(self) -> FieldExpr:
        terms = [self.field_and()]
        while self.tok.type is T.OR:
            self.advance()
            terms.append(self.field_and())
        return make_or(terms)

    def field_and(self) -> FieldExpr:
        terms = [self.field_prim()]
        while self.tok.type is T.AND:
            self.advance()
            terms.append(self.field_prim())
        return make_and(terms)

    def field_prim(self) -> FieldExpr:
        tok = self.tok
        if tok.type is T.LPAREN:
            self.advance()
            inner = self.field_or()
            if self.tok.type is not T.RPAREN:
                raise self.error(f"expected '&&', '||' or ')', found {_describe(self.tok)}", self.tok.pos)
            self.advance()
            return inner
        if tok.type is T.IDENT:
            raise self.error(f"unknown intrinsic '{tok.text}'", tok.pos)
        if tok.type is not T.FIELD:
            raise self.error(f"expected an attribute or intrinsic, found {_describe(tok)}", tok.pos)
        self.advance()
        field: Field = tok.value  # type: ignore[assignment]
        op_tok = self.tok
        if op_tok.type is not T.OP:
            raise self.error(
                f"expected a comparison operator after '{tok.text}', found {_describe(op_tok)}", op_tok.pos
            )
        self.advance()
        val_tok = self.tok
        if val_tok.type is not T.VALUE:
            raise self.error(
                f"expected a value after '{op_tok.text}', found {_describe(val_tok)}", val_tok.pos
            )
        self.advance()
        op: Op = op_tok.value  # type: ignore[assignment]
        value: Literal = val_tok.value  # type: ignore[assignment]
        self.check_types(field, op, value, op_tok, val_tok)
        return Comparison(field, op, value)

    def check_types(self, field: Field, op: Op, value: Literal, op_tok: Token, val_tok: Token) -> None:
        """Reject what Tempo rejects at parse time: statically known operand types that differ."""
        if op in (Op.RE, Op.NRE) and value.kind is not LiteralKind.STRING:
            raise self.error(f"'{op.value}' needs a string value, found {_describe(val_tok)}", val_tok.pos)
        if value.kind is LiteralKind.NIL:
            if op not in (Op.EQ, Op.NE):
                raise self.error("nil can only be compared with '=' or '!='", op_tok.pos)
            return
        if isinstance(field, Intrinsic):
            want = INTRINSIC_TYPES[field]
            got = value.kind
            if want != got and not (want in _NUMERIC and got in _NUMERIC):
                raise self.error(
                    f"binary operations must operate on the same type: '{_field_text(field)}' is "
                    f"{want.value}, {_describe(val_tok)} is {got.value}",
                    val_tok.pos,
                )


def parse(text: str) -> Query:
    """Parse TraceQL text into a Query, raising TraceQLError with the position of the problem."""
    return _Parser(text).query()


# --------------------------------------------------------------------------------------------- format


def _field_text(field: Field) -> str:
    if isinstance(field, Intrinsic):
        return _BARE_NAME_OF.get(field, field.value)
    name = field.name
    bare = name and all(not ch.isspace() and ch not in _ATTR_STOP for ch in name)
    name_text = name if bare else _quote(name)
    return f"{field.scope.value}.{name_text}"


def _quote(value: str) -> str:
    out = ['"']
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif not ch.isprintable():
            out.append(f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def format_duration(ns: int) -> str:
    """Shortest exact Go-style spelling, e.g. 1_500_000_000 -> '1500ms'."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    mag = abs(ns)
    for unit, size in _FORMAT_UNITS:
        if mag % size == 0:
            return f"{sign}{mag // size}{unit}"
    return f"{sign}{mag}ns"


def _literal_text(lit: Literal) -> str:
    v = lit.value
    match lit.kind:
        case LiteralKind.STRING:
            return _quote(str(v))
        case LiteralKind.INT:
            return str(v)
        case LiteralKind.FLOAT:
            text = repr(float(v))  # type: ignore[arg-type]
            return text if any(ch in text for ch in ".eE") else text + ".0"
        case LiteralKind.DURATION:
            return format_duration(int(v))  # type: ignore[arg-type]
        case LiteralKind.BOOL:
            return "true" if v else "false"
        case LiteralKind.NIL:
            return "nil"
        case _:
            return str(v.value)  # type: ignore[union-attr]


def _format_field_expr(expr: FieldExpr) -> str:
    if isinstance(expr, Comparison):
        return f"{_field_text(expr.field)}{expr.op.value}{_literal_text(expr.value)}"
    sep = " && " if isinstance(expr, FieldAnd) else " || "
    # An OR inside an AND needs parentheses; in a (flattened) OR it never occurs but would be harmless.
    parts = (
        f"({_format_field_expr(t)})" if isinstance(t, FieldOr) else _format_field_expr(t) for t in expr.terms
    )
    return sep.join(parts)


def _format_spanset(expr: SpansetExpr) -> str:
    if isinstance(expr, SpansetFilter):
        return "{}" if expr.expr is None else "{" + _format_field_expr(expr.expr) + "}"
    if isinstance(expr, Structural):
        rhs = _format_spanset(expr.rhs)
        if not isinstance(expr.rhs, SpansetFilter):
            rhs = f"({rhs})"
        lhs = _format_spanset(expr.lhs)
        if isinstance(expr.lhs, SpansetAnd | SpansetOr):
            lhs = f"({lhs})"
        return f"{lhs} {expr.op.value} {rhs}"
    sep = " && " if isinstance(expr, SpansetAnd) else " || "
    parts = (
        f"({_format_spanset(t)})" if isinstance(t, SpansetOr) else _format_spanset(t) for t in expr.terms
    )
    return sep.join(parts)


def _format_stage(stage: Stage) -> str:
    if isinstance(stage, Select):
        return "select(" + ", ".join(_field_text(f) for f in stage.fields) + ")"
    if isinstance(stage, ScalarFilter):
        inner = "" if stage.field is None else _field_text(stage.field)
        return f"{stage.aggregate.value}({inner}) {stage.op.value} {_literal_text(stage.value)}"
    return _format_spanset(stage)


def format(query: Query) -> str:
    """Canonical text of a query: parse(format(q)) == q for flattened trees."""
    text = " | ".join([_format_spanset(query.expr), *(_format_stage(s) for s in query.stages)])
    if query.hints:
        text += " with (" + ", ".join(f"{k}={_literal_text(v)}" for k, v in query.hints) + ")"
    return text
