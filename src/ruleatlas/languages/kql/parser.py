"""KQL parser: text -> :class:`~ruleatlas.languages.kql.ast.Expr` (recursive descent).

The rules follow Kibana's kuery grammar (``grammar.peggy`` in ``@kbn/es-query``):

    query      = or? EOF                          (empty: match everything)
    or         = and ("or" and)*
    and        = not ("and" not)*
    not        = "not" sub | sub                  ("not not x" is an error, as in Kibana)
    sub        = "(" or ")" | field ":" "{" or "}" | field range-op literal
               | field ":" values | value
    values     = "(" vor ")" | value              (a value list: vor = vand ("or" vand)*,
    vnot       = "not" values | values             vand = vnot ("and" vnot)*)
    field, value, literal = quoted string | unquoted literal

so precedence is ``not`` > ``and`` > ``or``. Errors raise :class:`ParseError` with line/col;
nesting deeper than ``MAX_DEPTH`` parentheses or braces is a located error too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from ruleatlas.languages.kql import ast as K
from ruleatlas.languages.kql.tokens import Kind, T, Token, Tokenizer
from ruleatlas.languages.parsing import COMPARISONS, DepthGuard, Operator, ParseError

MAX_DEPTH = 100
N = TypeVar("N", K.Expr, K.ValueExpr)
RANGE_OPS: dict[Kind, str] = {k: v for k, v in COMPARISONS.items() if k is not Operator.NE}
# The precedence ladders: token -> node class, one tiny loop each (sqlglot's DISJUNCTION...).
QUERY_CONNECTORS: dict[T, Callable[..., K.Expr]] = {T.OR: K.Or, T.AND: K.And}
VALUE_CONNECTORS: dict[T, Callable[..., K.ValueExpr]] = {T.OR: K.VOr, T.AND: K.VAnd}
DESCRIBE: dict[Kind, str] = {
    T.EOF: "end of query", T.WORD: "value", T.STRING: "string", T.OR: "'or'", T.AND: "'and'",
    T.NOT: "'not'",
}


class Parser(DepthGuard):
    """Parses one KQL text (tokenized once, up front) into an :class:`Expr`."""

    max_depth = MAX_DEPTH

    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = Tokenizer(text).tokenize()
        self.i = 0
        self.depth = 0

    # ---- cursor -------------------------------------------------------------------------
    @property
    def cur(self) -> Token:
        return self.toks[self.i]

    @property
    def _last_end(self) -> int:
        """End offset of the last consumed token (a closing parenthesis included)."""
        return self.toks[self.i - 1].end if self.i else 0

    def _advance(self) -> Token:
        t = self.toks[self.i]
        self.i += 1
        return t

    def _match(self, kind: T) -> Token | None:
        if self.cur.kind is kind:
            return self._advance()
        return None

    def _parenthesized(self, inner: Callable[[], N]) -> N:
        """``( inner )`` at the current ``(``, one nesting level deeper."""
        self.enter(self._advance().start)
        node = inner()
        self._expect(T.RPAREN, "')'")
        self.depth -= 1
        return node

    def _expect(self, kind: T, what: str) -> Token:
        t = self._match(kind)
        if t is None:
            raise self._unexpected(f"expected {what}")
        return t

    def _unexpected(self, message: str) -> ParseError:
        t = self.cur
        got = DESCRIBE.get(t.kind, repr(t.raw))
        if t.kind in (T.WORD, T.STRING):
            got = f"{got} {t.raw!r}"
        return ParseError(f"{message}, got {got}", self.text, t.start)

    # ---- queries ------------------------------------------------------------------------
    def parse(self) -> K.Expr:
        if self.cur.kind is T.EOF:
            return K.Empty(start=0, end=len(self.text))
        tree = self._parse_or()
        if self.cur.kind is not T.EOF:
            raise self._unexpected("expected 'and', 'or' or the end of the query")
        return tree

    def _parse_or(self) -> K.Expr:
        return self._connect(T.OR, self._parse_and, QUERY_CONNECTORS)

    def _parse_and(self) -> K.Expr:
        return self._connect(T.AND, self._parse_not, QUERY_CONNECTORS)

    def _connect(self, kind: T, operand: Callable[[], N],
                 connectors: Mapping[T, Callable[..., N]]) -> N:
        """One rung of a precedence ladder: ``operand (kind operand)*``, one connector node
        (from ``connectors``) for a run of two or more."""
        start = self.cur.start
        first = operand()
        if self.cur.kind is not kind:
            return first
        args = [first]
        while self._match(kind):
            args.append(operand())
        return connectors[kind](tuple(args), start=start, end=self._last_end)

    def _parse_not(self) -> K.Expr:
        t = self._match(T.NOT)
        if t is None:
            return self._parse_sub()
        if self.cur.kind is T.NOT:
            raise self._unexpected("'not' must be followed by a query in parentheses or an "
                                   "expression")
        arg = self._parse_sub()
        return K.Not(arg, start=t.start, end=self._last_end)

    def _parse_sub(self) -> K.Expr:
        t = self.cur
        if t.kind is T.LPAREN:
            return self._parenthesized(self._parse_or)
        if t.kind not in (T.WORD, T.STRING):
            raise self._unexpected("expected a field, a value or '('")
        value = self._literal()
        nxt = self.cur.kind
        if nxt is T.COLON:
            self._advance()
            if self.cur.kind is T.LBRACE:
                return self._parse_nested(value)
            vals = self._parse_values()
            return K.FieldValue(value, vals, start=value.start, end=self._last_end)
        if nxt in RANGE_OPS:
            op = RANGE_OPS[self._advance().kind]
            if self.cur.kind not in (T.WORD, T.STRING):
                raise self._unexpected(f"expected a value after '{op}'")
            rhs = self._literal()
            return K.Range(value, op, rhs, start=value.start, end=rhs.end)
        return K.FreeText(value, start=value.start, end=value.end)

    def _parse_nested(self, field: K.Value) -> K.Expr:
        brace = self._advance()
        self.enter(brace.start)
        q = self._parse_or()
        close = self._expect(T.RBRACE, "'}'")
        self.depth -= 1
        return K.Nested(field, q, start=field.start, end=close.end)

    def _literal(self) -> K.Value:
        t = self._advance()
        if t.kind is T.STRING:
            return K.Quoted(t.value, start=t.start, end=t.end)
        assert t.pattern is not None
        return K.Unquoted(t.pattern, start=t.start, end=t.end)

    # ---- value lists --------------------------------------------------------------------
    def _parse_values(self) -> K.ValueExpr:
        t = self.cur
        if t.kind is T.LPAREN:
            return self._parenthesized(self._parse_vor)
        if t.kind in (T.WORD, T.STRING):
            return self._literal()
        raise self._unexpected("expected a value or '(' after ':'")

    def _parse_vor(self) -> K.ValueExpr:
        return self._connect(T.OR, self._parse_vand, VALUE_CONNECTORS)

    def _parse_vand(self) -> K.ValueExpr:
        return self._connect(T.AND, self._parse_vnot, VALUE_CONNECTORS)

    def _parse_vnot(self) -> K.ValueExpr:
        t = self._match(T.NOT)
        if t is None:
            return self._parse_values()
        arg = self._parse_values()
        return K.VNot(arg, start=t.start, end=self._last_end)


def parse(text: str) -> K.Expr:
    """Parse one KQL query; raises :class:`ParseError` (line/col) on bad input."""
    return Parser(text).parse()
