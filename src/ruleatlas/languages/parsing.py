"""The toolkit the query-language parsers share (SPL, EQL, KQL, ES|QL).

* Locations: :func:`line_col` and :func:`span_of` turn an offset into a 1-based line/column
  (a bisect over cached line starts, so a query with many predicates stays linear).
* Errors: :class:`ParseError` (sqlglot's shape: a description, the offset, line/col and a
  caret line under the offending character).
* Tokens: :class:`Token` (kind, text, raw text, offsets), generic over a language's token enum;
  :class:`Operator`, the operator kinds every language spells alike (``!= < + * ...``);
  :func:`unescape` (the backslash-escape loop; each language says what its escapes mean);
  :class:`Scanner`, the master-regex tokenizer loop driven by a language's tables (SPL, EQL,
  ES|QL; KQL's grammar is scannerless and keeps its own).
* Nesting: :class:`DepthGuard` turns a query nested deeper than a parser's limit into a located
  ``ParseError``, never a ``RecursionError``.
* Syntax trees: :class:`Node` (the offsets every node carries); the nodes the languages have
  alike (:class:`And`, :class:`Or`, :class:`Not`, :class:`Bool`, :class:`Null`, :class:`Str`,
  :class:`Num`, :class:`Field`, :class:`Call`, :class:`BinOp`, :class:`In`, :class:`Unary`);
  :func:`declare_arg_types`,
  :func:`children` and :func:`walk` give sqlglot-style introspection to the frozen dataclass
  nodes of a language's ``ast.py``.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, dataclass, fields
from dataclasses import field as dc_field
from enum import Enum
from functools import lru_cache
from typing import Any, Generic, TypeVar

from ruleatlas.caching import LINE_STARTS
from ruleatlas.model import AtlasError, Span

# ---- locations and errors ------------------------------------------------------------------


@lru_cache(maxsize=LINE_STARTS)
def _line_starts(text: str) -> tuple[int, ...]:
    """Offsets where each line of ``text`` starts (cached: one search gives many spans)."""
    starts = [0]
    i = text.find("\n")
    while i >= 0:
        starts.append(i + 1)
        i = text.find("\n", i + 1)
    return tuple(starts)


def line_col(text: str, pos: int) -> tuple[int, int]:
    """1-based line and column of offset ``pos`` in ``text`` (a bisect, not a count, so a
    search with many predicates stays linear)."""
    pos = max(0, min(pos, len(text)))
    starts = _line_starts(text)
    line = bisect_right(starts, pos)
    return line, pos - starts[line - 1] + 1


def span_of(text: str, start: int, end: int | None = None) -> Span:
    line, col = line_col(text, start)
    return Span(line, col, start, end if end is not None else start)


class ParseError(AtlasError):
    """A query the parser cannot read. ``highlight`` is the line with a caret under ``pos``."""

    def __init__(self, description: str, text: str, pos: int) -> None:
        self.description = description
        self.text = text
        self.pos = pos
        self.line, self.col = line_col(text, pos)
        src_line = text.split("\n")[self.line - 1]
        self.highlight = f"{src_line}\n{' ' * (self.col - 1)}^"
        super().__init__(description, Span(self.line, self.col, pos, pos))

    def __str__(self) -> str:
        return f"{self.description} at {self.line}:{self.col}\n{self.highlight}"


class DepthGuard:
    """The nesting counter of a recursive-descent parser: :meth:`enter` on the way into a
    nested construct (a parenthesis, a ``not``, a call), ``depth -= 1`` on the way out."""

    text: str
    depth: int
    max_depth: int = 100

    def enter(self, pos: int) -> None:
        """One level deeper at offset ``pos``; past ``max_depth`` a located error."""
        self.depth += 1
        if self.depth > self.max_depth:
            raise ParseError(f"nested deeper than {self.max_depth} levels", self.text, pos)


# ---- tokens ------------------------------------------------------------------------------


def unescape(body: str, escape_at: Callable[[str, int], tuple[str, int]]) -> str:
    """``body`` (a string literal's text between its quotes) with each backslash escape
    resolved: ``escape_at(body, i)``, for the backslash at ``i``, gives the escape's value and
    the offset after it (a language's own escapes, and what it does with the others)."""
    if "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    while (j := body.find("\\", i)) >= 0:
        out.append(body[i:j])
        value, i = escape_at(body, j)
        out.append(value)
    out.append(body[i:])
    return "".join(out)


class Operator(Enum):
    """The operator tokens the languages spell alike; a language's own token enum ``T`` holds
    its other kinds (``=`` and ``==`` among them: their meaning differs), and its tokens' kind
    is ``T | Operator``."""

    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="
    PLUS = "+"
    MINUS = "-"
    STAR = "*"
    SLASH = "/"
    PERCENT = "%"


OPERATORS: dict[str, Operator] = {op.value: op for op in Operator}
# The parsers' operator tables (a language adds its own ``==``, ``=``, ``=~``).
COMPARISONS: dict[Operator, str] = {Operator.NE: "!=", Operator.LT: "<", Operator.LE: "<=",
                                    Operator.GT: ">", Operator.GE: ">="}
ADDITIVE: dict[Operator, str] = {Operator.PLUS: "+", Operator.MINUS: "-"}
MULTIPLICATIVE: dict[Operator, str] = {Operator.STAR: "*", Operator.SLASH: "/",
                                       Operator.PERCENT: "%"}

K = TypeVar("K", bound=Enum)


@dataclass(frozen=True, slots=True)
class Token(Generic[K]):
    """One token: its kind (the language's token enum), text (the resolved value for strings and
    quoted names), raw source text and offsets. A language whose tokens carry more (a spelling
    flag) subclasses it with ``@dataclass(frozen=True, slots=True, repr=False)``."""

    kind: K
    text: str
    raw: str
    start: int
    end: int

    def __repr__(self) -> str:
        return f"{self.kind.name}({self.text!r})"


TokT = TypeVar("TokT", bound=Token[Any])
# A scanner's hook for the groups its tables do not cover (strings, comments, ...): given the
# group, its text and offsets, the token (None: nothing, a comment) and where scanning goes on.
Special = Callable[[str, str, int, int], tuple[TokT | None, int]]


@dataclass(frozen=True, slots=True)
class Scanner(Generic[K, TokT]):
    """A language's tokenizer as one master regular expression and tables (sqlglot's lexer
    shape). Each named group of ``pattern`` is a lexical class: a ``skip`` group (whitespace)
    gives no token, a ``plain`` one a token of its kind with the text as written, a ``lookup``
    one the kind its text names (punctuation, operators); the others go to the language's
    ``special`` (strings, comments, ...). ``token`` makes the language's tokens."""

    pattern: re.Pattern[str]
    token: Callable[[K, str, str, int, int], TokT]
    eof: K
    plain: Mapping[str, K]
    lookup: Mapping[str, Mapping[str, K]]
    skip: frozenset[str] = frozenset({"ws"})

    def tokenize(self, text: str, special: Special[TokT],
                 error: Callable[[str, int], ParseError], offset: int = 0) -> list[TokT]:
        """The tokens of ``text`` ending with an EOF token, their offsets shifted by ``offset``
        (where ``text`` starts in the whole query; ``special`` and ``error`` get offsets into
        ``text``). Where no group matches, ``error(text, i)`` is raised."""
        scan = self.pattern.match
        skip, plain, lookup, make = self.skip, self.plain, self.lookup, self.token
        toks: list[TokT] = []
        append = toks.append
        i, n = 0, len(text)
        while i < n:
            m = scan(text, i)
            if m is None:
                raise error(text, i)
            # every alternative of the pattern is a named group (no ``or ""`` to satisfy the
            # type: this loop is the hot path of the SPL, EQL and ES|QL parsers)
            group: str = m.lastgroup  # type: ignore[assignment]
            j = m.end()
            if group not in skip:
                raw = m.group()
                if group in plain:
                    append(make(plain[group], raw, raw, offset + i, offset + j))
                elif group in lookup:
                    append(make(lookup[group][raw], raw, raw, offset + i, offset + j))
                else:
                    tok, j = special(group, raw, i, j)
                    if tok is not None:
                        append(tok)
            i = j
        append(make(self.eof, "", "", offset + n, offset + n))
        return toks


# ---- syntax trees --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Node:
    """The base of a syntax-tree node: its offsets into the parsed text. They are keyword-only
    and never compared, so ``parse(generate(tree)) == tree`` holds and two spellings of the same
    query compare equal."""

    start: int = dc_field(default=0, compare=False, kw_only=True)
    end: int = dc_field(default=0, compare=False, kw_only=True)


# The nodes the languages' trees have in the same form: one class each, generic over the
# language's expression type (``And[Expr]``), so a language's ``ast.py`` names them in its
# ``Expr`` union and its parser, generator and lowering use them like its own nodes.

E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class Bool(Node):
    """``true`` or ``false``."""

    value: bool


@dataclass(frozen=True, slots=True)
class Null(Node):
    """``null``."""


@dataclass(frozen=True, slots=True)
class Not(Node, Generic[E]):
    """``not arg``."""

    arg: E


@dataclass(frozen=True, slots=True)
class And(Node, Generic[E]):
    """``a and b and ...``."""

    args: tuple[E, ...]


@dataclass(frozen=True, slots=True)
class Or(Node, Generic[E]):
    """``a or b or ...``."""

    args: tuple[E, ...]


@dataclass(frozen=True, slots=True)
class Str(Node):
    """A string literal: ``value`` with its escapes resolved (a language that keeps how it was
    quoted subclasses it)."""

    value: str


@dataclass(frozen=True, slots=True)
class Num(Node):
    """A number as written: ``10``, ``1.5``, ``1e3``; ``value`` is its int or float."""

    text: str

    @property
    def value(self) -> int | float:
        try:
            return int(self.text)
        except ValueError:
            return float(self.text)


@dataclass(frozen=True, slots=True)
class Field(Node):
    """A field (column) an expression reads: its name, quoting resolved (``process.name``)."""

    name: str


@dataclass(frozen=True, slots=True)
class Call(Node, Generic[E]):
    """A function call ``name(args)``; a language that keeps more (a ``~`` suffix, ``*``)
    subclasses it."""

    name: str
    args: tuple[E, ...] = ()


@dataclass(frozen=True, slots=True)
class BinOp(Node, Generic[E]):
    """``left op right``: arithmetic or comparison, ``op`` as the language spells it."""

    op: str
    left: E
    right: E


@dataclass(frozen=True, slots=True)
class In(Node, Generic[E]):
    """``value in (items...)``; ``negated`` for ``not in``."""

    value: E
    items: tuple[E, ...]
    negated: bool = False


@dataclass(frozen=True, slots=True)
class Unary(Node, Generic[E]):
    """A prefix operator and its operand: ``-x``, ``+x``, ``NOT x``."""

    op: str
    arg: E


def declare_arg_types(node_types: tuple[type, ...]) -> None:
    """Give each node class sqlglot-style ``arg_types`` (argument name -> required), derived
    from its dataclass fields; fields that do not compare (offsets, spellings) are not
    arguments."""
    for cls in node_types:
        cls.arg_types = {  # type: ignore[attr-defined]
            f.name: f.default is MISSING and f.default_factory is MISSING
            for f in fields(cls) if f.compare
        }


def children(node: object, node_types: tuple[type, ...]) -> Iterator[object]:
    """The child nodes of ``node`` (through its ``arg_types``), in order; a child is an
    instance of ``node_types``, also inside (nested) tuples."""
    for name in getattr(node, "arg_types", ()):
        stack: list[object] = [getattr(node, name)]
        while stack:
            x = stack.pop(0)
            if isinstance(x, tuple):
                stack[:0] = list(x)
            elif isinstance(x, node_types):
                yield x


def walk(node: object, node_types: tuple[type, ...]) -> Iterator[object]:
    """Every node of a tree, depth first, parents before children."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(list(children(n, node_types))))
