"""EQL tree -> shared model trees (:mod:`ruleatlas.model`).

Semantics (Elasticsearch EQL; docs/eql.md has the table):

* ``cat where c`` adds ``event.category eq "cat"`` (case-sensitive, as Elasticsearch's term
  query on the category field); ``any where`` adds nothing.
* ``f : "x"`` is case-insensitive equality (``eq``, ``cased=False``), or ``wildcard`` with a
  :class:`Pattern` when the text holds ``*`` or ``?`` (EQL has no escape for them: a backslash is
  a plain character of the pattern); ``f : ("a", "b*")`` is ``in`` of strings and patterns.
* ``==``/``!=`` are case-sensitive ``eq``/``ne``; their ``*``/``?`` are plain characters.
  ``f == null`` is ``exists`` negated, ``f != null`` is ``exists``.
* ``like``/``like~``: ``wildcard`` (a list: ``in`` of patterns), ``cased`` for ``like``.
* ``regex``/``regex~``: ``regex`` with the Lucene pattern converted
  (:mod:`ruleatlas.languages.lucene_regex`), flag ``i`` for ``regex~``; several patterns are
  several values (any matches).
* ``in``/``in~``/``not in``: ``in`` (``cased`` unless ``~``; ``negated`` for ``not in``).
* ``< <= > >=``: ``lt le gt ge``.
* ``startsWith endsWith stringContains`` (``~``: case-insensitive) on a field with string
  arguments: ``startswith endswith contains``; ``cidrMatch(f, nets...)``: ``cidr`` (``cased``
  False: case means nothing for a network).
* Anything else (``length(f) > 3``, arithmetic, field against field, functions of functions) is
  a :class:`Condition`: a :class:`Call` tree (operators by their EQL spelling, ``AND OR NOT``
  for the boolean ones, functions by their canonical name with ``~`` when case-insensitive) and
  the fields it reads.
* ``?field`` keeps the field's name; the optional fields are listed by the analyzer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ruleatlas import model as M
from ruleatlas.languages.eql import ast as E
from ruleatlas.languages.eql.generator import expr as expr_text
from ruleatlas.languages.lucene_regex import RegexUnsupported, lucene_regex
from ruleatlas.languages.parsing import span_of
from ruleatlas.model import Op

# Functions by lower-case name -> canonical (Elasticsearch) spelling.
FUNCTIONS: dict[str, str] = {n.lower(): n for n in (
    "add", "between", "cidrMatch", "concat", "divide", "endsWith", "indexOf", "length",
    "modulo", "multiply", "number", "startsWith", "string", "stringContains", "substring",
    "subtract",
)}
# Functions that are a predicate on their first (field) argument with constant strings after.
FUNCTION_OPS: dict[str, Op] = {
    "startswith": Op.STARTSWITH, "endswith": Op.ENDSWITH, "stringcontains": Op.CONTAINS,
    "cidrmatch": Op.CIDR,
}
COMPARE_OPS: dict[str, Op] = {"==": Op.EQ, "!=": Op.NE, "<": Op.LT, "<=": Op.LE, ">": Op.GT,
                              ">=": Op.GE}
FLIPPED: dict[str, str] = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
MATCH_CASED: dict[str, bool] = {":": False, "like": True, "like~": False, "regex": True,
                                "regex~": False}


@dataclass(slots=True)
class LowerCtx:
    """What the lowering of one query needs and collects: the text (for spans), the stage index
    given to each node, optional fields seen, problems."""

    query: str
    stage: int | None = None
    optional: list[str] = field(default_factory=list)
    problems: list[M.Problem] = field(default_factory=list)


def pattern(text: str) -> M.Pattern:
    """An EQL wildcard text as a :class:`Pattern`: every ``*`` and ``?`` is a wildcard."""
    return M.Pattern.from_wildcards(text)


def _wild_value(text: str) -> str | M.Pattern:
    return pattern(text) if ("*" in text or "?" in text) else text


def constant(e: E.Expr) -> M.Value | E.Expr:
    """The Python value of a constant node (``-1`` folded), else the node itself."""
    if isinstance(e, E.Str):
        return e.value
    if isinstance(e, (E.Num, E.Bool)):
        return e.value
    if isinstance(e, E.Null):
        return None
    if isinstance(e, E.Unary) and isinstance(e.arg, E.Num):
        return -e.arg.value if e.op == "-" else e.arg.value
    if isinstance(e, E.Paren):
        return constant(e.arg)
    return e


def _is_const(e: E.Expr) -> bool:
    return not isinstance(constant(e), E.EXPR_TYPES)


def _unparen(e: E.Expr) -> E.Expr:
    while isinstance(e, E.Paren):
        e = e.arg
    return e


def _field(e: E.Expr, ctx: LowerCtx) -> str | None:
    e = _unparen(e)
    if not isinstance(e, E.Field):
        return None
    if e.optional and e.name not in ctx.optional:
        ctx.optional.append(e.name)
    return e.name


def _pred(ctx: LowerCtx, e: E.Expr, fld: str, op: Op, values: tuple[M.Value, ...],
          cased: bool, negated: bool = False) -> M.Predicate:
    return M.Predicate(fld, op, values, negated=negated, cased=cased, stage=ctx.stage,
                     text=ctx.query[e.start : e.end], span=span_of(ctx.query, e.start, e.end))


def lower_expr(e: E.Expr, ctx: LowerCtx) -> M.Node:
    """The model tree of a boolean EQL expression."""
    fn = LOWERERS.get(type(e))
    node = fn(e, ctx) if fn is not None else None
    return node if node is not None else condition(e, ctx)


def condition(e: E.Expr, ctx: LowerCtx) -> M.Condition:
    """``e`` as a generic :class:`Condition` (a Call tree and the fields it reads)."""
    names: list[str] = []
    expr = to_term(e, names, ctx)
    return M.Condition(expr, ctx.query[e.start : e.end], tuple(names), stage=ctx.stage,
                     span=span_of(ctx.query, e.start, e.end))


def _lower_bool(e: E.And | E.Or, ctx: LowerCtx) -> M.Node:
    kind = M.And if isinstance(e, E.And) else M.Or
    return M.connective(kind, (lower_expr(a, ctx) for a in e.args))


def _lower_not(e: E.Not, ctx: LowerCtx) -> M.Node:
    return M.Not(lower_expr(e.arg, ctx))


def _lower_match(e: E.Match, ctx: LowerCtx) -> M.Node | None:
    fld = _field(e.left, ctx)
    values = [constant(v) for v in e.values]
    if fld is None or any(isinstance(v, E.EXPR_TYPES) for v in values):
        return None
    cased = MATCH_CASED[e.op]
    if e.op.startswith("regex"):
        if not all(isinstance(v, str) for v in values):
            return None
        try:
            rx = tuple(lucene_regex(str(v), not cased) for v in values)
        except RegexUnsupported as exc:
            return M.Opaque(ctx.query[e.start : e.end], f"regex: {exc}", stage=ctx.stage,
                          span=span_of(ctx.query, e.start, e.end))
        return _pred(ctx, e, fld, Op.REGEX, rx, cased)
    if e.op == ":":
        vals: tuple[M.Value, ...] = tuple(
            _wild_value(v) if isinstance(v, str) else v for v in values)  # type: ignore[misc]
        if len(vals) > 1:
            return _pred(ctx, e, fld, Op.IN, vals, False)
        op = Op.WILDCARD if isinstance(vals[0], M.Pattern) else Op.EQ
        return _pred(ctx, e, fld, op, vals, False)
    if not all(isinstance(v, str) for v in values):
        return None
    pats = tuple(pattern(str(v)) for v in values)
    return _pred(ctx, e, fld, Op.IN if len(pats) > 1 else Op.WILDCARD, pats, cased)


def _lower_in(e: E.In, ctx: LowerCtx) -> M.Node | None:
    fld = _field(e.value, ctx)
    values = [constant(v) for v in e.items]
    if fld is None or any(isinstance(v, E.EXPR_TYPES) for v in values):
        return None
    return _pred(ctx, e, fld, Op.IN, tuple(values), not e.insensitive,  # type: ignore[arg-type]
                 negated=e.negated)


def _lower_compare(e: E.BinOp[E.Expr], ctx: LowerCtx) -> M.Node | None:
    if e.op not in COMPARE_OPS:  # arithmetic: a generic condition
        return None
    left, right, op = _unparen(e.left), _unparen(e.right), e.op
    if _is_const(left) and not _is_const(right):
        left, right, op = right, left, FLIPPED[op]
    value = constant(right)
    if isinstance(value, E.EXPR_TYPES):
        return None
    if isinstance(left, E.FuncCall) and isinstance(value, bool) and op in ("==", "!="):
        inner = _lower_call(left, ctx)
        if inner is None:
            return None
        return inner if value == (op == "==") else M.Not(inner)
    fld = _field(left, ctx)
    if fld is None:
        return None
    if value is None:
        if op not in ("==", "!="):
            return None
        return _pred(ctx, e, fld, Op.EXISTS, (), True, negated=op == "==")
    return _pred(ctx, e, fld, COMPARE_OPS[op], (value,), True)  # type: ignore[arg-type]


def _lower_call(e: E.FuncCall, ctx: LowerCtx) -> M.Node | None:
    op = FUNCTION_OPS.get(e.name.lower())
    if op is None or len(e.args) < 2:
        return None
    fld = _field(e.args[0], ctx)
    values = [constant(a) for a in e.args[1:]]
    if fld is None or not all(isinstance(v, str) for v in values):
        return None
    cased = op is not Op.CIDR and not e.insensitive
    return _pred(ctx, e, fld, op, tuple(values), cased)  # type: ignore[arg-type]


def _lower_paren(e: E.Paren, ctx: LowerCtx) -> M.Node:
    return lower_expr(e.arg, ctx)


def _lower_field(e: E.Field, ctx: LowerCtx) -> M.Node:
    """A bare (boolean) field: true when the field is ``true``."""
    return _pred(ctx, e, _field(e, ctx) or e.name, Op.EQ, (True,), True)


def _lower_const(e: E.Bool, ctx: LowerCtx) -> M.Node:
    return M.Const(e.value)


LOWERERS: dict[type, Callable[[Any, LowerCtx], M.Node | None]] = {
    E.And: _lower_bool, E.Or: _lower_bool, E.Not: _lower_not, E.Match: _lower_match,
    E.In: _lower_in, E.BinOp: _lower_compare, E.FuncCall: _lower_call, E.Paren: _lower_paren,
    E.Field: _lower_field, E.Bool: _lower_const,
}


def function_name(c: E.FuncCall) -> str:
    name = FUNCTIONS.get(c.name.lower(), c.name)
    return name + "~" if c.insensitive else name


def to_term(e: E.Expr, fields: list[str], ctx: LowerCtx) -> M.Term:
    """The :class:`Term` of an expression; appends the fields it reads to ``fields``."""
    e = _unparen(e)
    value = constant(e)
    if not isinstance(value, E.EXPR_TYPES):
        return value  # type: ignore[return-value]
    if isinstance(e, E.Field):
        _field(e, ctx)
        if e.name not in fields:
            fields.append(e.name)
        return M.FieldRef(e.name)

    def sub(xs: tuple[E.Expr, ...]) -> tuple[M.Term, ...]:
        return tuple(to_term(x, fields, ctx) for x in xs)

    if isinstance(e, E.FuncCall):
        return M.Call(function_name(e), sub(e.args))
    if isinstance(e, E.BinOp):
        return M.Call(e.op, sub((e.left, e.right)))
    if isinstance(e, E.Match):
        return M.Call(e.op, sub((e.left, *e.values)))
    if isinstance(e, E.In):
        op = ("not in" if e.negated else "in") + ("~" if e.insensitive else "")
        return M.Call(op, sub((e.value, *e.items)))
    if isinstance(e, E.Unary):
        return M.Call(e.op, sub((e.arg,)))
    if isinstance(e, E.Not):
        return M.Call("NOT", sub((e.arg,)))
    if isinstance(e, (E.And, E.Or)):
        return M.Call("AND" if isinstance(e, E.And) else "OR", sub(e.args))
    raise TypeError(f"not an EQL expression: {e!r}")


def key_name(e: E.Expr, ctx: LowerCtx) -> str:
    """A join key's field name; an expression key keeps its text (with a warning)."""
    fld = _field(e, ctx)
    if fld is not None:
        return fld
    ctx.problems.append(M.Problem("join key is an expression, not a field: kept as text",
                                "warning", span_of(ctx.query, e.start, e.end), "eql-key"))
    return expr_text(e)
