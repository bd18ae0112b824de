"""EQL tree -> EQL text. ``parse(generate(tree)) == tree`` for every tree the parser builds.

Dispatch is by node class through ``GENERATORS`` (sqlglot's ``<node>_sql``). Parentheses are
nodes of the tree (:class:`Paren`), so the text gets exactly the ones written; a sequence is
written on one line (so identity fixtures hold one query per line).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ruleatlas.languages.eql import ast as E
from ruleatlas.languages.eql.parser import KEYWORDS
from ruleatlas.languages.eql.tokens import escape

_IDENT = re.compile(r"[A-Za-z_@][A-Za-z0-9_@]*\Z")
_PART = re.compile(r"[A-Za-z0-9_@]+\Z")


def generate(q: E.Query) -> str:
    """The text of a query: its body, then `` | pipe`` per pipe."""
    parts = [body(q.body)] + [pipe(p) for p in q.pipes]
    return " | ".join(parts)


def body(b: E.EventQuery | E.Sequence | E.Sample) -> str:
    if isinstance(b, E.EventQuery):
        return event(b)
    if isinstance(b, E.Sequence):
        head = ["sequence"]
        if b.by:
            head.append("by " + keys(b.by))
        if b.maxspan is not None:
            ms = b.maxspan
            head.append(f"with maxspan={ms.text or _num(ms.value)}"
                        + ("" if ms.text or ms.unit is None else ms.unit))
        parts = [" ".join(head)] + [member(m) for m in b.members]
        if b.until is not None:
            parts.append("until " + member(b.until))
        return " ".join(parts)
    sample = "sample" + (" by " + keys(b.by) if b.by else "")
    return " ".join([sample] + [member(m) for m in b.members])


def event(e: E.EventQuery) -> str:
    if e.category is None:
        cat = "any"
    elif _IDENT.match(e.category) and e.category not in KEYWORDS:
        cat = e.category
    else:
        cat = f'"{escape(e.category)}"'
    return f"{cat} where {expr(e.condition)}"


def member(m: E.Member) -> str:
    out = ("![" if m.missing else "[") + event(m.query) + "]"
    if m.by:
        out += " by " + keys(m.by)
    if m.runs is not None:
        out += f" with runs={m.runs}"
    return out


def keys(ks: tuple[E.Expr, ...]) -> str:
    return ", ".join(expr(k) for k in ks)


def pipe(p: E.Pipe) -> str:
    return f"{p.name} {', '.join(expr(a) for a in p.args)}".rstrip() if p.args else p.name


def expr(e: E.Expr) -> str:
    return GENERATORS[type(e)](e)


def field_text(f: E.Field) -> str:
    """A field name, backquoting a dotted part only where it needs it."""
    parts = f.name.split(".")
    ok = bool(parts) and _IDENT.match(parts[0]) is not None and all(
        _PART.match(p) for p in parts[1:]) and f.name not in KEYWORDS
    text = f.name if ok else "`" + f.name.replace("`", "``") + "`"
    return ("?" if f.optional else "") + text


def string(s: E.Str) -> str:
    v = s.value
    if s.raw and '"""' not in v and "\r" not in v and "\n" not in v and not v.endswith('"'):
        return f'"""{v}"""'
    return f'"{escape(v)}"'


def _num(v: int | float) -> str:
    return repr(v)


def number(n: E.Num) -> str:
    return n.text or _num(n.value)


def call(c: E.FuncCall) -> str:
    return f"{c.name}{'~' if c.insensitive else ''}({', '.join(expr(a) for a in c.args)})"


def match(m: E.Match) -> str:
    if len(m.values) == 1 and not m.listed:
        return f"{expr(m.left)} {m.op} {expr(m.values[0])}"
    return f"{expr(m.left)} {m.op} ({', '.join(expr(v) for v in m.values)})"


def in_(i: E.In) -> str:
    op = ("not in" if i.negated else "in") + ("~" if i.insensitive else "")
    return f"{expr(i.value)} {op} ({', '.join(expr(v) for v in i.items)})"


GENERATORS: dict[type, Callable[[Any], str]] = {
    E.Field: field_text,
    E.Str: string,
    E.Num: number,
    E.Bool: lambda b: "true" if b.value else "false",
    E.Null: lambda _n: "null",
    E.FuncCall: call,
    E.BinOp: lambda b: f"{expr(b.left)} {b.op} {expr(b.right)}",
    E.Match: match,
    E.In: in_,
    E.Unary: lambda u: f"{u.op}{expr(u.arg)}",
    E.Not: lambda n: f"not {expr(n.arg)}",
    E.And: lambda a: " and ".join(expr(x) for x in a.args),
    E.Or: lambda o: " or ".join(expr(x) for x in o.args),
    E.Paren: lambda p: f"({expr(p.arg)})",
}
