"""KQL tree -> the shared model (``model.Predicate`` trees). Semantics: docs/kql.md.

* ``field: value`` -> ``eq`` (``cased``: Elasticsearch matches keyword fields exactly, case
  included); with an unescaped ``*`` -> ``wildcard`` with a :class:`Pattern`; ``field: *`` ->
  ``exists``; unquoted ``true``/``false``/``null`` -> ``True``/``False``/``None`` (Kibana builds
  these literals; every other value stays a string, which Elasticsearch coerces to the field's
  type, so ``destination.port: 23`` is ``eq "23"``, and the engine meets ``"23"`` and ``23``);
* a value list ``field: (a or b or c*)`` -> one ``in`` predicate (values may be patterns);
  values in CIDR notation (``10.0.0.0/8``) -> ``cidr`` (on an ``ip`` field Elasticsearch's
  term query matches the network), with the plain addresses of the same list;
  ``and``/``not`` inside a list -> ``And``/``Not`` of predicates on the same field;
* ``field > 5`` -> ``gt`` (``ge lt le``) with a number when the value is one, else the text
  (dates: ``"now-30d/d"``);
* on an analysed text field (``TEXT_FIELDS``: ``powershell.file.script_block_text``,
  ``message``, ``*.text``, ...) a value or list -> ``contains``, not cased; on a ``*.caseless``
  field -> ``eq``/``in`` not cased;
* a value without a field -> ``keyword`` (field ``None``, not cased: Kibana searches every
  field, analysed text fields included); a lone ``*`` -> ``Const(True)``;
* ``field: { q }`` -> ``q`` with its field names prefixed by ``field.`` (the nested query's
  "same nested object" condition is not kept);
* a field name with ``*`` stays as written (``file.hash.*``): Kibana expands it to every field of
  the data view matching the pattern, and matches when any does.

:func:`lower` takes ``cased`` (ES|QL's ``kql()`` may decide otherwise) and ``locate`` (offsets
in the KQL text -> a :class:`Span`, so an embedding language can map them into its own text).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ruleatlas.languages.kql import ast as K
from ruleatlas.languages.parsing import span_of
from ruleatlas.model import And as MAnd
from ruleatlas.model import Const, Node, Op, Pattern, Predicate, Span, connective
from ruleatlas.model import Not as MNot
from ruleatlas.model import Or as MOr
from ruleatlas.model import Value as MValue

RANGE_OPS: dict[str, Op] = {"<": Op.LT, "<=": Op.LE, ">": Op.GT, ">=": Op.GE}
# Unquoted literals Kibana's grammar turns into typed values (case-sensitive, after trimming).
TYPED_LITERALS: dict[str, bool | None] = {"true": True, "false": False, "null": None}
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?")

Locate = Callable[[int, int], Span | None]

# Field mappings that change how Elasticsearch matches a value (data, from Elastic's ECS and
# integration field definitions). ``text`` / ``match_only_text`` fields are analysed: Kibana's
# match / match_phrase query matches tokens, case-insensitively, so a value there lowers to
# ``contains``, not cased (patterns too: a pattern then matches inside the text). ECS ``.text``
# multi-fields are ``match_only_text``. Elastic Defend's ``.caseless`` multi-fields are keywords
# with a lowercase normalizer: exact, not cased.
TEXT_FIELDS = frozenset({
    "message",  # ECS: match_only_text
    "error.message",  # ECS: match_only_text
    "powershell.file.script_block_text",  # windows integration: text (powershell_script_analyzer)
    "powershell.command.value",  # windows integration: text
    "powershell.command.invocation_details.value",  # windows integration: text
})
TEXT_SUFFIXES = (".text",)
CASELESS_SUFFIXES = (".caseless",)


def is_text_field(name: str) -> bool:
    return name in TEXT_FIELDS or name.endswith(TEXT_SUFFIXES)


def is_caseless_field(name: str) -> bool:
    return name.endswith(CASELESS_SUFFIXES)


@dataclass(frozen=True, slots=True)
class _Ctx:
    source: str | None
    cased: bool
    locate: Locate
    prefix: str = ""

    def text(self, start: int, end: int) -> str | None:
        return None if self.source is None else self.source[start:end]


def field_name(v: K.Value) -> str:
    """A field as Kibana reads it: the decoded text, wildcards as ``*``."""
    return v.value if isinstance(v, K.Quoted) else v.text


def literal_value(v: K.Value) -> MValue:
    """The model value of one literal: str, bool/None (unquoted ``true false null``) or a
    :class:`Pattern` (unquoted, with a wildcard)."""
    if isinstance(v, K.Quoted):
        return v.value
    if v.pattern.has_wildcards:
        return v.pattern
    text = v.text
    return TYPED_LITERALS[text] if text in TYPED_LITERALS else text


def range_value(v: K.Value) -> MValue:
    """A range bound: an int or float when the text is a number, else the text."""
    text = field_name(v)
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return text


def _flat(cls: type[MAnd] | type[MOr], nodes: list[Node]) -> Node:
    """``connective`` of ``nodes``, a single node left as it is."""
    n = connective(cls, nodes)
    return n.args[0] if len(n.args) == 1 else n


# ---- queries ------------------------------------------------------------------------------


def _field_value(n: K.FieldValue, ctx: _Ctx) -> Node:
    fld = ctx.prefix + field_name(n.field)
    field_raw = ctx.text(n.field.start, n.field.end)
    return _values(fld, field_raw, n.value, ctx, whole=n)


def _range(n: K.Range, ctx: _Ctx) -> Node:
    fld = ctx.prefix + field_name(n.field)
    return Predicate(fld, RANGE_OPS[n.op], (range_value(n.value),),
                     text=ctx.text(n.start, n.end), span=ctx.locate(n.start, n.end))


def _free(n: K.FreeText, ctx: _Ctx) -> Node:
    v = n.value
    if isinstance(v, K.Unquoted) and v.is_lone_wildcard:
        return Const(True)
    return Predicate(None, Op.KEYWORD, (literal_value(v),), text=ctx.text(n.start, n.end),
                     span=ctx.locate(n.start, n.end))


def _nested(n: K.Nested, ctx: _Ctx) -> Node:
    inner = _Ctx(ctx.source, ctx.cased, ctx.locate, ctx.prefix + field_name(n.field) + ".")
    return _lower(n.query, inner)


def _and(n: K.And, ctx: _Ctx) -> Node:
    return _flat(MAnd, [_lower(a, ctx) for a in n.args])


def _or(n: K.Or, ctx: _Ctx) -> Node:
    return _flat(MOr, [_lower(a, ctx) for a in n.args])


def _not(n: K.Not, ctx: _Ctx) -> Node:
    return MNot(_lower(n.arg, ctx))


def _empty(n: K.Empty, ctx: _Ctx) -> Node:
    return Const(True)


LOWERERS: dict[type, Callable[[Any, _Ctx], Node]] = {
    K.FieldValue: _field_value,
    K.Range: _range,
    K.FreeText: _free,
    K.Nested: _nested,
    K.And: _and,
    K.Or: _or,
    K.Not: _not,
    K.Empty: _empty,
}


def _lower(n: K.Expr, ctx: _Ctx) -> Node:
    return LOWERERS[type(n)](n, ctx)


# ---- value lists --------------------------------------------------------------------------


def _is_simple(v: K.ValueExpr) -> bool:
    """A value that can join an ``in`` list (not ``*``, not a sub-list)."""
    return isinstance(v, K.Quoted) or (isinstance(v, K.Unquoted) and not v.is_lone_wildcard)


def _is_cidr(v: MValue) -> bool:
    """A network in CIDR notation (``10.0.0.0/8``, ``"FE80::/10"``)."""
    if not isinstance(v, str) or "/" not in v:
        return False
    try:
        ipaddress.ip_network(v, strict=False)
    except ValueError:
        return False
    return True


def _is_ip(v: MValue) -> bool:
    if not isinstance(v, str):
        return False
    try:
        ipaddress.ip_address(v)
    except ValueError:
        return False
    return True


def _leaf_predicate(fld: str, values: list[K.Value], text: str | None, span: Span | None,
                    ctx: _Ctx) -> Node:
    """``exists`` for ``*``; ``cidr`` for networks (an ``ip`` field's term query matches the
    network; plain addresses in the same list join it); ``eq``/``wildcard``/``in`` else."""
    if len(values) == 1 and isinstance(values[0], K.Unquoted) and values[0].is_lone_wildcard:
        return Predicate(fld, Op.EXISTS, (), text=text, span=span)
    vals = [literal_value(v) for v in values]
    if is_text_field(fld):
        return Predicate(fld, Op.CONTAINS, tuple(vals), text=text, span=span)
    cased = ctx.cased and not is_caseless_field(fld)
    nets: list[MValue] = []
    if any(_is_cidr(v) for v in vals):
        nets = [v for v in vals if _is_cidr(v) or _is_ip(v)]
        vals = [v for v in vals if not (_is_cidr(v) or _is_ip(v))]
    out: list[Node] = []
    if nets:
        out.append(Predicate(fld, Op.CIDR, tuple(nets), text=text, span=span))
    if len(vals) == 1:
        op = Op.WILDCARD if isinstance(vals[0], Pattern) else Op.EQ
        out.append(Predicate(fld, op, (vals[0],), cased=cased, text=text, span=span))
    elif vals:
        out.append(Predicate(fld, Op.IN, tuple(vals), cased=cased, text=text, span=span))
    return _flat(MOr, out)


def _list_predicate(fld: str, field_raw: str | None, vals: list[K.Value], ctx: _Ctx,
                    whole: K.FieldValue | None) -> Node:
    """One predicate for ``vals``; its text is ``whole`` as written when the values are all of
    the expression, else ``field: v1 or v2``."""
    if whole is not None:
        text, span = ctx.text(whole.start, whole.end), ctx.locate(whole.start, whole.end)
    elif field_raw is None:
        text, span = None, ctx.locate(vals[0].start, vals[-1].end)
    else:
        text = f"{field_raw}: " + " or ".join(ctx.text(x.start, x.end) or "" for x in vals)
        span = ctx.locate(vals[0].start, vals[-1].end)
    return _leaf_predicate(fld, vals, text, span, ctx)


def _values(fld: str, field_raw: str | None, v: K.ValueExpr, ctx: _Ctx,
            whole: K.FieldValue | None = None) -> Node:
    """The predicates of ``field: <v>``; ``whole`` is the expression when ``v`` is all of it.
    The plain values of an ``or`` list become one ``in`` predicate, placed where the first
    was written; ``*`` and sub-lists stay branches of the ``Or``."""
    if isinstance(v, (K.Quoted, K.Unquoted)):
        return _list_predicate(fld, field_raw, [v], ctx, whole)
    if isinstance(v, K.VNot):
        return MNot(_values(fld, field_raw, v.arg, ctx))
    if isinstance(v, K.VAnd):
        return _flat(MAnd, [_values(fld, field_raw, a, ctx) for a in v.args])
    simple: list[K.Value] = [a for a in v.args if isinstance(a, (K.Quoted, K.Unquoted))
                           and _is_simple(a)]
    out: list[Node] = []
    for a in v.args:
        if not _is_simple(a):
            out.append(_values(fld, field_raw, a, ctx))
        elif a is simple[0]:
            out.append(_list_predicate(fld, field_raw, simple, ctx,
                                       whole if len(simple) == len(v.args) else None))
    return _flat(MOr, out)


def lower(tree: K.Expr, source: str | None = None, *, cased: bool = True,
          locate: Locate | None = None) -> Node:
    """The model tree of a parsed KQL query. ``source`` is the text it was parsed from (for
    each predicate's ``text``; without it predicates have no text); ``locate`` maps offsets in
    it to spans (default: line/col in ``source``, or no span without a source); ``cased`` marks
    value matches case-sensitive (Kibana on keyword fields)."""
    if locate is None:
        text = source
        locate = (lambda s, e: None) if text is None else (lambda s, e: span_of(text, s, e))
    return _lower(tree, _Ctx(source, cased, locate))
