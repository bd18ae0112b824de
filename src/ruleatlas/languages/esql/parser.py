"""ES|QL parser: text -> :class:`Query` (recursive descent, sqlglot style).

A query is a source command (``from``, ``ts``, ``row``, ``show``) followed by processing
commands, each after a ``|``; ``COMMAND_PARSERS`` maps a command name to its ``_parse_<x>``
method. A command the table does not know is kept as an ``opaque`` command with its text (ES|QL
grows new commands often; one of them must not fail a whole rule).

Expressions follow the ES|QL grammar (``EsqlBaseParser.g4``), loosest first::

    or < and < not < predicate ([not] like/rlike, [not] in, is [not] null, ``:``)
      < comparison (== != =~ < <= > >=) < + - < * / % < unary - < ``::`` cast < primary

``not a and b`` is ``(not a) and b``. Keywords are case-insensitive and reserved only where the
grammar expects them. Errors raise :class:`ParseError` with line/col; nesting deeper than
``MAX_NESTING`` levels (parentheses, ``not``, unary minus, calls, lists, fork branches) is a
located ``ParseError``, never a ``RecursionError``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ruleatlas.languages.esql import ast as A
from ruleatlas.languages.esql.tokens import Kind, T, Token, Tokenizer
from ruleatlas.languages.parsing import (
    ADDITIVE,
    COMPARISONS,
    MULTIPLICATIVE,
    DepthGuard,
    Operator,
    ParseError,
)

X = TypeVar("X")
MAX_NESTING = 100
SOURCE_COMMANDS = frozenset({"from", "ts", "row", "show"})
COMPARE_OPS: dict[Kind, str] = {T.EQ: "==", T.CIEQ: "=~"} | COMPARISONS
# The units Elasticsearch knows (``1 hour``, ``7 days``); the grammar takes any word after an
# integer (``5m``), and the lowering notes a unit not listed here.
TIME_UNITS = frozenset({
    "millisecond", "milliseconds", "ms", "second", "seconds", "sec", "s", "minute", "minutes",
    "min", "m", "hour", "hours", "h", "day", "days", "d", "week", "weeks", "w", "month", "months",
    "mo", "quarter", "quarters", "q", "year", "years", "yr", "y", "nanosecond", "nanoseconds",
    "ns", "microsecond", "microseconds", "us",
})
# Words that cannot be a bare field name (the generator backquotes such names).
RESERVED = frozenset({
    "and", "or", "not", "in", "is", "like", "rlike", "null", "true", "false", "by", "as",
    "asc", "desc", "nulls", "on", "with", "metadata", "where",
})
# Tokens an unquoted index pattern / enrich policy / lookup index may be glued from.
PATTERN_TOKENS: frozenset[Kind] = frozenset({
    T.NAME, T.INTEGER, T.DECIMAL, T.DOT, T.COLON, T.CAST, T.LBRACE, T.RBRACE, Operator.MINUS,
    Operator.STAR, Operator.LT, Operator.GT, Operator.SLASH, Operator.PLUS, Operator.PERCENT,
})
NAME_PATTERN_TOKENS: frozenset[Kind] = frozenset({T.NAME, T.QNAME, Operator.STAR, T.DOT})


class Parser(DepthGuard):
    """Parses one ES|QL query."""

    max_depth = MAX_NESTING

    def __init__(self, text: str) -> None:
        self.text = text
        self.toks: list[Token] = Tokenizer(text).tokenize()
        self.i = 0
        self.depth = 0

    # ---- cursor -------------------------------------------------------------------------
    def peek(self, k: int = 0) -> Token:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def advance(self) -> Token:
        t = self.toks[self.i]
        if t.kind is not T.EOF:
            self.i += 1
        return t

    def prev_end(self) -> int:
        return self.toks[self.i - 1].end if self.i else 0

    def is_word(self, *words: str, k: int = 0) -> bool:
        t = self.peek(k)
        return t.kind is T.NAME and t.text.lower() in words

    def match_word(self, *words: str) -> Token | None:
        return self.advance() if self.is_word(*words) else None

    def expect(self, kind: T, what: str) -> Token:
        t = self.peek()
        if t.kind is not kind:
            raise self.error(f"expected {what}, got {self.show(t)}", t.start)
        return self.advance()

    def expect_word(self, word: str) -> Token:
        if not self.is_word(word):
            t = self.peek()
            raise self.error(f"expected '{word}', got {self.show(t)}", t.start)
        return self.advance()

    @staticmethod
    def show(t: Token) -> str:
        return "end of query" if t.kind is T.EOF else repr(t.raw)

    def error(self, message: str, pos: int) -> ParseError:
        return ParseError(message, self.text, pos)

    # ---- query and commands -------------------------------------------------------------
    def parse(self) -> A.Query:
        first = self.peek()
        if first.kind is T.EOF:
            raise self.error("empty query", first.start)
        if not self.is_word(*SOURCE_COMMANDS):
            raise self.error(f"a query starts with from, row, show or ts, got {self.show(first)}",
                             first.start)
        cmds = [self.command(stop=(T.EOF,))]
        while self.peek().kind is T.PIPE:
            self.advance()
            cmds.append(self.command(stop=(T.EOF,)))
        t = self.peek()
        if t.kind is not T.EOF:
            raise self.error(f"unexpected {self.show(t)}", t.start)
        return A.Query(tuple(cmds))

    def command(self, stop: tuple[T, ...]) -> A.Command:
        t = self.peek()
        if t.kind is not T.NAME:
            raise self.error(f"expected a command, got {self.show(t)}", t.start)
        self.advance()
        name = t.text.lower()
        if name == "inline" and self.is_word("stats"):
            self.advance()
            name = "inline stats"
        elif name == "inlinestats":
            name = "inline stats"
        elif name == "lookup" and self.is_word("join"):
            self.advance()
            name = "lookup join"
        fn = COMMAND_PARSERS.get(name)
        cmd = fn(self, name) if fn is not None else self._parse_opaque(name, stop)
        nxt = self.peek()
        if nxt.kind is not T.PIPE and nxt.kind not in stop:
            raise self.error(f"unexpected {self.show(nxt)} in {name}", nxt.start)
        object.__setattr__(cmd, "start", t.start)
        object.__setattr__(cmd, "end", self.prev_end())
        return cmd

    def _parse_opaque(self, name: str, stop: tuple[T, ...]) -> A.Command:
        start = self.peek().start
        depth = 0
        while True:
            t = self.peek()
            if t.kind is T.EOF or (depth == 0 and (t.kind is T.PIPE or t.kind in stop)):
                break
            if t.kind in (T.LPAREN, T.LBRACKET, T.LBRACE):
                depth += 1
            elif t.kind in (T.RPAREN, T.RBRACKET, T.RBRACE):
                depth -= 1
            self.advance()
        end = self.prev_end()
        return A.Command(name, raw=self.text[start:end] if end > start else "")

    def glued(self, kinds: frozenset[Kind], what: str) -> tuple[str, Token]:
        """Adjacent tokens of ``kinds`` read as one word (index patterns, policy names); the
        value of a backquoted part, the raw text of the others."""
        first = self.peek()
        if first.kind not in kinds:
            raise self.error(f"expected {what}, got {self.show(first)}", first.start)
        parts = [first.text if first.kind is T.QNAME else first.raw]
        last = self.advance()
        while self.peek().kind in kinds and self.peek().start == last.end:
            last = self.advance()
            parts.append(last.text if last.kind is T.QNAME else last.raw)
        return "".join(parts), first

    def qualified_name(self) -> str:
        """``a.b.c``, with backquoted parts: `` `a b`.c ``."""
        t = self.peek()
        if t.kind is T.QNAME or (t.kind is T.NAME and t.text.lower() not in RESERVED):
            self.advance()
        else:
            raise self.error(f"expected a field name, got {self.show(t)}", t.start)
        parts = [t.text]
        while self.peek().kind is T.DOT and self.peek(1).kind in (T.NAME, T.QNAME):
            self.advance()
            parts.append(self.advance().text)
        return ".".join(parts)

    def name_pattern(self) -> str:
        t = self.peek()
        if t.kind is T.NAME and t.text.lower() in RESERVED:
            raise self.error(f"expected a field name, got {self.show(t)}", t.start)
        return self.glued(NAME_PATTERN_TOKENS, "a field name")[0]

    def comma_list(self, item: Callable[[], X]) -> list[X]:
        out = [item()]
        while self.peek().kind is T.COMMA:
            self.advance()
            out.append(item())
        return out

    # ---- expressions --------------------------------------------------------------------
    def expr(self) -> A.Expr:
        """A whole boolean expression."""
        return self.bool_expr(0)

    def bool_expr(self, min_prec: int) -> A.Expr:
        """``or`` (0) and ``and`` (1) by precedence climbing; the operands are ``not_expr``."""
        left = self.not_expr()
        while True:
            if min_prec <= 0 and self.is_word("or"):
                self.advance()
                right = self.bool_expr(1)
                args = [*(left.args if isinstance(left, A.Or) else (left,)),
                        *(right.args if isinstance(right, A.Or) else (right,))]
                left = A.Or(tuple(args), start=_start(left), end=_end(right))
            elif min_prec <= 1 and self.is_word("and"):
                self.advance()
                right = self.not_expr()
                args = [*(left.args if isinstance(left, A.And) else (left,)),
                        *(right.args if isinstance(right, A.And) else (right,))]
                left = A.And(tuple(args), start=_start(left), end=_end(right))
            else:
                return left

    def not_expr(self) -> A.Expr:
        """``not`` prefixes (read in a loop: a long chain costs no recursion)."""
        nots: list[Token] = []
        while self.is_word("not"):
            t = self.advance()
            self.enter(t.start)
            nots.append(t)
        node = self.predicate()
        for t in reversed(nots):
            node = A.Not(node, start=t.start, end=_end(node))
        self.depth -= len(nots)
        return node

    def predicate(self) -> A.Expr:
        left = self.arith()
        op = COMPARE_OPS.get(self.peek().kind)
        if op is not None:
            self.advance()
            right = self.arith()
            left = A.BinOp(op, left, right, start=_start(left), end=_end(right))
        start = _start(left)
        negated = False
        if self.is_word("not") and self.is_word("like", "rlike", "in", k=1):
            self.advance()
            negated = True
        if self.is_word("like", "rlike"):
            regex = self.advance().text.lower() == "rlike"
            if self.peek().kind is T.LPAREN:
                self.enter(self.advance().start)
                pats = self.comma_list(self.arith)
                self.depth -= 1
                self.expect(T.RPAREN, "')'")
                return A.Like(left, tuple(pats), regex, negated, True, start=start,
                            end=self.prev_end())
            pat = self.arith()
            return A.Like(left, (pat,), regex, negated, False, start=start, end=_end(pat))
        if self.is_word("in"):
            self.advance()
            self.enter(self.expect(T.LPAREN, "'(' after in").start)
            items = self.comma_list(self.expr)
            self.depth -= 1
            self.expect(T.RPAREN, "')' closing the in list")
            return A.In(left, tuple(items), negated, start=start, end=self.prev_end())
        if self.is_word("is"):
            self.advance()
            neg = self.match_word("not") is not None
            self.expect_word("null")
            return A.IsNull(left, neg, start=start, end=self.prev_end())
        if self.peek().kind is T.COLON:
            self.advance()
            q = self.arith()
            return A.Match(left, q, start=start, end=_end(q))
        return left

    def arith(self, min_prec: int = 0) -> A.Expr:
        """``+ -`` (0) and ``* / %`` (1), left-associative, by precedence climbing. Each
        operator nests the tree one level deeper (``a + b + c`` is ``(a + b) + c``), so each
        counts toward ``MAX_NESTING``: the generator and the lowering recurse on the tree."""
        left = self.unary()
        ops = 0
        while True:
            t = self.peek()
            if min_prec <= 0 and t.kind in ADDITIVE:
                self.advance()
                right = self.arith(1)
                left = A.BinOp(ADDITIVE[t.kind], left, right, start=_start(left), end=_end(right))
            elif t.kind in MULTIPLICATIVE:
                self.advance()
                right = self.unary()
                left = A.BinOp(MULTIPLICATIVE[t.kind], left, right, start=_start(left),
                             end=_end(right))
            else:
                self.depth -= ops
                return left
            self.enter(t.start)
            ops += 1

    def unary(self) -> A.Expr:
        """Unary ``-``/``+`` prefixes (a loop), then a primary and its ``::`` casts."""
        signs: list[Token] = []
        while self.peek().kind in (Operator.MINUS, Operator.PLUS):
            t = self.advance()
            self.enter(t.start)
            signs.append(t)
        node = self._cast(self.primary())
        for t in reversed(signs):
            if t.kind is Operator.MINUS:
                node = A.Unary("-", node, start=t.start, end=_end(node))
        self.depth -= len(signs)
        return node

    def _cast(self, node: A.Expr) -> A.Expr:
        while self.peek().kind is T.CAST:
            self.advance()
            ty = self.expect(T.NAME, "a type after '::'")
            node = A.Cast(node, ty.text.lower(), start=_start(node), end=ty.end)
        return node

    def primary(self) -> A.Expr:
        t = self.peek()
        k = t.kind
        if k in (T.INTEGER, T.DECIMAL):
            self.advance()
            num = A.Num(t.text, start=t.start, end=t.end)
            nxt = self.peek()
            if (k is T.INTEGER and nxt.kind is T.NAME and nxt.text.lower() not in RESERVED
                    and "." not in nxt.text and self.peek(1).kind is not T.LPAREN):
                u = self.advance()
                return A.Duration(num, u.text.lower(), start=t.start, end=u.end)
            return num
        if k is T.STRING:
            self.advance()
            return A.Str(t.text, t.triple, start=t.start, end=t.end)
        if k is T.PARAM:
            self.advance()
            return A.Param(t.text, start=t.start, end=t.end)
        if k is T.LPAREN:
            self.advance()
            self.enter(t.start)
            inner = self.bool_expr(0)
            self.depth -= 1
            self.expect(T.RPAREN, "')'")
            return inner
        if k is T.LBRACKET:
            return self.list_literal()
        if k is T.LBRACE:
            return self.map_literal()
        if k is T.NAME:
            low = t.text.lower()
            if low in ("true", "false"):
                self.advance()
                return A.Bool(low == "true", start=t.start, end=t.end)
            if low == "null":
                self.advance()
                return A.Null(start=t.start, end=t.end)
            if self.peek(1).kind is T.LPAREN and "." not in t.text and low not in RESERVED:
                return self.call()
        if k in (T.NAME, T.QNAME):
            name = self.qualified_name()
            return A.Field(name, start=t.start, end=self.prev_end())
        raise self.error(f"unexpected {self.show(t)} in expression", t.start)

    def call(self) -> A.Expr:
        t = self.advance()
        lp = self.advance()
        self.enter(lp.start)
        args: list[A.Expr] = []
        star = False
        if self.peek().kind is Operator.STAR and self.peek(1).kind is T.RPAREN:
            self.advance()
            star = True
        elif self.peek().kind is not T.RPAREN:
            args.append(self.bool_expr(0))  # a loop, not comma_list: one frame less per level
            while self.peek().kind is T.COMMA:
                self.advance()
                args.append(self.bool_expr(0))
        self.depth -= 1
        self.expect(T.RPAREN, "',' or ')' in the arguments")
        return A.FuncCall(t.text.lower(), tuple(args), star, start=t.start, end=self.prev_end())

    def list_literal(self) -> A.Expr:
        lb = self.advance()
        self.enter(lb.start)
        items: list[A.Expr] = []
        if self.peek().kind is not T.RBRACKET:
            items = self.comma_list(self.expr)
        self.depth -= 1
        self.expect(T.RBRACKET, "']'")
        return A.ListLit(tuple(items), start=lb.start, end=self.prev_end())

    def map_literal(self) -> A.Expr:
        lb = self.advance()
        self.enter(lb.start)
        entries: list[tuple[str, A.Expr]] = []
        while self.peek().kind is not T.RBRACE:
            key = self.expect(T.STRING, "a string key in the map")
            self.expect(T.COLON, "':' after the map key")
            entries.append((key.text, self.expr()))
            if self.peek().kind is not T.COMMA:
                break
            self.advance()
        self.depth -= 1
        self.expect(T.RBRACE, "'}'")
        return A.MapLit(tuple(entries), start=lb.start, end=self.prev_end())

    def assign(self, required: bool = False, agg_where: bool = False) -> A.Assign:
        """``[name =] expr`` (``name`` a qualified name)."""
        start = self.peek().start
        name: str | None = None
        save = self.i
        if self.peek().kind in (T.NAME, T.QNAME) and not (
                self.peek().kind is T.NAME and self.peek().text.lower() in RESERVED):
            n = self.qualified_name()
            if self.peek().kind is T.ASSIGN:
                self.advance()
                name = n
            else:
                self.i = save
        if name is None and required:
            t = self.peek()
            raise self.error(f"expected 'name = value', got {self.show(t)}", t.start)
        e = self.expr()
        where = None
        if agg_where and self.is_word("where"):
            self.advance()
            where = self.expr()
        return A.Assign(name, e, where, start=start, end=self.prev_end())

    # ---- command parsers ----------------------------------------------------------------
    def _parse_from(self, name: str) -> A.Command:
        def source() -> A.Source:
            t = self.peek()
            if t.kind is T.STRING:
                self.advance()
                return A.Source(t.text, True)
            if t.kind is T.NAME and t.text.lower() == "metadata":
                raise self.error("expected an index pattern, got 'metadata'", t.start)
            return A.Source(self.glued(PATTERN_TOKENS, "an index pattern")[0])

        sources = self.comma_list(source)
        meta: list[str] = []
        if self.match_word("metadata"):
            meta = self.comma_list(self.qualified_name)
        return A.Command(name, sources=tuple(sources), names=tuple(meta))

    def _parse_row(self, name: str) -> A.Command:
        assigns = self.comma_list(lambda: self.assign(required=True))
        return A.Command(name, assigns=tuple(assigns))

    def _parse_show(self, name: str) -> A.Command:
        t = self.expect(T.NAME, "'info' after show")
        return A.Command(name, names=(t.text.lower(),))

    def _parse_where(self, name: str) -> A.Command:
        return A.Command(name, expr=self.expr())

    def _parse_eval(self, name: str) -> A.Command:
        return A.Command(name, assigns=tuple(self.comma_list(self.assign)))

    def _parse_stats(self, name: str) -> A.Command:
        aggs: list[A.Assign] = []
        if not self.is_word("by") and self.peek().kind not in (T.PIPE, T.EOF, T.RPAREN):
            aggs = self.comma_list(lambda: self.assign(agg_where=True))
        by: list[A.Assign] = []
        if self.match_word("by"):
            by = self.comma_list(self.assign)
        return A.Command(name, assigns=tuple(aggs), by=tuple(by))

    def _parse_keep(self, name: str) -> A.Command:
        return A.Command(name, names=tuple(self.comma_list(self.name_pattern)))

    def _parse_mv_expand(self, name: str) -> A.Command:
        return A.Command(name, names=(self.qualified_name(),))

    def _parse_rename(self, name: str) -> A.Command:
        def pair() -> A.RenamePair:
            first = self.name_pattern()
            if self.peek().kind is T.ASSIGN:
                self.advance()
                return A.RenamePair(self.name_pattern(), first, True)
            self.expect_word("as")
            return A.RenamePair(first, self.name_pattern())

        return A.Command(name, renames=tuple(self.comma_list(pair)))

    def _pattern(self) -> A.Str:
        t = self.expect(T.STRING, "a pattern string")
        return A.Str(t.text, t.triple, start=t.start, end=t.end)

    def _parse_dissect(self, name: str) -> A.Command:
        src = self.unary()
        pat = self._pattern()
        opts: list[A.Assign] = []
        while self.peek().kind is T.NAME and self.peek(1).kind is T.ASSIGN:
            opts.append(self.assign(required=True))
        return A.Command(name, expr=src, patterns=(pat,), assigns=tuple(opts))

    def _parse_grok(self, name: str) -> A.Command:
        src = self.unary()
        pats = self.comma_list(self._pattern)
        return A.Command(name, expr=src, patterns=tuple(pats))

    def _parse_enrich(self, name: str) -> A.Command:
        policy = self.glued(PATTERN_TOKENS, "an enrich policy name")[0]
        on: tuple[str, ...] = ()
        if self.match_word("on"):
            on = (self.name_pattern(),)
        withs: list[A.Assign] = []
        if self.match_word("with"):
            def item() -> A.Assign:
                start = self.peek().start
                first = self.name_pattern()
                if self.peek().kind is T.ASSIGN:
                    self.advance()
                    t = self.peek()
                    src = self.name_pattern()
                    source = A.Field(src, start=t.start, end=self.prev_end())
                    return A.Assign(first, source, None, start=start, end=self.prev_end())
                on = A.Field(first, start=start, end=self.prev_end())
                return A.Assign(None, on, None, start=start, end=self.prev_end())
            withs = self.comma_list(item)
        return A.Command(name, target=policy, names=on, assigns=tuple(withs))

    def _parse_lookup_join(self, name: str) -> A.Command:
        index = self.glued(PATTERN_TOKENS, "a lookup index")[0]
        self.expect_word("on")
        on = self.comma_list(self.qualified_name)
        return A.Command(name, target=index, names=tuple(on))

    def _parse_sort(self, name: str) -> A.Command:
        def key() -> A.SortKey:
            e = self.expr()
            order = t.text.lower() if (t := self.match_word("asc", "desc")) else None
            nulls = None
            if self.match_word("nulls"):
                w = self.match_word("first", "last")
                if w is None:
                    raise self.error("expected first or last after nulls", self.peek().start)
                nulls = w.text.lower()
            return A.SortKey(e, order, nulls)

        return A.Command(name, keys=tuple(self.comma_list(key)))

    def _parse_limit(self, name: str) -> A.Command:
        t = self.peek()
        if t.kind not in (T.INTEGER, T.PARAM):
            raise self.error(f"expected a number after limit, got {self.show(t)}", t.start)
        self.advance()
        return A.Command(name, args=(A.Num(t.text, start=t.start, end=t.end) if t.kind is T.INTEGER
                                   else A.Param(t.text, start=t.start, end=t.end),))

    def _parse_sample(self, name: str) -> A.Command:
        args = [self.primary()]
        if self.peek().kind in (T.INTEGER, T.PARAM):
            args.append(self.primary())
        return A.Command(name, args=tuple(args))

    def _parse_completion(self, name: str) -> A.Command:
        a = self.assign()
        self.expect_word("with")
        return A.Command(name, assigns=(a,), args=(self.primary(),))

    def _parse_change_point(self, name: str) -> A.Command:
        args = [self.unary()]
        if self.match_word("on"):
            args.append(self.unary())
        names: list[str] = []
        if self.match_word("as"):
            names = self.comma_list(self.qualified_name)
        return A.Command(name, args=tuple(args), names=tuple(names))

    def _parse_fork(self, name: str) -> A.Command:
        branches: list[tuple[A.Command, ...]] = []
        while self.peek().kind is T.LPAREN:
            lp = self.advance()
            self.enter(lp.start)
            cmds = [self.command(stop=(T.RPAREN,))]
            while self.peek().kind is T.PIPE:
                self.advance()
                cmds.append(self.command(stop=(T.RPAREN,)))
            self.depth -= 1
            self.expect(T.RPAREN, "')' closing the fork branch")
            branches.append(tuple(cmds))
        if not branches:
            raise self.error("fork needs branches in parentheses", self.peek().start)
        return A.Command(name, branches=tuple(branches))


def _start(e: A.Expr) -> int:
    return e.start


def _end(e: A.Expr) -> int:
    return e.end


CommandParser = Callable[[Parser, str], A.Command]

COMMAND_PARSERS: dict[str, CommandParser] = {
    "from": Parser._parse_from,
    "ts": Parser._parse_from,
    "row": Parser._parse_row,
    "show": Parser._parse_show,
    "where": Parser._parse_where,
    "eval": Parser._parse_eval,
    "stats": Parser._parse_stats,
    "inline stats": Parser._parse_stats,
    "keep": Parser._parse_keep,
    "drop": Parser._parse_keep,
    "rename": Parser._parse_rename,
    "dissect": Parser._parse_dissect,
    "grok": Parser._parse_grok,
    "mv_expand": Parser._parse_mv_expand,
    "enrich": Parser._parse_enrich,
    "lookup join": Parser._parse_lookup_join,
    "sort": Parser._parse_sort,
    "limit": Parser._parse_limit,
    "sample": Parser._parse_sample,
    "completion": Parser._parse_completion,
    "change_point": Parser._parse_change_point,
    "fork": Parser._parse_fork,
}


def parse(text: str) -> A.Query:
    """Parse an ES|QL query. Raises :class:`ParseError` with a position on bad input."""
    return Parser(text).parse()


def parse_expression(text: str) -> A.Expr:
    """Parse one boolean expression (tests, tools)."""
    p = Parser(text)
    e = p.expr()
    t = p.peek()
    if t.kind is not T.EOF:
        raise p.error(f"unexpected {p.show(t)}", t.start)
    return e
