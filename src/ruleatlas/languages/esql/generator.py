"""ES|QL tree -> ES|QL text. ``parse(generate(tree)) == tree`` for every tree the parser builds.

Dispatch is by node class through ``EXPR_GENERATORS`` / ``COMMAND_GENERATORS`` (sqlglot's
``<node>_sql``). Expressions are written with the parentheses precedence needs and no more
(``LEVELS``); field names are backquoted when they would not read back as one name (a space, a
reserved word such as ``by`` or ``null``); keywords and function names are written lower-case.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ruleatlas.languages.esql import ast as A
from ruleatlas.languages.esql.parser import RESERVED
from ruleatlas.languages.esql.tokens import quote

_NAME = re.compile(r"[A-Za-z_@]\w*(?:\.[A-Za-z_@]\w*)*")
_NAME_PATTERN = re.compile(r"[A-Za-z_@*][\w@*]*(?:\.[A-Za-z_@*][\w@*]*)*")

# Binding strength of each node (higher binds tighter); an operand weaker than its slot needs
# is parenthesised.
OR, AND, NOT, PRED, CMP, ADD, MUL, NEG, CAST, ATOM = range(1, 11)
LEVELS: dict[type, int] = {A.Or: OR, A.And: AND, A.Not: NOT, A.Like: PRED, A.In: PRED,
                           A.IsNull: PRED, A.Match: PRED, A.Unary: NEG, A.Cast: CAST}
_MUL_OPS = frozenset({"*", "/", "%"})
_ADD_OPS = frozenset({"+", "-"})


def level(e: A.Expr) -> int:
    if isinstance(e, A.BinOp):
        return MUL if e.op in _MUL_OPS else ADD if e.op in _ADD_OPS else CMP
    return LEVELS.get(type(e), ATOM)


def name(n: str) -> str:
    """A field name as written: bare when it reads back as one name, else backquoted."""
    if _NAME.fullmatch(n) and n.lower() not in RESERVED:
        return n
    return "`" + n.replace("`", "``") + "`"


def name_pattern(n: str) -> str:
    if _NAME_PATTERN.fullmatch(n) and n.lower() not in RESERVED:
        return n
    return "`" + n.replace("`", "``") + "`"


def sub(e: A.Expr, at_least: int) -> str:
    text = expr(e)
    return f"({text})" if level(e) < at_least else text


def _binop(e: A.BinOp) -> str:
    lv = level(e)
    if lv == CMP:
        return f"{sub(e.left, ADD)} {e.op} {sub(e.right, ADD)}"
    return f"{sub(e.left, lv)} {e.op} {sub(e.right, lv + 1)}"


def _like(e: A.Like) -> str:
    op = ("not " if e.negated else "") + ("rlike" if e.regex else "like")
    if e.listed:
        pats = ", ".join(expr(p) for p in e.patterns)
        return f"{sub(e.value, ADD)} {op} ({pats})"
    return f"{sub(e.value, ADD)} {op} {sub(e.patterns[0], ADD)}"


def _in(e: A.In) -> str:
    op = "not in" if e.negated else "in"
    return f"{sub(e.value, ADD)} {op} ({', '.join(expr(i) for i in e.items)})"


def _call(e: A.FuncCall) -> str:
    inner = "*" if e.star else ", ".join(expr(a) for a in e.args)
    return f"{e.name}({inner})"


def _map(e: A.MapLit) -> str:
    return "{" + ", ".join(f"{quote(k)}: {expr(v)}" for k, v in e.entries) + "}"


EXPR_GENERATORS: dict[type, Callable[[Any], str]] = {
    A.Field: lambda e: name(e.name),
    A.Str: lambda e: quote(e.value, e.triple),
    A.Num: lambda e: e.text,
    A.Bool: lambda e: "true" if e.value else "false",
    A.Null: lambda e: "null",
    A.Param: lambda e: e.name,
    A.Duration: lambda e: f"{e.amount.text} {e.unit}",
    A.ListLit: lambda e: "[" + ", ".join(expr(i) for i in e.items) + "]",
    A.MapLit: _map,
    A.FuncCall: _call,
    A.BinOp: _binop,
    A.Unary: lambda e: f"{e.op}{sub(e.arg, NEG)}",
    A.Cast: lambda e: f"{sub(e.arg, CAST)}::{e.type}",
    A.And: lambda e: " and ".join(sub(a, NOT) for a in e.args),
    A.Or: lambda e: " or ".join(sub(a, AND) for a in e.args),
    A.Not: lambda e: f"not {sub(e.arg, NOT)}",
    A.Like: _like,
    A.In: _in,
    A.IsNull: lambda e: f"{sub(e.value, ADD)} is {'not ' if e.negated else ''}null",
    A.Match: lambda e: f"{sub(e.field, ADD)} : {sub(e.query, ADD)}",
}


def expr(e: A.Expr) -> str:
    return EXPR_GENERATORS[type(e)](e)


def assign(a: A.Assign) -> str:
    text = expr(a.expr)
    if a.name is not None:
        text = f"{name(a.name)} = {text}"
    if a.where is not None:
        text = f"{text} where {expr(a.where)}"
    return text


def _sort_key(k: A.SortKey) -> str:
    parts = [expr(k.expr)]
    if k.order:
        parts.append(k.order)
    if k.nulls:
        parts.append(f"nulls {k.nulls}")
    return " ".join(parts)


def _from(c: A.Command) -> str:
    srcs = ", ".join(quote(s.name) if s.quoted else s.name for s in c.sources)
    meta = f" metadata {', '.join(name(n) for n in c.names)}" if c.names else ""
    return f"{c.name} {srcs}{meta}"


def _stats(c: A.Command) -> str:
    parts = [c.name]
    if c.assigns:
        parts.append(", ".join(assign(a) for a in c.assigns))
    if c.by:
        parts.append("by " + ", ".join(assign(a) for a in c.by))
    return " ".join(parts)


def _rename(c: A.Command) -> str:
    return "rename " + ", ".join(
        f"{name_pattern(p.new)} = {name_pattern(p.old)}" if p.assign
        else f"{name_pattern(p.old)} as {name_pattern(p.new)}" for p in c.renames)


def _dissect(c: A.Command) -> str:
    assert c.expr is not None
    opts = "".join(" " + assign(a) for a in c.assigns)
    return f"dissect {sub(c.expr, NEG)} {quote(c.patterns[0].value, c.patterns[0].triple)}{opts}"


def _grok(c: A.Command) -> str:
    assert c.expr is not None
    pats = ", ".join(quote(p.value, p.triple) for p in c.patterns)
    return f"grok {sub(c.expr, NEG)} {pats}"


def _enrich(c: A.Command) -> str:
    text = f"enrich {c.target}"
    if c.names:
        text += f" on {name_pattern(c.names[0])}"
    if c.assigns:
        items = []
        for a in c.assigns:
            src = name_pattern(a.expr.name) if isinstance(a.expr, A.Field) else expr(a.expr)
            items.append(f"{name_pattern(a.name)} = {src}" if a.name else src)
        text += " with " + ", ".join(items)
    return text


def _change_point(c: A.Command) -> str:
    text = f"change_point {sub(c.args[0], NEG)}"
    if len(c.args) > 1:
        text += f" on {sub(c.args[1], NEG)}"
    if c.names:
        text += " as " + ", ".join(name(n) for n in c.names)
    return text


def _fork(c: A.Command) -> str:
    return "fork " + " ".join(
        "(" + " | ".join(command(x) for x in b) + ")" for b in c.branches)


def _opaque(c: A.Command) -> str:
    return f"{c.name} {c.raw}" if c.raw else c.name


COMMAND_GENERATORS: dict[str, Callable[[A.Command], str]] = {
    "from": _from,
    "ts": _from,
    "row": lambda c: "row " + ", ".join(assign(a) for a in c.assigns),
    "show": lambda c: f"show {c.names[0]}",
    "where": lambda c: f"where {expr(c.expr)}" if c.expr is not None else "where",
    "eval": lambda c: "eval " + ", ".join(assign(a) for a in c.assigns),
    "stats": _stats,
    "inline stats": _stats,
    "keep": lambda c: "keep " + ", ".join(name_pattern(n) for n in c.names),
    "drop": lambda c: "drop " + ", ".join(name_pattern(n) for n in c.names),
    "rename": _rename,
    "dissect": _dissect,
    "grok": _grok,
    "mv_expand": lambda c: f"mv_expand {name(c.names[0])}",
    "enrich": _enrich,
    "lookup join": lambda c: f"lookup join {c.target} on " + ", ".join(name(n) for n in c.names),
    "sort": lambda c: "sort " + ", ".join(_sort_key(k) for k in c.keys),
    "limit": lambda c: f"limit {expr(c.args[0])}",
    "sample": lambda c: "sample " + " ".join(expr(a) for a in c.args),
    "completion": lambda c: f"completion {assign(c.assigns[0])} with {expr(c.args[0])}",
    "change_point": _change_point,
    "fork": _fork,
}


def command(c: A.Command) -> str:
    return COMMAND_GENERATORS.get(c.name, _opaque)(c)


def generate(q: A.Query) -> str:
    """The query on one line, commands joined by `` | ``."""
    return " | ".join(command(c) for c in q.commands)
