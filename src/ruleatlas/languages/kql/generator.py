"""KQL tree -> KQL text. ``parse(generate(tree)) == tree`` for every tree the parser builds.

Dispatch is by node class through ``GENERATORS``. Parentheses are written only where the tree
needs them (precedence ``not`` > ``and`` > ``or``; a child of the same connective keeps its
grouping). Unquoted literals are escaped so the tokenizer reads back the same parts: special
characters get a backslash, whitespace escapes stay escapes, and a keyword hidden inside a value
(`` or ``, `` and ``, ``not `` followed by whitespace) is escaped so it cannot end the literal.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ruleatlas.languages.kql import ast as K
from ruleatlas.languages.kql.tokens import SPACE, SPECIAL
from ruleatlas.model import Wild

_QUOTED_ESCAPES = {"\\": "\\\\", '"': '\\"'}
_UNQUOTED_ESCAPES = {"\t": "\\t", "\r": "\\r", "\n": "\\n"}
# In the written text, ``or``/``and`` between spaces, and ``not`` + space, would end the
# literal (Kibana's keyword look-ahead): write them as ``\or``, ``\and``, ``no\u0074``. The
# literal's end counts as a space: a space or a keyword may follow it.
_HIDDEN_BINARY = re.compile("(?<= )(or|and)(?= |$)", re.IGNORECASE)
_HIDDEN_NOT = re.compile("(no)([tT])(?= |$)", re.IGNORECASE)


def _qchar(c: str) -> str:
    if c in _QUOTED_ESCAPES:
        return _QUOTED_ESCAPES[c]
    if c in _UNQUOTED_ESCAPES:
        return _UNQUOTED_ESCAPES[c]
    if not c.isprintable() and c != " " and ord(c) <= 0xFFFF:
        return f"\\u{ord(c):04x}"
    return c


def quoted(value: str) -> str:
    """A quoted string: backslash and quote escaped, control characters as escapes."""
    return '"' + "".join(_qchar(c) for c in value) + '"'


def _char(c: str) -> str:
    if c in SPECIAL:
        return "\\" + c
    if c in _UNQUOTED_ESCAPES:
        return _UNQUOTED_ESCAPES[c]
    if c != " " and (c in SPACE or not c.isprintable()) and ord(c) <= 0xFFFF:
        return f"\\u{ord(c):04x}"
    return c


def unquoted(v: K.Unquoted) -> str:
    """Text that the tokenizer decodes (and trims) back to ``v.pattern``."""
    if not v.pattern.parts:
        return "\\t"  # a tab, trimmed away: the empty literal
    raw = "".join("*" if isinstance(p, Wild) else "".join(_char(c) for c in p)
                  for p in v.pattern.parts)
    raw = _HIDDEN_BINARY.sub(lambda m: "\\" + m.group(1), raw)
    return _HIDDEN_NOT.sub(lambda m: m.group(1) + f"\\u{ord(m.group(2)):04x}", raw)


def value(v: K.Quoted | K.Unquoted) -> str:
    return quoted(v.value) if isinstance(v, K.Quoted) else unquoted(v)


def _values(v: K.ValueExpr) -> str:
    if isinstance(v, (K.Quoted, K.Unquoted)):
        return value(v)
    if isinstance(v, K.VNot):  # "not not x" does not parse: the inner one gets parentheses
        inner = _values(v.arg)
        return f"not ({inner})" if isinstance(v.arg, K.VNot) else f"not {inner}"
    word = " or " if isinstance(v, K.VOr) else " and "
    body = word.join(_values(a) for a in v.args)
    return f"({body})"


def _field_value(n: K.FieldValue) -> str:
    vals = _values(n.value)
    if isinstance(n.value, K.VNot):  # a list may start with 'not', a lone value may not
        vals = f"({vals})"
    return f"{value(n.field)}: {vals}"


def _range(n: K.Range) -> str:
    return f"{value(n.field)} {n.op} {value(n.value)}"


def _free(n: K.FreeText) -> str:
    return value(n.value)


def _nested(n: K.Nested) -> str:
    return f"{value(n.field)}: {{ {generate(n.query)} }}"


def _wrap(child: K.Expr, parent: type) -> str:
    text = generate(child)
    needs = (isinstance(child, K.Or) or (isinstance(child, K.And) and parent is not K.Or)
             or (isinstance(child, K.Not) and parent is K.Not))
    return f"({text})" if needs else text


def _or(n: K.Or) -> str:
    return " or ".join(_wrap(a, K.Or) for a in n.args)


def _and(n: K.And) -> str:
    return " and ".join(_wrap(a, K.And) for a in n.args)


def _not(n: K.Not) -> str:
    return f"not {_wrap(n.arg, K.Not)}"


def _empty(n: K.Empty) -> str:
    return ""


GENERATORS: dict[type, Callable[[Any], str]] = {
    K.FieldValue: _field_value,
    K.Range: _range,
    K.FreeText: _free,
    K.Nested: _nested,
    K.Or: _or,
    K.And: _and,
    K.Not: _not,
    K.Empty: _empty,
}


def generate(tree: K.Expr) -> str:
    """The query text of a tree, in canonical form (``field: value``, lowercase keywords)."""
    return GENERATORS[type(tree)](tree)
