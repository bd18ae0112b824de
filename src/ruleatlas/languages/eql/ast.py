"""The EQL syntax tree: a query (event query, sequence or sample) and its pipes.

Nodes are frozen, slotted dataclasses. Offsets (``start``/``end`` into the parsed text) and
pure spelling choices (a raw ``\"\"\"string\"\"\"``, a number's digits as written, a list of one
value) never take part in equality, so ``parse(generate(tree)) == tree`` is the round-trip check
and two spellings of the same query compare equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import TypeAlias

from ruleatlas.languages import parsing
from ruleatlas.languages.parsing import And, BinOp, Bool, Call, Node, Not, Null, Or, Unary

# ---- expressions -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field(parsing.Field):
    """A field: ``name`` is the dotted name with backquotes resolved; ``optional`` for
    ``?field`` (a field that may be missing from the mapping)."""

    optional: bool = False


@dataclass(frozen=True, slots=True)
class Str(parsing.Str):
    """A string constant, escapes resolved. ``raw`` records a ``\"\"\"raw\"\"\"`` spelling."""

    raw: bool = dc_field(default=False, compare=False)


@dataclass(frozen=True, slots=True)
class Num(Node):
    """A number constant (int or float); ``text`` keeps the digits as written."""

    value: int | float
    text: str = dc_field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class FuncCall(Call["Expr"]):
    """``name(args)``; ``name`` as written, ``insensitive`` for ``name~(...)``."""

    insensitive: bool = False


@dataclass(frozen=True, slots=True)
class Match(Node):
    """``left op value`` or ``left op (v1, v2, ...)`` with op one of ``: like like~ regex
    regex~``; the values are constants."""

    op: str
    left: Expr
    values: tuple[Expr, ...]
    listed: bool = dc_field(default=False, compare=False)


@dataclass(frozen=True, slots=True)
class In(parsing.In["Expr"]):
    """``value in (...)``, ``in~`` (``insensitive``), ``not in`` (``negated``)."""

    insensitive: bool = False


@dataclass(frozen=True, slots=True)
class Paren(Node):
    """Parentheses written around an expression (kept: ``(a or b) and c`` needs them)."""

    arg: Expr


# Bool, Null, Not, And, Or, BinOp (a comparison ``== != < <= > >=`` or arithmetic ``+ - * / %``)
# and Unary (``-``, ``+``) are the shared nodes of ``languages.parsing``; an And nested in an And
# only comes from parentheses.
Expr: TypeAlias = (Field | Str | Num | Bool | Null | FuncCall | BinOp["Expr"] | Match | In
                   | Unary["Expr"] | Not["Expr"] | And["Expr"] | Or["Expr"] | Paren)

# ---- queries -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventQuery(Node):
    """``category where condition``; ``category`` None for ``any``."""

    category: str | None
    condition: Expr


@dataclass(frozen=True, slots=True)
class Member(Node):
    """One bracketed member of a sequence or sample: ``[query] by keys with runs=N``;
    ``missing`` for ``![query]`` (an event that must not occur)."""

    query: EventQuery
    by: tuple[Expr, ...] = ()
    runs: int | None = None
    missing: bool = False


@dataclass(frozen=True, slots=True)
class MaxSpan:
    """``maxspan=5m``: a number and an optional unit (``ms s m h d``)."""

    value: int | float
    unit: str | None = None
    text: str = dc_field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class Sequence(Node):
    """``sequence [by keys] [with maxspan=T] members... [until member]``."""

    members: tuple[Member, ...]
    by: tuple[Expr, ...] = ()
    maxspan: MaxSpan | None = None
    until: Member | None = None


@dataclass(frozen=True, slots=True)
class Sample(Node):
    """``sample [by keys] members...`` (events sharing the keys, in any order)."""

    members: tuple[Member, ...]
    by: tuple[Expr, ...] = ()


@dataclass(frozen=True, slots=True)
class Pipe(Node):
    """``| name args``: ``head N``, ``tail N``, ``filter cond``, ``unique f, g``, ``count``."""

    name: str
    args: tuple[Expr, ...] = ()


Body: TypeAlias = EventQuery | Sequence | Sample


@dataclass(frozen=True, slots=True)
class Query:
    body: Body
    pipes: tuple[Pipe, ...] = ()

EXPR_TYPES = (Field, Str, Num, Bool, Null, FuncCall, BinOp, Match, In, Unary, Not, And, Or, Paren)
