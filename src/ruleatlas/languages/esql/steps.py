"""ES|QL commands as typed pipeline steps (``Analysis.steps``, :mod:`ruleatlas.model`), the
form the engine replays (``engine/esql_semantics.py``).

One step (sometimes two) per command, in query order, each with its stage index:

* ``from``/``ts``: no step (the index patterns are the source: routing reads them);
* ``where``: :class:`Filter` whose node is one :class:`Condition` holding the whole expression
  as a :class:`Call` tree (``term``), so the engine evaluates ES|QL's own three-valued logic;
  the stage keeps the predicate tree (indicators, coverage, the pre-filter's anchors);
* ``eval``: :class:`Eval` (``name = term``, left to right);
* ``stats``/``inline stats``: :class:`Aggregate` (``command`` as written, functions as
  :class:`AggFunc` with ES|QL's names, ``alias`` the output column: its name, else the text as
  written). An argument or grouping that is not a plain field, and a per-aggregation ``where``,
  are first computed by an :class:`Eval` of the same stage into a column named by the text as
  written (``agg(x) where c`` reads ``case(c, x, null)``: every ES|QL aggregation but
  ``count(*)`` skips nulls, and ``count(*) where c`` counts ``case(c, true, null)``);
* ``rename``: :class:`Rename`; ``dissect``/``grok``: :class:`Rex` with ``mode`` ``dissect`` /
  ``grok`` and the pattern as written (``dissect`` options: ``max_match`` holds
  ``append_separator``'s value);
* ``keep``, ``drop``, ``mv_expand``, ``sort``, ``limit`` and every other command:
  :class:`OtherCommand` whose ``outputs`` are the command's arguments as written (the column
  names or patterns of ``keep``/``drop``/``mv_expand``, ``sort``'s keys as ``field``,
  ``field desc``, ``field desc nulls last``, ``limit``'s count); the engine refuses the
  commands it does not replay.
"""

from __future__ import annotations

from ruleatlas.languages.esql import ast as A
from ruleatlas.languages.esql.lower import AGGREGATING, Ctx, output_name, term
from ruleatlas.model import (
    AggFunc,
    Aggregate,
    Call,
    Condition,
    Eval,
    FieldRef,
    Filter,
    OtherCommand,
    Rename,
    Rex,
    Step,
    Term,
    term_fields,
)


def command_steps(c: A.Command, idx: int, ctx: Ctx) -> list[Step]:
    """The steps of one command (``idx``: its stage)."""
    if c.name in ("from", "ts"):
        return []
    if c.name == "where" and c.expr is not None:
        t = term(c.expr)
        return [Filter(idx, Condition(t, ctx.text(c.expr), term_fields(t), stage=idx,
                                      span=ctx.span(c.expr)))]
    if c.name == "eval":
        return [Eval(idx, tuple((output_name(a, ctx), term(a.expr)) for a in c.assigns))]
    if c.name in AGGREGATING:
        return _aggregate(c, idx, ctx)
    if c.name == "rename":
        return [Rename(idx, tuple((p.old, p.new) for p in c.renames))]
    if c.name in ("dissect", "grok"):
        return _extract(c, idx, ctx)
    if c.name == "sort":
        keys = tuple(ctx.text(k.expr) + (" desc" if k.order == "desc" else "")
                     + (f" nulls {k.nulls}" if k.nulls else "") for k in c.keys)
        return [OtherCommand(idx, "sort", keys)]
    if c.name in ("limit", "sample"):
        return [OtherCommand(idx, c.name, tuple(ctx.text(a) for a in c.args))]
    return [OtherCommand(idx, c.name, tuple(c.names))]


def _aggregate(c: A.Command, idx: int, ctx: Ctx) -> list[Step]:
    pre: list[tuple[str, Term]] = []
    funcs: list[AggFunc] = []
    problem: str | None = None
    for a in c.assigns:
        alias = output_name(a, ctx)
        e = a.expr
        if not isinstance(e, A.FuncCall) or (len(e.args) > 1 and e.name != "count_distinct"):
            problem = problem or f"aggregation {ctx.text(e)!r} is not one function of one value"
            continue
        arg: str | None = "*" if e.star else None
        if e.args:
            x = e.args[0]
            arg = x.name if isinstance(x, A.Field) else ctx.text(x)
            if not isinstance(x, A.Field):
                pre.append((arg, term(x)))
        if a.where is not None:
            cond = term(a.where)
            value: Term = True if arg in (None, "*") else FieldRef(str(arg))
            arg = f"{ctx.text(e)} where {ctx.text(a.where)}"
            pre.append((arg, Call("case", (cond, value, None))))
        funcs.append(AggFunc(e.name, arg, alias))
    by: list[str] = []
    for b in c.by:
        name = output_name(b, ctx)
        if not isinstance(b.expr, A.Field) or b.name is not None:
            pre.append((name, term(b.expr)))
        by.append(name)
    out: list[Step] = [Eval(idx, tuple(pre))] if pre else []
    out.append(Aggregate(idx, c.name, tuple(by), tuple(funcs), problem=problem))
    return out


def _extract(c: A.Command, idx: int, ctx: Ctx) -> list[Step]:
    if c.expr is None or not c.patterns:
        return [OtherCommand(idx, c.name)]
    pre: list[Step] = []
    src = c.expr.name if isinstance(c.expr, A.Field) else ctx.text(c.expr)
    if not isinstance(c.expr, A.Field):
        pre.append(Eval(idx, ((src, term(c.expr)),)))
    if c.name == "grok" and len(c.patterns) > 1:
        return [OtherCommand(idx, "grok", ("several patterns",))]
    sep: str | int = 1
    for o in c.assigns:
        if o.name == "append_separator" and isinstance(o.expr, A.Str):
            sep = o.expr.value
        else:
            return [OtherCommand(idx, c.name, (f"option {o.name}",))]
    return [*pre, Rex(idx, src, c.patterns[0].value, sep, c.name)]


def query_steps(tree: A.Query, ctx: Ctx) -> tuple[Step, ...]:
    """Every command's steps, in order."""
    out: list[Step] = []
    for idx, c in enumerate(tree.commands):
        out.extend(command_steps(c, idx, ctx))
    return tuple(out)
