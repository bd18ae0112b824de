"""ES|QL tree -> the shared model: stages, predicate trees, group-by, computed fields.

Each command is one :class:`~ruleatlas.model.Stage`: ``from``/``ts``/``row``/``show`` generate,
``where`` filters, ``stats``/``inline stats`` aggregate (their ``by`` list is the stage's
``by``), everything else transforms. ``where`` expressions become predicates (ES|QL compares
text case-sensitively, so ``cased=True`` unless the field is wrapped in ``to_lower``/``to_upper``
or compared with ``=~``):

* ``f == v`` ``eq``, ``f != v`` ``ne``, ``f =~ v`` ``eq`` (not cased), ``< <= > >=``
  ``lt le gt ge`` (a literal on the left flips the operator); ``f == g`` (two fields): ``eq``
  with a :class:`FieldRef`;
* ``f like "p"`` ``wildcard`` (``*`` any run, ``?`` one character, ``\\`` escapes the next),
  ``f like ("a", "b")`` one predicate with two patterns; ``f rlike "re"`` ``regex`` (Lucene,
  anchored: see :mod:`ruleatlas.languages.lucene_regex`); ``f in (...)`` ``in``;
  ``not like``/``not in``: ``Not(...)``;
* ``f is not null`` ``exists``, ``f is null`` ``Not(exists)``;
* ``starts_with(f, "x")`` ``startswith``, ``ends_with`` ``endswith``, ``contains``
  ``contains``, ``mv_contains(f, "x")`` ``eq`` (any value of a multi-valued field),
  ``cidr_match(f, ...)`` ``cidr``; ``true in (c1, c2)`` the OR of the conditions; a bare
  boolean field ``f`` is ``eq true``; ``true`` / ``false`` constants;
* ``kql("...")`` stays a :class:`Condition` ``Call("kql", (text,))`` (the KQL parser may
  replace it); anything else (``@timestamp > now() - 7 day``, ``length(f) > 10``, the match
  operator ``f : "x"``, ``f == null``, which is never true) is a :class:`Condition` with a
  :class:`Call` tree and its fields.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ruleatlas import model as M
from ruleatlas.languages.esql import ast as A
from ruleatlas.languages.lucene_regex import RegexUnsupported, lucene_regex
from ruleatlas.languages.parsing import span_of
from ruleatlas.model import Op

CMP_OPS: dict[str, Op] = {"==": Op.EQ, "=~": Op.EQ, "!=": Op.NE, "<": Op.LT, "<=": Op.LE,
                          ">": Op.GT, ">=": Op.GE}
FLIP: dict[Op, Op] = {Op.LT: Op.GT, Op.LE: Op.GE, Op.GT: Op.LT, Op.GE: Op.LE, Op.EQ: Op.EQ,
                      Op.NE: Op.NE}
CASE_FOLDING = frozenset({"to_lower", "to_upper"})
# Conversions that leave a value as it is for matching (``cidr_match(to_ip(source.ip), ...)``).
TRANSPARENT = frozenset({"to_ip", "to_string", "to_str"})
STRING_FUNCTIONS: dict[str, Op] = {"starts_with": Op.STARTSWITH, "ends_with": Op.ENDSWITH,
                                   "contains": Op.CONTAINS, "mv_contains": Op.EQ}
GENERATING = frozenset({"from", "ts", "row", "show"})
AGGREGATING = frozenset({"stats", "inline stats"})
# Branch commands a fork may hold for its condition to be the OR of the branches' filters.
FORK_ROW_COMMANDS = frozenset({"where", "sort", "limit", "keep", "drop", "eval", "rename"})
_DISSECT_KEY = re.compile(r"%\{([^}]*)\}")
_GROK_NAME = re.compile(r"%\{\w+:([\w.@]+)(?::\w+)?\}|\(\?<([\w.@]+)>")


@dataclass
class Ctx:
    """State while lowering one query."""

    query: str
    stage: int = 0
    phase: M.Phase = M.Phase.EVENT
    computed: list[str] = field(default_factory=list)
    problems: list[M.Problem] = field(default_factory=list)

    def text(self, n: Any) -> str:
        return self.query[n.start:n.end]

    def span(self, n: Any) -> M.Span | None:
        if n.end <= n.start:
            return None
        return span_of(self.query, n.start, n.end)

    def compute(self, names: list[str]) -> None:
        for n in names:
            if n not in self.computed:
                self.computed.append(n)


# ---- expressions as terms -----------------------------------------------------------------


def term(e: A.Expr) -> M.Term:
    """An expression as a :class:`Call` tree (operators by symbol, functions by name)."""
    if isinstance(e, A.Field):
        return M.FieldRef(e.name)
    lit = literal(e)
    if not isinstance(lit, _NotLiteral):
        return lit
    if isinstance(e, A.FuncCall):
        return M.Call(e.name, (M.Call("*"),) if e.star else tuple(term(a) for a in e.args))
    if isinstance(e, A.BinOp):
        return M.Call(e.op, (term(e.left), term(e.right)))
    if isinstance(e, A.Unary):
        return M.Call(e.op, (term(e.arg),))
    if isinstance(e, A.Cast):
        return M.Call("::", (term(e.arg), e.type))
    if isinstance(e, A.And | A.Or):
        return M.Call("AND" if isinstance(e, A.And) else "OR", tuple(term(a) for a in e.args))
    if isinstance(e, A.Not):
        return M.Call("NOT", (term(e.arg),))
    if isinstance(e, A.Like):
        t = M.Call("rlike" if e.regex else "like", (term(e.value), *map(term, e.patterns)))
        return M.Call("NOT", (t,)) if e.negated else t
    if isinstance(e, A.In):
        t = M.Call("in", (term(e.value), *map(term, e.items)))
        return M.Call("NOT", (t,)) if e.negated else t
    if isinstance(e, A.IsNull):
        return M.Call("is not null" if e.negated else "is null", (term(e.value),))
    if isinstance(e, A.Match):
        return M.Call(":", (term(e.field), term(e.query)))
    if isinstance(e, A.Param):
        return M.Call("param", (e.name,))
    if isinstance(e, A.Duration):
        return M.Call("duration", (e.amount.value, e.unit))
    if isinstance(e, A.ListLit):
        return M.Call("list", tuple(term(i) for i in e.items))
    if isinstance(e, A.MapLit):
        return M.Call("map", tuple(x for k, v in e.entries for x in (k, term(v))))
    raise TypeError(e)


class _NotLiteral:
    """The type of :data:`_NOT_LITERAL` (``None`` is a literal: ``null``)."""


_NOT_LITERAL = _NotLiteral()


def literal(e: A.Expr) -> M.Scalar | _NotLiteral:
    """The Python value of a literal (``-5`` included), else ``_NOT_LITERAL``."""
    if isinstance(e, A.Str):
        return e.value
    if isinstance(e, A.Num):
        return e.value
    if isinstance(e, A.Bool):
        return e.value
    if isinstance(e, A.Null):
        return None
    if isinstance(e, A.Unary) and e.op == "-" and isinstance(e.arg, A.Num):
        return -e.arg.value
    return _NOT_LITERAL


def field_of(e: A.Expr) -> tuple[str, bool] | None:
    """``(field, cased)`` when ``e`` reads one field as it is (``f``, ``f::keyword``,
    ``to_ip(f)``, ``to_string(f)``) or case-folded (``to_lower(f)``, ``to_upper(f)``: not
    cased)."""
    if isinstance(e, A.Field):
        return e.name, True
    if isinstance(e, A.Cast) and isinstance(e.arg, A.Field):
        return e.arg.name, True
    if isinstance(e, A.FuncCall) and len(e.args) == 1 and e.name in CASE_FOLDING | TRANSPARENT:
        inner = field_of(e.args[0])
        if inner is not None:
            return inner[0], inner[1] and e.name in TRANSPARENT
    return None


def like_pattern(s: str) -> M.Pattern:
    """An ES|QL ``like`` pattern: ``*`` any run, ``?`` one character, ``\\x`` a literal x."""
    return M.Pattern.from_wildcards(s, escape="\\")


# ---- where -------------------------------------------------------------------------------------


def lower_where(e: A.Expr, ctx: Ctx) -> M.Node:
    """A ``where`` expression as predicates where it can, else a :class:`Condition`."""
    if isinstance(e, A.And | A.Or):
        cls = M.And if isinstance(e, A.And) else M.Or
        return M.connective(cls, (lower_where(a, ctx) for a in e.args))
    if isinstance(e, A.Not):
        return M.Not(lower_where(e.arg, ctx))
    if isinstance(e, A.Bool):
        return M.Const(e.value)
    node = _predicate(e, ctx)
    return node if node is not None else condition(e, ctx)


def condition(e: A.Expr, ctx: Ctx) -> M.Condition:
    t = term(e)
    return M.Condition(t, ctx.text(e), M.term_fields(t), phase=ctx.phase,
                     stage=ctx.stage, span=ctx.span(e))


def _pred(e: A.Expr, ctx: Ctx, fld: str, op: Op, values: tuple[M.Value, ...],
          cased: bool = True) -> M.Predicate:
    return M.Predicate(fld, op, values, cased=cased, phase=ctx.phase, stage=ctx.stage,
                     text=ctx.text(e), span=ctx.span(e))


def _negate(node: M.Node, negated: bool) -> M.Node:
    return M.Not(node) if negated else node


def _predicate(e: A.Expr, ctx: Ctx) -> M.Node | None:
    if isinstance(e, A.BinOp) and e.op in CMP_OPS:
        return _comparison(e, ctx)
    if isinstance(e, A.Like):
        return _like(e, ctx)
    if isinstance(e, A.In) and isinstance(e.value, A.Bool) and not e.negated:
        # ``true in (starts_with(a, "x"), b == 1)``: any of the conditions holds
        alts = [lower_where(i, ctx) for i in e.items]
        return M.Or(tuple(alts)) if e.value.value else M.Or(tuple(M.Not(a) for a in alts))
    if isinstance(e, A.In):
        f = field_of(e.value)
        lits = [literal(i) for i in e.items]
        vals = tuple(v for v in lits if not isinstance(v, _NotLiteral))
        if f is None or len(vals) != len(lits):
            return None
        return _negate(_pred(e, ctx, f[0], Op.IN, vals, f[1]), e.negated)
    if isinstance(e, A.IsNull):
        f = field_of(e.value)
        if f is None:
            return None
        return _negate(_pred(e, ctx, f[0], Op.EXISTS, ()), not e.negated)
    if isinstance(e, A.FuncCall):
        return _function(e, ctx)
    if isinstance(e, A.Field):
        return _pred(e, ctx, e.name, Op.EQ, (True,))
    return None


def _comparison(e: A.BinOp, ctx: Ctx) -> M.Node | None:
    op = CMP_OPS[e.op]
    lhs, rhs = e.left, e.right
    if field_of(lhs) is None and field_of(rhs) is not None:
        lhs, rhs, op = rhs, lhs, FLIP[op]
    f = field_of(lhs)
    if f is None:
        return None
    cased = f[1] and e.op != "=~"
    value = literal(rhs)
    if value is None:  # ``f == null`` is null, never true: not a predicate
        return None
    if not isinstance(value, _NotLiteral):
        return _pred(e, ctx, f[0], op, (value,), cased)
    if isinstance(rhs, A.Field) and op in (Op.EQ, Op.NE) and f[1]:
        return _pred(e, ctx, f[0], op, (M.FieldRef(rhs.name),), cased)
    return None


def _like(e: A.Like, ctx: Ctx) -> M.Node | None:
    f = field_of(e.value)
    if f is None or not all(isinstance(p, A.Str) for p in e.patterns):
        return None
    pats = [p.value for p in e.patterns if isinstance(p, A.Str)]
    if not e.regex:
        node: M.Node = _pred(e, ctx, f[0], Op.WILDCARD, tuple(like_pattern(p) for p in pats),
                           f[1])
        return _negate(node, e.negated)
    try:
        rx = tuple(lucene_regex(p, ignore_case=not f[1]) for p in pats)
    except RegexUnsupported as exc:
        ctx.problems.append(M.Problem(f"rlike pattern kept as a condition: {exc}", "warning",
                                    ctx.span(e), "regex-untranslatable"))
        return None
    return _negate(_pred(e, ctx, f[0], Op.REGEX, rx, f[1]), e.negated)


def _function(e: A.FuncCall, ctx: Ctx) -> M.Node | None:
    a = e.args
    f = field_of(a[0]) if a else None
    if e.name in STRING_FUNCTIONS and f is not None and len(a) == 2 \
            and isinstance(a[1], A.Str):
        return _pred(e, ctx, f[0], STRING_FUNCTIONS[e.name], (a[1].value,), f[1])
    nets = [x.value for x in a[1:] if isinstance(x, A.Str)]
    if e.name == "cidr_match" and f is not None and f[1] and nets and len(nets) == len(a) - 1:
        return _pred(e, ctx, f[0], Op.CIDR, tuple(nets))
    return None


# ---- commands ------------------------------------------------------------------------------


@dataclass
class CommandResult:
    kind: M.StageKind = M.StageKind.TRANSFORM
    condition: M.Node | None = None
    by: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def output_name(a: A.Assign, ctx: Ctx) -> str:
    """The column an ``[name =] expr`` makes: its name, the field, or the text as written."""
    if a.name is not None:
        return a.name
    if isinstance(a.expr, A.Field):
        return a.expr.name
    return ctx.text(a.expr)


def made_by(c: A.Command, ctx: Ctx) -> list[str]:
    """The fields a command creates (eval, stats outputs, dissect/grok keys, enrich, ...)."""
    if c.name in ("eval", "row"):
        return [output_name(a, ctx) for a in c.assigns]
    if c.name in AGGREGATING:
        return [output_name(a, ctx) for a in c.assigns]
    if c.name == "dissect":
        out: list[str] = []
        for k in _DISSECT_KEY.findall(c.patterns[0].value):
            k = k.lstrip("+*&").split("->")[0].split("/")[0]
            if k and not k.startswith("?") and k not in out:
                out.append(k)
        return out
    if c.name == "grok":
        return [m[0] or m[1] for p in c.patterns for m in _GROK_NAME.findall(p.value)]
    if c.name == "enrich":
        return [a.name or output_name(a, ctx) for a in c.assigns]
    if c.name == "completion":
        return [a.name or "completion" for a in c.assigns]
    if c.name == "change_point":
        return list(c.names) or ["type", "pvalue"]
    if c.name == "rename":
        return [p.new for p in c.renames if "*" not in p.new]
    return []


def lower_command(c: A.Command, ctx: Ctx) -> CommandResult:
    res = CommandResult()
    if c.name in GENERATING:
        res.kind = M.StageKind.GENERATE
    elif c.name == "where" and c.expr is not None:
        res.kind = M.StageKind.FILTER
        cond = lower_where(c.expr, ctx)
        res.condition = None if cond == M.Const(True) else cond
    elif c.name in AGGREGATING:
        res.kind = M.StageKind.AGGREGATE
        res.by = tuple(output_name(a, ctx) for a in c.by)
        if any(a.where is not None for a in c.assigns):
            res.notes = ("an aggregation has its own where filter (not a stage filter)",)
    elif c.name == "fork":
        res = _fork(c, ctx)
    elif c.name == "enrich" and not c.assigns:
        res.notes = (f"adds every enrich field of policy {c.target!r} (not known here)",)
    elif c.name == "lookup join":
        res.notes = (f"adds the fields of lookup index {c.target!r} (not known here)",)
    elif c.name not in LOWERED_COMMANDS:
        res.kind = M.StageKind.OPAQUE
        ctx.problems.append(M.Problem(f"ES|QL command {c.name!r} is not understood; kept as "
                                    "written", "unsupported", ctx.span(c), "unknown-command"))
    ctx.compute(made_by(c, ctx))
    return res


def _fork(c: A.Command, ctx: Ctx) -> CommandResult:
    """A fork's rows are the union of its branches: the OR of the branches' filters, when the
    branches only filter and reshape rows; else an opaque condition."""
    if not all(x.name in FORK_ROW_COMMANDS for b in c.branches for x in b):
        return CommandResult(M.StageKind.FILTER, M.Opaque(ctx.text(c), "fork branch that does "
                                                      "more than filter rows",
                                                      stage=ctx.stage, span=ctx.span(c)))
    alts: list[M.Node | None] = []
    for b in c.branches:
        conds: list[M.Node | None] = [lower_where(x.expr, ctx) for x in b
                                    if x.name == "where" and x.expr is not None]
        alts.append(M.conjoin(conds))
    if any(a is None for a in alts):
        return CommandResult(M.StageKind.TRANSFORM, None)
    return CommandResult(M.StageKind.FILTER, M.Or(tuple(a for a in alts if a is not None)))


LOWERED_COMMANDS = frozenset({
    "from", "ts", "row", "show", "where", "eval", "stats", "inline stats", "keep", "drop",
    "rename", "dissect", "grok", "mv_expand", "enrich", "lookup join", "sort", "limit",
    "sample", "completion", "change_point", "fork",
})

