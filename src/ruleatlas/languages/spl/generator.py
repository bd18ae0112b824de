"""SPL tree -> SPL text. ``parse(generate(tree)) == tree`` for every tree the parser builds.

Dispatch is by node class (``<node>_sql`` in sqlglot; here ``_gen_<node>`` through a table).
Search syntax is written with the least parentheses Splunk's precedence needs (NOT > OR > AND);
eval expressions with full parentheses, so no precedence question ever arises.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ruleatlas.languages.spl import ast as S
from ruleatlas.languages.spl.tokens import escape

_EVAL_IDENT = re.compile(r"^[A-Za-z_@$:{}\\][\w@$:{}\\.\-]*(?<![.\-])$")
_KEYWORDS = {"AND", "OR", "NOT", "XOR", "LIKE", "IN", "BY", "AS"}
_SEARCH_OPERATORS = {"AND", "OR", "NOT"}


def generate(p: S.Pipeline) -> str:
    parts = [command(c) for c in p.commands]
    text = " | ".join(parts)
    return f"| {text}" if p.leading_pipe else text


def command(c: S.Command) -> str:
    if c.name == "search":
        body = search(c.search) if c.search is not None else ""
        return f"search {body}".rstrip() if c.explicit else body
    if c.name == "macro":
        return items(c.items)
    if c.name == "where" and c.expr is not None:
        return f"where {expr(c.expr)}"
    if c.name == "eval" and c.assignments:
        return "eval " + ", ".join(f"{field_name(f)} = {expr(e)}" for f, e in c.assignments)
    if c.name == "tstats" and c.search is not None:
        head = items(c.items)
        tail = items(c.tail)
        return " ".join(x for x in ("tstats", head, "where", search(c.search), tail) if x)
    return " ".join(x for x in (c.name, items(c.items)) if x)


ITEM_GENERATORS: dict[type, Callable[[Any], str]] = {
    S.Word: lambda i: i.raw,
    S.Str: lambda i: f'"{escape(i.value)}"',
    S.Sym: lambda i: i.text,
    S.Macro: lambda i: f"`{i.body}`",
    S.Sub: lambda i: f"[ {generate(i.pipeline)} ]",
}


def item(i: S.Item) -> str:
    fn = ITEM_GENERATORS.get(type(i))
    if fn is None:
        raise TypeError(i)
    return fn(i)


_TIGHT = frozenset({"=", "!=", "==", "<", "<=", ">", ">="})


def items(its: tuple[S.Item, ...]) -> str:
    """Items with spaces only where tokens would otherwise merge: ``key=value``, ``f(x, y)``."""
    out: list[str] = []
    prev: S.Item | None = None
    for i in its:
        if prev is not None:
            tight = (
                (isinstance(prev, S.Sym) and (prev.text in _TIGHT or prev.text == "("))
                or (isinstance(i, S.Sym) and (i.text in _TIGHT or i.text in "),"))
                or (isinstance(i, S.Sym) and i.text == "(" and isinstance(prev, S.Word))
            )
            if not tight:
                out.append(" ")
        out.append(item(i))
        prev = i
    return "".join(out)


def value(v: S.Word | S.Str) -> str:
    return item(v)


_TEMPLATE = re.compile(r"<<[A-Za-z_]+>>")


def field_name(name: str) -> str:
    """A search/eval field name; quoted when it would not tokenize back as one word."""
    if _TEMPLATE.fullmatch(name) or (_EVAL_IDENT.match(name) and name.upper() not in _KEYWORDS):
        return name
    return f'"{escape(name)}"'


def search_field(name: str) -> str:
    if re.fullmatch(r"""[^\s|\[\]()=!<>,"`]+""", name) and name.upper() not in _KEYWORDS:
        return name
    return f'"{escape(name)}"'


SEARCH_GENERATORS: dict[type, Callable[[Any], str]] = {}


def search(n: S.SNode) -> str:
    return SEARCH_GENERATORS[type(n)](n)


def _and(n: S.And) -> str:
    parts = [f"({search(a)})" if isinstance(a, S.And) else search(a) for a in n.args]
    for k, a in enumerate(n.args[:-1]):  # a bare IN term before "(" would read as `f IN (...)`
        if isinstance(a, S.STerm) and not a.func and isinstance(a.value, S.Word) \
                and a.value.raw.upper() == "IN" and parts[k + 1].startswith("("):
            parts[k] = f'"{escape(a.value.raw)}"'
    return " ".join(parts)


def _or(n: S.Or) -> str:
    return " OR ".join(f"({search(a)})" if isinstance(a, S.And | S.Or) else search(a)
                       for a in n.args)


def _not(n: S.Not) -> str:
    inner = search(n.arg)
    return f"NOT ({inner})" if isinstance(n.arg, S.And | S.Or) else f"NOT {inner}"


def _compare(n: S.SCompare) -> str:
    return f"{search_field(n.field)}{n.op}{value(n.value)}"


def _in(n: S.SIn) -> str:
    return f"{search_field(n.field)} IN ({', '.join(value(v) for v in n.values)})"


def _term(n: S.STerm) -> str:
    v = value(n.value)
    if n.func:
        return f"{n.func}({v})"
    if isinstance(n.value, S.Word) and n.value.raw in _SEARCH_OPERATORS:
        return f'"{escape(n.value.raw)}"'  # search operators are case-sensitive
    return v


SEARCH_GENERATORS.update({
    S.And: _and,
    S.Or: _or,
    S.Not: _not,
    S.SCompare: _compare,
    S.SIn: _in,
    S.STerm: _term,
    S.Macro: item,
    S.Sub: item,
})


def expr(e: S.ENode) -> str:
    fn = EXPR_GENERATORS.get(type(e))
    if fn is None:
        raise TypeError(e)
    return fn(e)


def _efield(e: S.Field) -> str:
    if _TEMPLATE.fullmatch(e.name) or (
            _EVAL_IDENT.match(e.name) and e.name.upper() not in _KEYWORDS):
        return e.name
    return "'" + e.name.replace("\\", "\\\\").replace("'", "\\'") + "'"


EXPR_GENERATORS: dict[type, Callable[[Any], str]] = {
    S.Field: _efield,
    S.Str: item,
    S.Num: lambda e: e.text,
    S.Call: lambda e: f"{e.name}({', '.join(expr(a) for a in e.args)})",
    S.BinOp: lambda e: f"({expr(e.left)} {e.op} {expr(e.right)})",
    S.Unary: lambda e: f"(NOT {expr(e.arg)})" if e.op == "NOT" else f"(-{expr(e.arg)})",
    S.Macro: item,
    S.EOpaque: lambda e: e.text,
}
