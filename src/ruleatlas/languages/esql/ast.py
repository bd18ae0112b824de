"""The ES|QL syntax tree: a pipeline of commands; expressions as typed nodes.

Nodes are frozen, slotted dataclasses; offsets (``start``/``end`` into the parsed text) never
take part in equality, so ``parse(generate(tree)) == tree`` is the round-trip check. Function
names are lower-cased (ES|QL function names are case-insensitive); field names keep their case.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import TypeAlias

from ruleatlas.languages import parsing
from ruleatlas.languages.parsing import (
    And,
    BinOp,
    Bool,
    Call,
    Field,
    In,
    Node,
    Not,
    Null,
    Num,
    Or,
    Unary,
    declare_arg_types,
)

# ---- expressions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Str(parsing.Str):
    """A string literal; ``value`` has the escapes resolved; ``triple`` for ``\"\"\"...\"\"\"``
    (kept for display only)."""

    triple: bool = dc_field(default=False, compare=False)


@dataclass(frozen=True, slots=True)
class Param(Node):
    """A query parameter: ``?``, ``?name``, ``?1``."""

    name: str


@dataclass(frozen=True, slots=True)
class Duration(Node):
    """A time span: ``7 day``, ``30 seconds``, ``1 hour`` (unit lower-cased)."""

    amount: Num
    unit: str


@dataclass(frozen=True, slots=True)
class ListLit(Node):
    """``[1, 2, 3]`` (a multi-valued literal)."""

    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class MapLit(Node):
    """``{"inference_id": "x", "fuzziness": 1}`` (function options, ``completion ... with``)."""

    entries: tuple[tuple[str, Expr], ...]


@dataclass(frozen=True, slots=True)
class FuncCall(Call["Expr"]):
    """``name(args)``; ``star`` for ``count(*)``."""

    star: bool = False


@dataclass(frozen=True, slots=True)
class Cast(Node):
    """``expr::type``."""

    arg: Expr
    type: str


@dataclass(frozen=True, slots=True)
class Like(Node):
    """``value [not] like|rlike pattern`` or ``... like ("p1", "p2")``."""

    value: Expr
    patterns: tuple[Expr, ...]
    regex: bool = False
    negated: bool = False
    listed: bool = False  # written as a parenthesised list


@dataclass(frozen=True, slots=True)
class IsNull(Node):
    """``value is [not] null``."""

    value: Expr
    negated: bool = False


@dataclass(frozen=True, slots=True)
class Match(Node):
    """The match operator ``field : query`` (full-text search on one field)."""

    field: Expr
    query: Expr


# Num, Field (dotted parts joined: ``process.name``, ``@timestamp``), Bool, Null, And, Or, Not, In
# (``value [not] in (a, b, ...)``), BinOp (arithmetic ``+ - * / %`` or comparison
# ``== != =~ < <= > >=``) and Unary (minus: ``-x``) are the shared nodes of ``languages.parsing``.
Expr: TypeAlias = (Field | Str | Num | Bool | Null | Param | Duration | ListLit | MapLit
                   | FuncCall | BinOp["Expr"] | Unary["Expr"] | Cast | And["Expr"] | Or["Expr"]
                   | Not["Expr"] | Like | In["Expr"] | IsNull | Match)

# ---- command parts -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Assign(Node):
    """``[name =] expr`` (eval, row, stats by, dissect options); ``where`` is a stats
    aggregation's own filter (``count() where x > 1``)."""

    name: str | None
    expr: Expr
    where: Expr | None = None


@dataclass(frozen=True, slots=True)
class SortKey:
    expr: Expr
    order: str | None = None  # "asc" | "desc"
    nulls: str | None = None  # "first" | "last"


@dataclass(frozen=True, slots=True)
class RenamePair:
    """``old as new``, or ``new = old`` (``assign``)."""

    old: str
    new: str
    assign: bool = False


@dataclass(frozen=True, slots=True)
class Source:
    """An index pattern of ``from``: as written when unquoted (``logs-endpoint.events.*``),
    the string's value when quoted."""

    name: str
    quoted: bool = False


# ---- commands --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Command(Node):
    """One pipeline stage.

    ``name`` is the command, lower-cased (``inline stats`` for ``inline stats``/``inlinestats``,
    ``lookup join``); the other fields hold its parts, by command:

    * from/ts: ``sources`` and ``names`` (the ``metadata`` fields);
    * row, eval: ``assigns``; show: ``names`` (``info``);
    * where: ``expr``;
    * stats, inline stats: ``assigns`` (aggregations) and ``by`` (groupings);
    * keep, drop, mv_expand: ``names`` (patterns may hold ``*``); rename: ``renames``;
    * dissect: ``expr`` (input), ``patterns`` (one), ``assigns`` (options);
      grok: ``expr``, ``patterns``;
    * enrich: ``target`` (policy), ``names`` (``on`` field, at most one), ``assigns``
      (``with`` list, ``expr`` a :class:`Field`); lookup join: ``target`` (index), ``names``;
    * sort: ``keys``; limit, sample: ``args``;
    * completion: ``assigns`` (one: target and prompt), ``args`` (the ``with`` map);
      change_point: ``args`` (value [, key]), ``names`` (``as`` type, pvalue);
    * fork: ``branches`` (pipelines in parentheses);
    * any other command (``opaque``): ``raw`` text after the name.
    """

    name: str
    sources: tuple[Source, ...] = ()
    names: tuple[str, ...] = ()
    assigns: tuple[Assign, ...] = ()
    by: tuple[Assign, ...] = ()
    expr: Expr | None = None
    patterns: tuple[Str, ...] = ()
    renames: tuple[RenamePair, ...] = ()
    keys: tuple[SortKey, ...] = ()
    args: tuple[Expr, ...] = ()
    target: str | None = None
    branches: tuple[tuple[Command, ...], ...] = ()
    raw: str | None = None


@dataclass(frozen=True, slots=True)
class Query:
    commands: tuple[Command, ...]


# ---- sqlglot-style introspection ------------------------------------------------------------

NODE_TYPES: tuple[type, ...] = (
    Field, Str, Num, Bool, Null, Param, Duration, ListLit, MapLit, FuncCall, BinOp, Unary, Cast,
    And, Or, Not, Like, In, IsNull, Match, Assign, SortKey, RenamePair, Source, Command, Query,
)


declare_arg_types(NODE_TYPES)


def children(node: object) -> Iterator[object]:
    """The child nodes of ``node`` (through its ``arg_types``), in order."""
    return parsing.children(node, NODE_TYPES)


def walk(node: object) -> Iterator[object]:
    """Every node of a tree, depth first, parents before children."""
    return parsing.walk(node, NODE_TYPES)
