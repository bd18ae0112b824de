"""The KQL syntax tree: typed frozen nodes; spans (offsets into the text) never compare.

Kibana expands ``field: (a or b)`` into ``or(is(field, a), is(field, b))`` while parsing; this
tree keeps what was written instead: a :class:`FieldValue` whose value is a small boolean tree of
values (:class:`VOr`, :class:`VAnd`, :class:`VNot` over :class:`Quoted` / :class:`Unquoted`), so
the lowering can turn a list into one ``in`` predicate and the generator can write it back.
Parentheses leave no node: the tree's shape records the grouping.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeAlias

from ruleatlas.languages import parsing
from ruleatlas.languages.parsing import And, Node, Not, Or, declare_arg_types
from ruleatlas.model import Pattern, Wild


@dataclass(frozen=True, slots=True)
class Quoted(Node):
    """A quoted string: a phrase; ``*`` inside is a literal character."""

    value: str

    @property
    def text(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Unquoted(Node):
    """An unquoted literal, decoded and trimmed; unescaped ``*`` are :class:`Wild` parts."""

    pattern: Pattern

    @property
    def text(self) -> str:
        """The value with each wildcard written as ``*`` (a field name as Kibana reads it)."""
        return "".join(p.value if isinstance(p, Wild) else p for p in self.pattern.parts)

    @property
    def is_lone_wildcard(self) -> bool:
        return self.pattern.parts == (Wild.ANY,)


Value: TypeAlias = Quoted | Unquoted


@dataclass(frozen=True, slots=True)
class VOr(Node):
    """``a or b`` inside a value list."""

    args: tuple[ValueExpr, ...]


@dataclass(frozen=True, slots=True)
class VAnd(Node):
    """``a and b`` inside a value list: every value must match (a multi-valued field)."""

    args: tuple[ValueExpr, ...]


@dataclass(frozen=True, slots=True)
class VNot(Node):
    """``not a`` inside a value list."""

    arg: ValueExpr


ValueExpr: TypeAlias = Quoted | Unquoted | VOr | VAnd | VNot


@dataclass(frozen=True, slots=True)
class FieldValue(Node):
    """``field : value`` or ``field : (value list)``."""

    field: Value
    value: ValueExpr


@dataclass(frozen=True, slots=True)
class Range(Node):
    """``field < value``; ``op`` one of ``< <= > >=``."""

    field: Value
    op: str
    value: Value


@dataclass(frozen=True, slots=True)
class FreeText(Node):
    """A value with no field: searched in every field."""

    value: Value


@dataclass(frozen=True, slots=True)
class Nested(Node):
    """``field : { query }``: the query's fields are relative to ``field``."""

    field: Value
    query: Expr


@dataclass(frozen=True, slots=True)
class Empty(Node):
    """An empty query (only whitespace): Kibana matches every document."""


# Or, And and Not are the shared nodes of ``languages.parsing``.
Expr: TypeAlias = (FieldValue | Range | FreeText | Nested | Or["Expr"] | And["Expr"] | Not["Expr"]
                   | Empty)


# ---- sqlglot-style introspection ----------------------------------------------------------
# Every node declares ``arg_types``; :func:`walk` follows the query nodes only, not the values
# (and value lists) inside them.

QUERY_TYPES: tuple[type, ...] = (FieldValue, Range, FreeText, Nested, Or, And, Not, Empty)
VALUE_TYPES: tuple[type, ...] = (Quoted, Unquoted, VOr, VAnd, VNot)

declare_arg_types(QUERY_TYPES + VALUE_TYPES)


def walk(tree: Expr) -> Iterator[object]:
    """Every query node of a tree (not the values inside lists), parents first."""
    return parsing.walk(tree, QUERY_TYPES)
