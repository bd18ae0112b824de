"""SPL parser: text -> :class:`Pipeline` (recursive descent, sqlglot style).

The query is split into stages at top-level pipes (quotes, macros, comments and subsearch
brackets respected), then each stage is parsed by the entry of ``COMMAND_PARSERS`` for its
command; any other command keeps its arguments as items. Search syntax follows Splunk's
documented precedence for the search command: parentheses, then NOT, then OR, then AND (implicit
or written), so ``a b OR c`` is ``a AND (b OR c)``. ``where``/``eval`` expressions use the usual
ladder OR/XOR < AND < NOT < comparison < ``+ - .`` < ``* / %`` < unary.

Errors raise :class:`ParseError` with the offset, line/col and a caret line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import TypeVar

from ruleatlas.languages.parsing import COMPARISONS, Operator, ParseError
from ruleatlas.languages.spl import ast as S
from ruleatlas.languages.spl.tokens import Kind, T, Token, Tokenizer

COMPARE_TOKENS: dict[Kind, str] = {T.EQ: "=", T.EQEQ: "=="} | COMPARISONS
MAX_DEPTH = 200
X = TypeVar("X")  # what a parenthesized parse returns
# Commands that may open a search (or a subsearch ``[tstats ...]``) without a leading pipe.
LEADING_COMMANDS = frozenset({
    "search", "tstats", "mstats", "inputlookup", "from", "rest", "makeresults", "datamodel",
    "metadata", "loadjob", "savedsearch", "inputcsv", "dbinspect", "eventcount", "pivot",
})
# Inside ``[ ... ]`` (foreach/map templates, subsearches) the first word may be any command.
SUBSEARCH_COMMANDS = LEADING_COMMANDS | frozenset({
    "eval", "where", "stats", "eventstats", "streamstats", "rename", "table", "fields",
    "lookup", "dedup", "sort", "head", "tail", "rex", "regex", "fillnull", "spath", "return",
    "format", "top", "rare", "chart", "timechart", "bin", "bucket", "mvexpand", "makemv",
})
_LEADING_WORD = re.compile(r"\s*([A-Za-z_]+)(?=\s|$)")


MAX_NESTING = 100
_PREFIX_OPS = frozenset({"NOT", "!", "-", "+", "not"})


def _split_stages(toks: list[Token], text: str) -> list[tuple[int, int, int]]:
    """Stage boundaries: (first token index, end token index, start offset) per stage."""
    stages: list[tuple[int, int, int]] = []
    opened: list[int] = []
    begin = 0
    parens = run = 0
    for i, t in enumerate(toks):
        depth = len(opened)
        # Recursion guard: the descent recurses on ( [ and prefix operators, so a search
        # nested deeper than any real one is a located error, never a RecursionError.
        if t.kind is T.LPAREN:
            parens += 1
        elif t.kind is T.RPAREN:
            parens = max(0, parens - 1)
        run = run + 1 if t.text in _PREFIX_OPS else 0
        if parens + len(opened) > MAX_NESTING or run > MAX_NESTING:
            raise ParseError(f"nested deeper than {MAX_NESTING} levels", text, t.start)
        if t.kind is T.LBRACKET:
            opened.append(t.start)
        elif t.kind is T.RBRACKET:
            if not opened:
                raise ParseError("unbalanced ']'", text, t.start)
            opened.pop()
        elif t.kind is T.PIPE and depth == 0:
            stages.append((begin, i, toks[begin].start if begin < i else t.start))
            begin = i + 1
        elif t.kind is T.EOF:
            if opened:
                raise ParseError("unclosed subsearch '['", text, opened[-1])
            stages.append((begin, i, toks[begin].start if begin < i else t.start))
    return stages


class Parser:
    """Parses one query text. ``base`` is the offset of ``text`` in the outermost query."""

    def __init__(self, text: str, base: int = 0, depth: int = 0) -> None:
        self.full = text
        self.base = base
        self.depth = depth
        if depth > MAX_DEPTH:
            raise ParseError("subsearches nested too deep", text, 0)

    # ---- pipeline ---------------------------------------------------------------------
    def split(self) -> tuple[bool, list[tuple[int, int, Token]]]:
        """Tokenize once and split into stages without parsing them: leading pipe, and per
        stage (start, end, first token). Stages can then be parsed with :meth:`command`,
        reusing the tokens."""
        toks = self._tokenize()
        leading = toks[0].kind is T.PIPE
        return leading, list(self._stages(toks, leading))

    def command(self, start: int, end: int, implicit: bool) -> S.Command:
        """Parse the stage ``text[start:end]`` (after :meth:`split`)."""
        return self._command(start, end, implicit)

    def parse(self) -> S.Pipeline:
        toks = self._tokenize()
        leading = toks[0].kind is T.PIPE
        commands = [self._command(start, end, not leading and not i)
                    for i, (start, end, _first) in enumerate(self._stages(toks, leading))]
        return S.Pipeline(tuple(commands), leading)

    def _tokenize(self) -> list[Token]:
        toks = Tokenizer(self.full).tokenize()
        self._all = toks
        self._index = {t.start: i for i, t in enumerate(toks)}
        return toks

    def _stages(self, toks: list[Token], leading: bool) -> Iterator[tuple[int, int, Token]]:
        """The stages of the pipeline, one by one (start, end, first token), each error raised
        where it is met; none for an empty search (nothing to filter)."""
        text = self.full
        found = False
        for n, (a, b, _s) in enumerate(_split_stages(toks, text)):
            if n == 0 and leading:
                if a != b:
                    raise ParseError("text before the leading '|'", text, toks[a].start)
                continue
            if a == b:
                if n == 0 and len(toks) == 1:
                    return
                raise ParseError("empty pipeline stage", text, toks[b].start)
            found = True
            yield toks[a].start, toks[b - 1].end, toks[a]
        if leading and not found:
            raise ParseError("nothing after '|'", text, len(text))

    def _command(self, start: int, end: int, implicit: bool) -> S.Command:
        text = self.full[start:end]
        if implicit:
            m = _LEADING_WORD.match(text)
            known = LEADING_COMMANDS if self.depth == 0 else SUBSEARCH_COMMANDS
            if m and m.group(1).lower() in known:
                implicit = False
        if implicit:
            return self._with_span(parse_search_command(self, text, start, explicit=False),
                                   start, end)
        head = self.search_tokens(text, start)
        first = head[0]
        if first.kind is T.MACRO and head[1].kind is T.EOF:
            macro = S.Macro(first.text, start=first.start, end=first.end)
            return S.Command("macro", (macro,), start=start, end=end)
        if first.kind is not T.WORD:
            raise ParseError(f"expected a command name, got {first.raw!r}", self.full,
                             first.start)
        name = first.text.lower()
        rest_start = first.end
        fn = COMMAND_PARSERS.get(name, parse_generic)
        cmd = fn(self, self.full[rest_start:end], rest_start, name)
        return self._with_span(cmd, start, end)

    @staticmethod
    def _with_span(cmd: S.Command, start: int, end: int) -> S.Command:
        object.__setattr__(cmd, "start", start)
        object.__setattr__(cmd, "end", end)
        return cmd

    def error(self, message: str, pos: int) -> ParseError:
        return ParseError(message, self.full, pos)

    # ---- items (generic arguments) ------------------------------------------------------
    def items(self, toks: list[Token]) -> tuple[S.Item, ...]:
        out: list[S.Item] = []
        i = 0
        while toks[i].kind is not T.EOF:
            t = toks[i]
            if t.kind is T.LBRACKET:
                j = self._match_bracket(toks, i)
                out.append(self.subsearch(toks[i], toks[j]))
                i = j + 1
                continue
            if t.kind is T.RBRACKET:
                raise self.error("unbalanced ']'", t.start)
            out.append(self.item(t))
            i += 1
        return tuple(out)

    def item(self, t: Token) -> S.Item:
        if t.kind is T.STRING:
            return S.Str(t.text, start=t.start, end=t.end)
        if t.kind is T.MACRO:
            return S.Macro(t.text, start=t.start, end=t.end)
        if t.kind in (T.WORD, T.NUMBER, T.QFIELD):
            return S.Word(t.raw, start=t.start, end=t.end)
        return S.Sym(t.text)

    def _match_bracket(self, toks: list[Token], i: int) -> int:
        depth = 0
        for j in range(i, len(toks)):
            k = toks[j].kind
            if k is T.LBRACKET:
                depth += 1
            elif k is T.RBRACKET:
                depth -= 1
                if depth == 0:
                    return j
        raise self.error("unclosed subsearch '['", toks[i].start)

    def subsearch(self, lb: Token, rb: Token) -> S.Sub:
        inner = self.full[lb.end : rb.start]
        # parse the inner text on its own, then shift offsets by keeping base info
        sub = Parser(inner, self.base + lb.end, self.depth + 1)
        try:
            pipe = sub.parse()
        except ParseError as e:
            raise self.error(e.description, lb.end + e.pos) from None
        return S.Sub(pipe, start=lb.start, end=rb.end)

    # ---- search expressions ---------------------------------------------------------------
    def search_expr(self, toks: list[Token]) -> S.SNode | None:
        p = _SearchParser(self, toks)
        node = p.parse_and()
        if p.peek().kind is not T.EOF:
            t = p.peek()
            raise self.error(f"unexpected {t.raw!r} in search", t.start)
        return node

    # ---- eval expressions -----------------------------------------------------------------
    def eval_tokens(self, text: str, offset: int) -> list[Token]:
        try:
            return Tokenizer(text, "eval", offset).tokenize()
        except ParseError as e:
            raise self.error(e.description, offset + e.pos) from None

    def search_tokens(self, text: str, offset: int) -> list[Token]:
        """Search-mode tokens of ``text`` (which starts at ``offset`` of the parsed text).

        Search-mode scanning is context free, so a slice of the whole text's tokens is reused
        when ``text`` starts and ends on token boundaries (it always does for stages and
        command arguments); otherwise the text is scanned again."""
        end = offset + len(text)
        index = getattr(self, "_index", None)
        if index is not None and text == self.full[offset:end]:
            i = index.get(offset + len(text) - len(text.lstrip()))
            if i is not None:
                j = i
                toks = self._all
                while toks[j].kind is not T.EOF and toks[j].end <= end:
                    j += 1
                if toks[j].start >= end or toks[j].kind is T.EOF:
                    return [*toks[i:j], Token(T.EOF, "", "", end, end)]
        try:
            return Tokenizer(text, "search", offset).tokenize()
        except ParseError as e:
            raise self.error(e.description, offset + e.pos) from None


class _Cursor:
    def __init__(self, parser: Parser, toks: list[Token]) -> None:
        self.p = parser
        self.toks = toks
        self.i = 0

    def peek(self, k: int = 0) -> Token:
        j = min(self.i + k, len(self.toks) - 1)
        return self.toks[j]

    def advance(self) -> Token:
        t = self.toks[self.i]
        if t.kind is not T.EOF:
            self.i += 1
        return t

    def word_is(self, *words: str, k: int = 0, case: bool = True) -> bool:
        t = self.peek(k)
        if t.kind is not T.WORD:
            return False
        return (t.text if case else t.text.upper()) in words

    def parenthesized(self, inner: Callable[[], X]) -> X:
        """``( inner )`` at the current ``(``; a missing ``)`` is a located error."""
        self.advance()
        node = inner()
        if self.peek().kind is not T.RPAREN:
            raise self.p.error("missing ')'", self.peek().start)
        self.advance()
        return node


class _SearchParser(_Cursor):
    """Search syntax: AND (implicit) < OR < NOT < primary."""

    STOP = (T.EOF, T.RPAREN)

    def parse_and(self) -> S.SNode | None:
        args: list[S.SNode] = []
        while self.peek().kind not in self.STOP:
            if self.word_is("AND"):
                if not args:
                    raise self.p.error("AND without a left operand", self.peek().start)
                self.advance()
                if self.peek().kind in self.STOP:
                    raise self.p.error("AND without a right operand", self.peek().start)
                continue
            node = self.parse_or()
            if isinstance(node, S.And):
                args.extend(node.args)
            else:
                args.append(node)
        if not args:
            return None
        return args[0] if len(args) == 1 else S.And(tuple(args))

    def parse_or(self) -> S.SNode:
        if self.word_is("OR"):
            raise self.p.error("OR without a left operand", self.peek().start)
        args = [self.parse_not()]
        while self.word_is("OR"):
            t = self.advance()
            if self.peek().kind in self.STOP or self.word_is("OR", "AND"):
                raise self.p.error("OR without a right operand", t.start)
            node = self.parse_not()
            args.extend(node.args if isinstance(node, S.Or) else (node,))
        if len(args) == 1:
            return args[0]
        flat: list[S.SNode] = []
        for a in args:
            flat.extend(a.args if isinstance(a, S.Or) else (a,))
        return S.Or(tuple(flat))

    def parse_not(self) -> S.SNode:
        if self.word_is("NOT"):
            t = self.advance()
            if self.peek().kind in self.STOP:
                raise self.p.error("NOT without an operand", t.start)
            return S.Not(self.parse_not())
        return self.parse_primary()

    def parse_primary(self) -> S.SNode:
        t = self.peek()
        if t.kind is T.LPAREN:
            node = self.parenthesized(self.parse_and)
            if node is None:
                raise self.p.error("empty parentheses", t.start)
            return node
        if t.kind is T.LBRACKET:
            j = self.p._match_bracket(self.toks, self.i)
            sub = self.p.subsearch(self.toks[self.i], self.toks[j])
            self.i = j + 1
            return sub
        if t.kind is T.MACRO:
            self.advance()
            return S.Macro(t.text, start=t.start, end=t.end)
        if t.kind in (T.WORD, T.STRING, T.NUMBER, T.QFIELD):
            nxt = self.peek(1)
            if nxt.kind in COMPARE_TOKENS:
                self.advance()
                op = self.advance()
                v = self.peek()
                if v.kind not in (T.WORD, T.STRING, T.NUMBER, T.QFIELD, T.MACRO):
                    raise self.p.error(f"missing value after {t.text}{op.text}", v.start)
                self.advance()
                if v.kind is T.STRING:
                    value: S.Word | S.Str = S.Str(v.text, start=v.start, end=v.end)
                    end = v.end
                else:
                    end = self.glue(v)
                    value = S.Word(self.p.full[v.start:end], start=v.start, end=end)
                return S.SCompare(t.text, COMPARE_TOKENS[op.kind], value, start=t.start,
                                  end=end)
            if (nxt.kind is T.WORD and nxt.text.upper() == "IN"
                    and self.peek(2).kind is T.LPAREN):
                return self.parse_in(t)
            if (t.kind is T.WORD and t.text.upper() in ("TERM", "CASE")
                    and nxt.kind is T.LPAREN):
                return self.parse_func_term(t)
            self.advance()
            value = _value(t)
            return S.STerm(value, None, start=t.start, end=t.end)
        raise self.p.error(f"unexpected {t.raw or 'end of search'!r}", t.start)

    def glue(self, v: Token) -> int:
        """Extend a bare value over parentheses written inside it (``*GetCurrent()*``,
        ``relative_time(now(), "-1d")``): tokens that touch, with balanced parentheses."""
        end = v.end
        while True:
            t = self.peek()
            if t.start != end or t.kind is T.EOF:
                return end
            if t.kind is T.LPAREN:
                depth = 0
                while True:
                    u = self.peek()
                    if u.kind is T.EOF:
                        raise self.p.error("unbalanced '(' in value", t.start)
                    if u.kind is T.LPAREN:
                        depth += 1
                    elif u.kind is T.RPAREN:
                        depth -= 1
                    self.advance()
                    end = u.end
                    if depth == 0:
                        break
                continue
            if t.kind is T.WORD and self.toks[self.i - 1].kind is T.RPAREN:
                self.advance()
                end = t.end
                continue
            return end

    def parse_in(self, field_tok: Token) -> S.SNode:
        self.advance()  # field
        self.advance()  # IN
        self.advance()  # (
        values: list[S.Word | S.Str] = []
        while True:
            v = self.peek()
            if v.kind is T.RPAREN:
                end = self.advance().end
                break
            if v.kind is T.COMMA:
                self.advance()
                continue
            if v.kind in (T.WORD, T.STRING, T.NUMBER, T.QFIELD, T.MACRO):
                self.advance()
                values.append(_value(v))
                continue
            raise self.p.error("expected a value or ')' in IN list", v.start)
        return S.SIn(field_tok.text, tuple(values), start=field_tok.start, end=end)

    def parse_func_term(self, t: Token) -> S.SNode:
        self.advance()
        self.advance()  # (
        v = self.peek()
        if v.kind not in (T.WORD, T.STRING, T.NUMBER):
            raise self.p.error(f"expected a term inside {t.text}()", v.start)
        self.advance()
        if self.peek().kind is not T.RPAREN:
            raise self.p.error(f"missing ')' after {t.text}(", self.peek().start)
        end = self.advance().end
        value = _value(v)
        return S.STerm(value, t.text.upper(), start=t.start, end=end)


class _EvalParser(_Cursor):
    """Eval syntax: OR/XOR < AND < NOT < comparison < + - . < * / % < unary < primary."""

    STOP = (T.EOF, T.RPAREN, T.COMMA)

    def parse(self) -> S.ENode:
        return self.parse_or()

    def parse_or(self) -> S.ENode:
        left = self.parse_and()
        while self.word_is("OR", "XOR", case=False):
            op = self.advance().text.upper()
            left = S.BinOp(op, left, self.parse_and())
        return left

    def parse_and(self) -> S.ENode:
        left = self.parse_not()
        while self.word_is("AND", case=False):
            self.advance()
            left = S.BinOp("AND", left, self.parse_not())
        return left

    def parse_not(self) -> S.ENode:
        if self.word_is("NOT", case=False):  # NOT x and NOT(x) alike
            self.advance()
            return S.Unary("NOT", self.parse_not())
        return self.parse_cmp()

    def parse_cmp(self) -> S.ENode:
        left = self.parse_add()
        t = self.peek()
        if t.kind in COMPARE_TOKENS:
            self.advance()
            return S.BinOp(COMPARE_TOKENS[t.kind], left, self.parse_add())
        if self.word_is("LIKE", case=False):
            self.advance()
            return S.BinOp("LIKE", left, self.parse_add())
        if self.word_is("IN", case=False) and self.peek(1).kind is T.LPAREN:
            self.advance()
            self.advance()
            args = self.parse_args()
            return S.Call("in", (left, *args))
        return left

    def _left_assoc(self, ops: tuple[Kind, ...], operand: Callable[[], S.ENode]) -> S.ENode:
        """``operand (op operand)*`` for the operator tokens ``ops``, grouped to the left."""
        left = operand()
        while self.peek().kind in ops:
            op = self.advance().text
            left = S.BinOp(op, left, operand())
        return left

    def parse_add(self) -> S.ENode:
        return self._left_assoc((Operator.PLUS, Operator.MINUS, T.DOT), self.parse_mul)

    def parse_mul(self) -> S.ENode:
        return self._left_assoc((Operator.STAR, Operator.SLASH, Operator.PERCENT), self.parse_unary)

    def parse_unary(self) -> S.ENode:
        if self.peek().kind is Operator.MINUS:
            self.advance()
            return S.Unary("-", self.parse_unary())
        if self.peek().kind is Operator.PLUS:
            self.advance()
            return self.parse_unary()
        return self.parse_primary()

    def parse_args(self) -> tuple[S.ENode, ...]:
        """Arguments after '(' up to and including ')'."""
        args: list[S.ENode] = []
        if self.peek().kind is T.RPAREN:
            self.advance()
            return ()
        while True:
            if self.peek().kind is Operator.STAR and self.peek(1).kind in (T.RPAREN, T.COMMA):
                self.advance()
                args.append(S.EOpaque("*"))
            else:
                args.append(self.parse_or())
            t = self.peek()
            if t.kind is T.COMMA:
                self.advance()
                continue
            if t.kind is T.RPAREN:
                self.advance()
                return tuple(args)
            raise self.p.error(f"expected ',' or ')' in arguments, got {t.raw!r}", t.start)

    def parse_primary(self) -> S.ENode:
        t = self.peek()
        if t.kind is T.LPAREN:
            return self.parenthesized(self.parse_or)
        if t.kind is T.NUMBER:
            self.advance()
            return S.Num(t.text)
        if t.kind is T.STRING:
            self.advance()
            return S.Str(t.text)
        if t.kind is T.QFIELD:
            self.advance()
            return S.Field(t.text, start=t.start, end=t.end)
        if t.kind is T.MACRO:
            self.advance()
            return S.Macro(t.text, start=t.start, end=t.end)
        if t.kind is T.WORD:
            self.advance()
            if self.peek().kind is T.LPAREN and t.text[0].isalpha():
                self.advance()
                return S.Call(t.text.lower(), self.parse_args())
            return S.Field(t.text, start=t.start, end=t.end)
        raise self.p.error(f"unexpected {t.raw or 'end of expression'!r} in expression", t.start)


# ---- command parsers ----------------------------------------------------------------------

CommandParser = Callable[[Parser, str, int, str], S.Command]


def _value(t: Token) -> S.Word | S.Str:
    """A search value token as an item: a string's value, else the word as written."""
    if t.kind is T.STRING:
        return S.Str(t.text, start=t.start, end=t.end)
    return S.Word(t.raw, start=t.start, end=t.end)


def parse_generic(p: Parser, text: str, offset: int, name: str) -> S.Command:
    """Any command: arguments kept as items (an unknown command never fails)."""
    return S.Command(name, p.items(p.search_tokens(text, offset)))


def parse_search_command(p: Parser, text: str, offset: int, name: str = "search",
                         explicit: bool = True) -> S.Command:
    toks = p.search_tokens(text, offset)
    return S.Command("search", search=p.search_expr(toks), explicit=explicit)


def parse_where(p: Parser, text: str, offset: int, name: str) -> S.Command:
    toks = p.eval_tokens(text, offset)
    if toks[0].kind is T.EOF:
        raise p.error("where needs an expression", offset)
    ep = _EvalParser(p, toks)
    expr = ep.parse()
    if ep.peek().kind is not T.EOF:
        raise p.error(f"unexpected {ep.peek().raw!r} in where", ep.peek().start)
    return S.Command(name, expr=expr)


def parse_eval(p: Parser, text: str, offset: int, name: str) -> S.Command:
    toks = p.eval_tokens(text, offset)
    ep = _EvalParser(p, toks)
    pairs: list[tuple[str, S.ENode]] = []
    while ep.peek().kind is not T.EOF:
        t = ep.advance()
        if t.kind not in (T.WORD, T.QFIELD, T.STRING):
            raise p.error(f"expected a field name in eval, got {t.raw!r}", t.start)
        if ep.peek().kind is not T.EQ:
            raise p.error("expected '=' in eval assignment", ep.peek().start)
        ep.advance()
        pairs.append((t.text, ep.parse()))
        if ep.peek().kind is T.COMMA:
            ep.advance()
        elif ep.peek().kind is not T.EOF:
            raise p.error(f"unexpected {ep.peek().raw!r} in eval", ep.peek().start)
    if not pairs:
        raise p.error("eval needs an assignment", offset)
    return S.Command(name, assignments=tuple(pairs))


def parse_tstats(p: Parser, text: str, offset: int, name: str) -> S.Command:
    """``tstats [opts] aggs [from datamodel=X.Y] [where <search>] [by ...]``."""
    toks = p.search_tokens(text, offset)
    where_at = by_at = None
    depth = 0
    for i, t in enumerate(toks):
        if t.kind in (T.LPAREN, T.LBRACKET):
            depth += 1
        elif t.kind in (T.RPAREN, T.RBRACKET):
            depth -= 1
        elif depth == 0 and t.kind is T.WORD:
            w = t.text.lower()
            if w == "where" and where_at is None and by_at is None:
                where_at = i
            elif w in ("by", "groupby") and by_at is None and where_at is not None:
                by_at = i
    if where_at is None:
        return S.Command(name, p.items(toks))
    eof = toks[-1]
    head = [*toks[:where_at], eof]
    cond_toks = [*toks[where_at + 1:by_at], eof] if by_at is not None else toks[where_at + 1 :]
    tail = toks[by_at:] if by_at is not None else [eof]
    return S.Command(name, p.items(head), search=p.search_expr(cond_toks), tail=p.items(tail))


COMMAND_PARSERS: dict[str, CommandParser] = {
    "search": parse_search_command,
    "where": parse_where,
    "eval": parse_eval,
    "tstats": parse_tstats,
}


def parse(text: str) -> S.Pipeline:
    """Parse an SPL query. Raises :class:`ParseError` with a position on bad input."""
    return Parser(text).parse()
