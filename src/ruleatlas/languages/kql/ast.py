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
from dataclasses import field as dc_field
from typing import TypeAlias

from ruleatlas.model import Pattern, Wild


@dataclass(frozen=True, slots=True)
class Quoted:
    """A quoted string: a phrase; ``*`` inside is a literal character."""

    value: str
    start: int = dc_field(default=0, compare=False)
    end: int = dc_field(default=0, compare=False)

    @property
    def text(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Unquoted:
    """An unquoted literal, decoded and trimmed; unescaped ``*`` are :class:`Wild` parts."""

    pattern: Pattern
    start: int = dc_field(default=0, compare=False)
    end: int = dc_field(default=0, compare=False)

    @property
    def text(self) -> str:
        """The value with each wildcard written as ``*`` (a field name as Kibana reads it)."""
        return "".join(p.value if isinstance(p, Wild) else p for p in self.pattern.parts)

    @property
    def is_lone_wildcard(self) -> bool:
        return self.pattern.parts == (Wild.ANY,)


Value: TypeAlias = Quoted | Unquoted


@dataclass(frozen=True, slots=True)
class VOr:
    """``a or b`` inside a value list."""

    args: tuple[ValueExpr, ...]
    start: int = dc_field(default=0, compare=False)
    end: int = dc_field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class VAnd:
    """``a and b`` inside a value list: every value must match (a multi-valued field)."""

    args: tuple[ValueExpr, ...]
    start: int = dc_field(default=0, compare=False)
    end: int = dc_field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class VNot:
    """``not a`` inside a value list."""

    arg: ValueExpr
    start: int = dc_field(default=0, compare=False)
    end: int = dc_field(default=0, compare=False)


ValueExpr: TypeAlias = Quoted | Unquoted | VOr | VAnd | VNot


@dataclass(frozen=True, slots=True)
class FieldValue:
    """``field : value`` or ``field : (value list)``."""

    field: Value
    value: ValueExpr
    start: int = dc_field(default=0, compare=False)
    end: int = dc_field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Range:
    """``field < value``; ``op`` one of ``< <= > >=``."""

    field: Value
    op: str
    value: Value
    start: int = dc_field(default=0, compare=False)
    end: int = dc_field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class FreeText:
    """A value with no field: searched in every field."""

    value: Value
    start: int = dc_field(default=0, compare=False)
    end: int = dc_field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Nested:
    """``field : { query }``: the query's fields are relative to ``field``."""

    field: Value
    query: Expr
    start: int = dc_field(default=0, compare=False)
    end: int = dc_field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Or:
    args: tuple[Expr, ...]
    start: int = dc_field(default=0, compare=False)
    end: int = dc_field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class And:
    args: tuple[Expr, ...]
    start: int = dc_field(default=0, compare=False)
    end: int = dc_field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Not:
    arg: Expr
    start: int = dc_field(default=0, compare=False)
    end: int = dc_field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Empty:
    """An empty query (only whitespace): Kibana matches every document."""

    start: int = dc_field(default=0, compare=False)
    end: int = dc_field(default=0, compare=False)


Expr: TypeAlias = FieldValue | Range | FreeText | Nested | Or | And | Not | Empty


def walk(tree: Expr) -> Iterator[Expr]:
    """Every query node of a tree (not the values inside lists), parents first."""
    stack: list[Expr] = [tree]
    while stack:
        n = stack.pop()
        yield n
        if isinstance(n, (Or, And)):
            stack.extend(reversed(n.args))
        elif isinstance(n, Not):
            stack.append(n.arg)
        elif isinstance(n, Nested):
            stack.append(n.query)
