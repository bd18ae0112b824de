"""EQL parser: text -> :class:`Query` (recursive descent, sqlglot style).

Grammar (Elasticsearch EQL, as the detection rules write it)::

    query      := (event | sequence | sample) pipe*
    event      := (ANY | NAME | STRING) WHERE expr
    sequence   := SEQUENCE [BY keys] [WITH MAXSPAN = number [unit]] member member+
                  [UNTIL member]
    sample     := SAMPLE [BY keys] member+
    member     := ('[' | '![') event ']' [BY keys] [WITH RUNS = integer]
    pipe       := '|' NAME [expr (',' expr)*]

Expressions use the precedence ladder ``or < and < not < comparison (== != < <= > >=) <
+ - < * / % < unary - + < primary [suffix]``, where the suffix of a primary is ``[not] in[~]
(...)`` or ``: like like~ regex regex~`` followed by a constant or a parenthesised list of
constants (Elasticsearch attaches them to the primary the same way). Comparisons do not chain.
Binary operators are parsed by precedence climbing over the ``BOOLEAN`` and ``BINARY`` tables;
queries and suffixes dispatch through ``QUERY_PARSERS``, ``MATCH_OPS`` and ``IN_OPS``.

Errors raise :class:`ParseError` with offset, line/col and a caret line; nesting deeper than
``MAX_DEPTH`` is a located error, never a RecursionError.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from ruleatlas.languages.eql import ast as E
from ruleatlas.languages.eql.tokens import Kind, T, Token, tokenize
from ruleatlas.languages.parsing import (
    ADDITIVE,
    COMPARISONS,
    MULTIPLICATIVE,
    DepthGuard,
    ParseError,
)

MAX_DEPTH = 100
KEYWORDS = frozenset({
    "and", "or", "not", "in", "like", "regex", "where", "any", "sequence", "sample", "by",
    "with", "until", "true", "false", "null", "join", "of",
})
# Precedence ladder, loosest first: or < and < not < comparison < + - < * / % < unary.
OR_PREC, AND_PREC, NOT_PREC, COMPARE_PREC, ADD_PREC, MUL_PREC, UNARY_PREC = 1, 2, 3, 4, 5, 6, 7
BOOLEAN: dict[str, tuple[int, str]] = {"or": (OR_PREC, "or"), "and": (AND_PREC, "and")}
COMPARE_OPS: dict[Kind, str] = {T.EQ: "=="} | COMPARISONS
BINARY: dict[Kind, tuple[int, str]] = {
    **{k: (COMPARE_PREC, v) for k, v in COMPARE_OPS.items()},
    **{k: (ADD_PREC, v) for k, v in ADDITIVE.items()},
    **{k: (MUL_PREC, v) for k, v in MULTIPLICATIVE.items()},
}
MATCH_OPS: dict[tuple[Kind, str], str] = {
    (T.COLON, ":"): ":", (T.NAME, "like"): "like", (T.TILDE, "like~"): "like~",
    (T.NAME, "regex"): "regex", (T.TILDE, "regex~"): "regex~",
}
IN_OPS: dict[tuple[Kind, str], bool] = {(T.NAME, "in"): False, (T.TILDE, "in~"): True}
TIME_UNITS = frozenset({"ms", "s", "m", "h", "d", "micros", "nanos"})


def _field_name(raw: str) -> tuple[str, bool]:
    """A field token's dotted name with backquotes resolved, and whether it had ``?``."""
    optional = raw.startswith("?")
    body = raw[1:] if optional else raw
    if "`" not in body:
        return body, optional
    parts: list[str] = []
    i, n = 0, len(body)
    cur: list[str] = []
    while i < n:
        ch = body[i]
        if ch == "`":
            j = i + 1
            while True:
                k = body.index("`", j)
                if body.startswith("``", k):
                    cur.append(body[j:k] + "`")
                    j = k + 2
                    continue
                cur.append(body[j:k])
                i = k + 1
                break
        elif ch == ".":
            parts.append("".join(cur))
            cur = []
            i += 1
        else:
            cur.append(ch)
            i += 1
    parts.append("".join(cur))
    return ".".join(parts), optional


class Parser(DepthGuard):
    """Parses one EQL query text."""

    QUERY_PARSERS: ClassVar[dict[str, Callable[[Parser], E.Body]]] = {}

    max_depth = MAX_DEPTH

    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = tokenize(text)
        self.i = 0
        self.depth = 0

    # ---- cursor ----------------------------------------------------------------------
    @property
    def cur(self) -> Token:
        return self.toks[self.i]

    def _advance(self) -> Token:
        t = self.toks[self.i]
        if t.kind is not T.EOF:
            self.i += 1
        return t

    def _is_kw(self, word: str, tok: Token | None = None) -> bool:
        t = tok or self.cur
        return t.kind is T.NAME and t.text == word

    def _match_kw(self, word: str) -> Token | None:
        return self._advance() if self._is_kw(word) else None

    def _expect(self, kind: T, what: str) -> Token:
        if self.cur.kind is not kind:
            raise self._error(f"expected {what}")
        return self._advance()

    def _expect_kw(self, word: str) -> Token:
        if not self._is_kw(word):
            raise self._error(f"expected '{word}'")
        return self._advance()

    def _error(self, message: str, tok: Token | None = None) -> ParseError:
        t = tok or self.cur
        got = "end of query" if t.kind is T.EOF else repr(t.raw)
        return ParseError(f"{message}, got {got}", self.text, t.start)

    # ---- query -----------------------------------------------------------------------
    def parse(self) -> E.Query:
        if self.cur.kind is T.EOF:
            raise self._error("expected a query")
        fn = self.QUERY_PARSERS.get(self.cur.text) if self.cur.kind is T.NAME else None
        body = fn(self) if fn is not None else self._parse_event()
        pipes: list[E.Pipe] = []
        while self.cur.kind is T.PIPE:
            pipes.append(self._parse_pipe())
        if self.cur.kind is not T.EOF:
            raise self._error("expected '|' or the end of the query")
        return E.Query(body, tuple(pipes))

    def _parse_event(self) -> E.EventQuery:
        t = self.cur
        if t.kind is T.STRING:
            category: str | None = t.text
        elif t.kind is T.NAME and not t.raw.startswith("?") and (
                t.text == "any" or t.text not in KEYWORDS):
            category = None if t.text == "any" else _field_name(t.raw)[0]
        else:
            raise self._error("expected an event category (a name, a string or 'any')")
        self._advance()
        self._expect_kw("where")
        cond = self._parse_expr()
        return E.EventQuery(category, cond, start=t.start, end=self.toks[self.i - 1].end)

    def _parse_sequence(self) -> E.Sequence:
        start = self._advance().start
        by: tuple[E.Expr, ...] = ()
        maxspan = None
        if self._match_kw("by"):
            by = self._parse_keys()
        if self._is_kw("with"):
            maxspan = self._parse_maxspan()
            if self._is_kw("by"):
                raise self._error("'by' must come before 'with maxspan'")
        members = [self._parse_member(True)]
        while self.cur.kind in (T.LBRACKET, T.MISSING):
            members.append(self._parse_member(True))
        if sum(m.runs or 1 for m in members) < 2:
            raise self._error("a sequence needs at least two members '[...]' (or runs=N)")
        until = None
        if self._match_kw("until"):
            until = self._parse_member(False)
        return E.Sequence(tuple(members), by, maxspan, until, start=start,
                        end=self.toks[self.i - 1].end)

    def _parse_sample(self) -> E.Sample:
        start = self._advance().start
        by: tuple[E.Expr, ...] = ()
        if self._match_kw("by"):
            by = self._parse_keys()
        members = [self._parse_member(False)]
        while self.cur.kind is T.LBRACKET:
            members.append(self._parse_member(False))
        return E.Sample(tuple(members), by, start=start, end=self.toks[self.i - 1].end)

    def _parse_maxspan(self) -> E.MaxSpan:
        self._expect_kw("with")
        self._expect_kw("maxspan")
        self._expect(T.ASSIGN, "'=' after maxspan")
        num = self._expect(T.NUMBER, "a number of time units")
        unit = None
        if self.cur.kind is T.NAME and self.cur.text in TIME_UNITS:
            unit = self._advance().text
        elif self.cur.kind is T.NAME and self.cur.text not in KEYWORDS:
            raise self._error(f"unknown time unit (one of {', '.join(sorted(TIME_UNITS))})")
        return E.MaxSpan(_number(num.text), unit, num.text + (unit or ""))

    def _parse_member(self, sequence: bool) -> E.Member:
        open_tok = self.cur
        if open_tok.kind is T.MISSING and not sequence:
            raise self._error("a missing-event member '![...]' only belongs in a sequence")
        if open_tok.kind not in (T.LBRACKET, T.MISSING):
            raise self._error("expected '[' opening a member")
        self._advance()
        query = self._parse_event()
        self._expect(T.RBRACKET, "']' closing the member")
        by: tuple[E.Expr, ...] = ()
        runs = None
        if self._match_kw("by"):
            by = self._parse_keys()
        if sequence and self._is_kw("with") and self._is_kw("runs", self.toks[self.i + 1]):
            self._advance()
            self._advance()
            self._expect(T.ASSIGN, "'=' after runs")
            n = self._expect(T.NUMBER, "a number of runs")
            if not n.text.isdigit() or int(n.text) < 1:
                raise self._error("runs must be a positive integer", n)
            runs = int(n.text)
        return E.Member(query, by, runs, open_tok.kind is T.MISSING, start=open_tok.start,
                      end=self.toks[self.i - 1].end)

    def _parse_keys(self) -> tuple[E.Expr, ...]:
        keys = [self._parse_binary(ADD_PREC)]
        while self.cur.kind is T.COMMA:
            self._advance()
            keys.append(self._parse_binary(ADD_PREC))
        return tuple(keys)

    def _parse_pipe(self) -> E.Pipe:
        start = self._advance().start
        name = self.cur
        if name.kind is not T.NAME or name.raw.startswith("?") or "." in name.raw:
            raise self._error("expected a pipe name")
        self._advance()
        args: list[E.Expr] = []
        if self.cur.kind not in (T.PIPE, T.EOF):
            args.append(self._parse_expr())
            while self.cur.kind is T.COMMA:
                self._advance()
                args.append(self._parse_expr())
        return E.Pipe(name.text, tuple(args), start=start, end=self.toks[self.i - 1].end)

    # ---- expressions -----------------------------------------------------------------
    # Binary operators are parsed by precedence climbing over ``BINARY`` (one frame per
    # nesting level, so MAX_DEPTH is reached long before Python's recursion limit).
    def _parse_expr(self) -> E.Expr:
        return self._parse_binary(1)

    def _binary_op(self) -> tuple[int, str] | None:
        t = self.cur
        if t.kind is T.NAME:
            return BOOLEAN.get(t.text)
        if t.kind is T.ASSIGN:
            raise self._error("EQL has no '=' comparison: use '==' or ':'")
        return BINARY.get(t.kind)

    def _parse_binary(self, min_prec: int) -> E.Expr:
        left = self._parse_prefix(min_prec)
        while True:
            op = self._binary_op()
            if op is None or op[0] < min_prec:
                return left
            prec, name = op
            if prec <= AND_PREC:  # and / or: one flat node per run of the same operator
                args = [left]
                while self._binary_op() == op:
                    self._advance()
                    args.append(self._parse_binary(prec + 1))
                node = E.And if name == "and" else E.Or
                left = node(tuple(args), start=_start(left), end=_end(args[-1]))
                continue
            self._advance()
            right = self._parse_binary(prec + 1)
            if prec == COMPARE_PREC:
                nxt = self._binary_op()
                if nxt is not None and nxt[0] == COMPARE_PREC:
                    raise self._error("comparisons do not chain (write 'a < b and b < c')")
            left = E.BinOp(name, left, right, start=_start(left), end=_end(right))

    def _parse_prefix(self, min_prec: int) -> E.Expr:
        t = self.cur
        if self._is_kw("not") and min_prec <= NOT_PREC:
            self._advance()
            self.enter(t.start)
            arg = self._parse_binary(NOT_PREC)
            self.depth -= 1
            return E.Not(arg, start=t.start, end=_end(arg))
        if t.kind in ADDITIVE:
            self._advance()
            self.enter(t.start)
            arg = self._parse_prefix(UNARY_PREC)
            self.depth -= 1
            return E.Unary(ADDITIVE[t.kind], arg, start=t.start, end=_end(arg))
        if self._is_kw("not"):
            raise self._error("'not' cannot stand here; put the negated part in parentheses")
        return self._parse_suffix(self._parse_primary())

    def _parse_suffix(self, left: E.Expr) -> E.Expr:
        t = self.cur
        key = (t.kind, t.text)
        negated = False
        nxt = self.toks[self.i + 1] if t.kind is not T.EOF else t
        if self._is_kw("not") and (nxt.kind, nxt.text) in IN_OPS:
            self._advance()
            negated = True
            t = self.cur
            key = (t.kind, t.text)
        if key in IN_OPS:
            self._advance()
            self._expect(T.LPAREN, "'(' after in")
            values = [self._parse_expr()]
            while self.cur.kind is T.COMMA:
                self._advance()
                values.append(self._parse_expr())
            end = self._expect(T.RPAREN, "')' closing the list").end
            return E.In(left, tuple(values), negated, IN_OPS[key], start=_start(left), end=end)
        op = MATCH_OPS.get(key)
        if op is None:
            return left
        self._advance()
        if self.cur.kind is T.LPAREN:
            self._advance()
            values = [self._parse_constant(op)]
            while self.cur.kind is T.COMMA:
                self._advance()
                values.append(self._parse_constant(op))
            end = self._expect(T.RPAREN, "')' closing the list").end
            return E.Match(op, left, tuple(values), True, start=_start(left), end=end)
        value = self._parse_constant(op)
        return E.Match(op, left, (value,), False, start=_start(left), end=_end(value))

    def _parse_constant(self, op: str) -> E.Expr:
        t = self.cur
        if t.kind is T.STRING:
            self._advance()
            return E.Str(t.text, t.raw_string, start=t.start, end=t.end)
        if t.kind is T.NUMBER:
            self._advance()
            return E.Num(_number(t.text), t.text, start=t.start, end=t.end)
        if t.kind in ADDITIVE and self.toks[self.i + 1].kind is T.NUMBER:
            self._advance()
            n = self._advance()
            num = E.Num(_number(n.text), n.text, start=n.start, end=n.end)
            return E.Unary(ADDITIVE[t.kind], num, start=t.start, end=n.end)
        if t.kind is T.NAME and t.text in ("true", "false"):
            self._advance()
            return E.Bool(t.text == "true", start=t.start, end=t.end)
        if t.kind is T.NAME and t.text == "null":
            self._advance()
            return E.Null(start=t.start, end=t.end)
        raise self._error(f"expected a constant after '{op}'")

    def _parse_primary(self) -> E.Expr:
        t = self.cur
        if t.kind is T.LPAREN:
            self._advance()
            self.enter(t.start)
            inner = self._parse_expr()
            self.depth -= 1
            end = self._expect(T.RPAREN, "')'").end
            return E.Paren(inner, start=t.start, end=end)
        if t.kind in (T.STRING, T.NUMBER):
            return self._parse_constant("(")
        if t.kind is T.TILDE:
            if self.toks[self.i + 1].kind is not T.LPAREN:
                raise self._error("expected a function call 'name~(...)'")
            return self._parse_call(t.text[:-1], True)
        if t.kind is T.NAME:
            if t.text in ("true", "false", "null"):
                return self._parse_constant("(")
            if t.text in KEYWORDS:
                raise self._error("expected a value")
            if self.toks[self.i + 1].kind is T.LPAREN and not t.raw.startswith("?") and (
                    "." not in t.raw and "`" not in t.raw):
                return self._parse_call(t.text, False)
            self._advance()
            name, optional = _field_name(t.raw)
            return E.Field(name, optional, start=t.start, end=t.end)
        raise self._error("expected a value")

    def _parse_call(self, name: str, insensitive: bool) -> E.FuncCall:
        start = self._advance().start
        open_tok = self._advance()
        self.enter(open_tok.start)
        args: list[E.Expr] = []
        if self.cur.kind is not T.RPAREN:
            args.append(self._parse_expr())
            while self.cur.kind is T.COMMA:
                self._advance()
                args.append(self._parse_expr())
        end = self._expect(T.RPAREN, "')' closing the call").end
        self.depth -= 1
        return E.FuncCall(name, tuple(args), insensitive, start=start, end=end)


Parser.QUERY_PARSERS = {"sequence": Parser._parse_sequence, "sample": Parser._parse_sample}


def _number(text: str) -> int | float:
    if text.isdigit():
        return int(text)
    return float(text)


def _start(e: E.Expr) -> int:
    return e.start


def _end(e: E.Expr) -> int:
    return e.end


def parse(text: str) -> E.Query:
    """Parse one EQL query; raises :class:`ParseError` (line/col, caret) when it cannot."""
    return Parser(text).parse()


__all__ = ["MAX_DEPTH", "ParseError", "Parser", "parse"]
