"""The SPL syntax tree: a pipeline of commands; search and eval expressions as typed nodes.

Nodes are frozen dataclasses; spans (offsets into the parsed text, :class:`~.parsing.Node`)
never take part in equality,
so ``parse(generate(tree)) == tree`` is the round-trip check. Each node class declares
sqlglot-style ``arg_types`` (see the end of the module). Commands whose arguments the
lowering reads by shape (stats, rename, rex, lookup, ...) keep their arguments as a flat tuple of
items (:class:`Word`, :class:`Str`, :class:`Sym`, :class:`Macro`, :class:`Sub`; a macro or a
subsearch inside an expression is the same node); ``search``,
``where``, ``eval`` and the ``where`` clause of ``tstats`` get expression trees.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeAlias

from ruleatlas.languages import parsing
from ruleatlas.languages.parsing import (
    And,
    BinOp,
    Call,
    Field,
    Node,
    Not,
    Num,
    Or,
    Str,
    Unary,
    declare_arg_types,
)

# ---- generic items -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Word(Node):
    """A bare word as written (``*.exe``, ``datamodel=Endpoint.Processes`` is Word Sym Word)."""

    raw: str


@dataclass(frozen=True, slots=True)
class Sym:
    """Punctuation: ``= != < <= > >= == ( ) ,``."""

    text: str


@dataclass(frozen=True, slots=True)
class Macro(Node):
    """A macro call as written: body ``name`` or ``name(arg, "arg 2")``."""

    body: str

    @property
    def name(self) -> str:
        return self.body.split("(", 1)[0].strip()


@dataclass(frozen=True, slots=True)
class Sub(Node):
    """A subsearch ``[ ... ]``: a nested pipeline."""

    pipeline: Pipeline


# Str (a double-quoted string, the SPL escapes resolved) is the shared node of
# ``languages.parsing``.
Item: TypeAlias = Word | Str | Sym | Macro | Sub

# ---- search expressions ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SCompare(Node):
    """``field op value`` in search syntax; op one of ``= != < <= > >= ==``."""

    field: str
    op: str
    value: Word | Str


@dataclass(frozen=True, slots=True)
class SIn(Node):
    """``field IN (v1, v2, ...)``."""

    field: str
    values: tuple[Word | Str, ...]


@dataclass(frozen=True, slots=True)
class STerm(Node):
    """A bare search term (matched against the raw event): word, string, ``TERM(x)``,
    ``CASE(x)``; ``func`` is ``TERM``/``CASE`` or None."""

    value: Word | Str
    func: str | None = None


# Not, And and Or are the shared nodes of ``languages.parsing`` (in SPL, OR binds tighter than
# AND, and terms side by side are an And); a :class:`Macro` is one left unexpanded (unknown), a
# :class:`Sub` a subsearch used as a search term.
SNode: TypeAlias = (SCompare | SIn | STerm | Macro | Sub | Not["SNode"] | And["SNode"]
                    | Or["SNode"])

# ---- eval expressions --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EOpaque:
    """Eval-context text the expression grammar does not cover (``*`` in ``count(*)``)."""

    text: str


# Field, Str, Num, Call (``name`` lower-cased: SPL function names are case-insensitive), BinOp
# (``AND OR XOR = == != < <= > >= LIKE + - * / % .``) and Unary (``NOT x``, ``-x``) are the
# shared nodes of ``languages.parsing``; a :class:`Macro` is one left unexpanded.
ENode: TypeAlias = (Field | Str | Num | Call["ENode"] | BinOp["ENode"] | Unary["ENode"] | Macro
                    | EOpaque)

# ---- commands and pipelines --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Command(Node):
    """One pipeline stage.

    ``name`` is the command (``search`` for the implicit leading search, ``macro`` for a stage
    that is only a macro call); ``search`` the search-syntax condition (search, tstats where);
    ``expr`` the eval-syntax condition (where); ``assignments`` eval's ``field = expr`` pairs;
    ``items`` the other arguments (for tstats: before ``where``), ``tail`` the items after a
    tstats ``where`` clause (``by ...``).
    """

    name: str
    items: tuple[Item, ...] = ()
    search: SNode | None = None
    expr: ENode | None = None
    assignments: tuple[tuple[str, ENode], ...] = ()
    tail: tuple[Item, ...] = ()
    explicit: bool = True  # False for the implicit leading search


@dataclass(frozen=True, slots=True)
class Pipeline:
    commands: tuple[Command, ...]
    leading_pipe: bool = False



# ---- sqlglot-style introspection ----------------------------------------------------------
# Every node class declares ``arg_types`` (argument name -> required), derived once from its
# dataclass fields (spans excluded: they are not arguments), so generic code (``children``,
# ``walk``, ``find_all``) can traverse any tree without knowing each node type.

NODE_TYPES: tuple[type, ...] = (
    Word, Str, Sym, Macro, Sub, SCompare, SIn, STerm, Not, And, Or,
    Field, Num, Call, BinOp, Unary, EOpaque, Command, Pipeline,
)


declare_arg_types(NODE_TYPES)


def children(node: object) -> Iterator[object]:
    """The child nodes of ``node`` (through its ``arg_types``), in order."""
    return parsing.children(node, NODE_TYPES)


def walk(node: object) -> Iterator[object]:
    """Every node of a tree, depth first, parents before children."""
    return parsing.walk(node, NODE_TYPES)


def find_all(node: object, *types: type) -> Iterator[object]:
    """Nodes of the given types anywhere under ``node`` (itself included)."""
    return (n for n in walk(node) if isinstance(n, types))
