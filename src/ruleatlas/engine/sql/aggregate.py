"""SPL ``stats`` aggregations as SQL: ``GROUP BY`` the ``by`` fields, the functions that map
exactly, the group's first event, and the result filter as ``HAVING`` (an outer ``WHERE`` on the
grouped rows) when it compiles.

The local engine (``engine.aggregate.Aggregator``) feeds a rule's aggregation every event that
passes its condition, reading the rule's names through the kind's field map (``by Image`` reads
``NewProcessName`` on Security 4688 when ``Image`` is a field of the condition), drops the
events without a value for some ``by`` field, groups by the values' texts and emits one row per
group with the group's **first** event. The SQL query does the same over the union of the
rule's branches (one per field map, each over that map's kinds):

====================  =======================================================================
local                 SQL
====================  =======================================================================
``count``             ``COUNT(*)``; ``count(x)``: ``COUNT(x)`` (a scalar column)
``dc(x)``             ``COUNT(DISTINCT x)`` (columns hold the values' texts)
``values(x)``         ``ARRAY_SORT(COLLECT_SET(x))`` / ``LIST_SORT(LIST_DISTINCT(LIST(x)))``
                      (texts sorted by code point, as Python sorts them)
``min/max(_time)``    ``MIN/MAX(_epoch)`` (``_epoch``: ``_time`` as the engine computes it, at
                      convert time)
first event           ``MIN(_seq)`` with ``MIN_BY(_file, _seq)`` / ``ARG_MIN``
====================  =======================================================================

Anything else falls back with its reason: ``eventstats``, a chain of aggregations, ``bin``
spans, other functions (``min``/``max`` of other fields order numbers before text; ``sum``,
``avg``, ``earliest``...), ``by _time``, a ``by`` field or argument that is a list in the data.
The rows come back to the driver, where the rule's own result filter or result steps (``where``,
``rename``, ``eval`` after the aggregation) run on each, exactly as in the local engine; the
SQL ``HAVING`` only prunes rows early.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sqlglot import exp

from ruleatlas.engine.runner import EngineRule
from ruleatlas.engine.sql.columnar import EPOCH, SEQ
from ruleatlas.engine.sql.compiler import COMPILERS, LIST_SUFFIX, Table

FMap = tuple[tuple[str, str], ...]
INT, FLOAT, TEXT, LIST = "int", "float", "text", "list"
FIRST_SEQ, FIRST_FILE, FIRST_POSITION = "_first_seq", "_first_file", "_first_position"
SUPPORTED = "count, dc, values, min(_time), max(_time)"


@dataclass(frozen=True, slots=True)
class Branch:
    """One compiled condition of a rule: the kinds it runs on and their field map."""

    kinds: tuple[str, ...]
    fmap: Mapping[str, str]
    sql: str
    uses_text: bool


@dataclass(frozen=True, slots=True)
class AggQuery:
    """One aggregating rule's query; its rows are the outputs (``outputs``: name and type, in
    select order) then the first event's ``_seq``, ``_file``, ``_position``."""

    rule: EngineRule
    sql: str
    outputs: tuple[tuple[str, str], ...]
    having: bool  # the result filter runs in SQL too


def agg_problem(er: EngineRule) -> str | None:
    """Why a rule's aggregation cannot be SQL, whatever the table (None: it can)."""
    spec = er.agg
    assert spec is not None
    if spec.command != "stats":
        return f"falls back: no SQL form yet ({spec.command})"
    if er.chain:
        return "falls back: no SQL form yet (a chain of aggregations)"
    if er.bins:
        return "falls back: no SQL form yet (bin/bucket span)"
    if "_time" in spec.by:
        return "falls back: no SQL form yet (by _time)"
    for f in spec.funcs:
        ok = (f.fn in ("count", "dc", "values") and f.arg != "_time") or (
            f.fn in ("min", "max") and f.arg == "_time")
        if not ok:
            return (f"falls back: aggregation function {f.fn}({f.arg or ''}) has no exact SQL "
                    f"form yet ({SUPPORTED} do)")
    names = [f.name for f in spec.funcs] + list(spec.by)
    if len(set(names)) < len(names) or any(n.startswith("_") for n in names):
        return "falls back: aggregation output names clash"
    return None


def _col(name: str, table: Table) -> exp.Expr:
    if name in table.columns:
        return table.col(name)
    return exp.Cast(this=exp.Null(), to=exp.DataType.build("VARCHAR"))


def _input(er: EngineRule, name: str, fmap: Mapping[str, str], table: Table) -> exp.Expr:
    """What the aggregation reads for ``name`` (``runner._mapped``: a condition field reads its
    mapped name when the event has it)."""
    mapped = fmap.get(name, name)
    if name in er.fields and mapped != name and mapped in table.columns:
        return exp.Coalesce(this=table.col(mapped),
                            expressions=[_col(name, table)])
    return _col(name, table)


def _func(fn: str, arg: str | None, dialect: str) -> tuple[exp.Expr, str]:
    col = exp.column(f"_a_{arg}", quoted=True) if arg else None
    if fn == "count":
        return (exp.Count(this=col if col is not None else exp.Star())), INT
    assert col is not None
    if fn == "dc":
        return exp.Count(this=exp.Distinct(expressions=[col])), INT
    if fn == "values":
        if dialect == "duckdb":
            return exp.func("LIST_SORT", exp.func("LIST_DISTINCT", exp.func("LIST", col))), LIST
        return exp.func("ARRAY_SORT", exp.func("COLLECT_SET", col)), LIST
    e = exp.column(EPOCH, quoted=True)
    return (exp.Min(this=e) if fn == "min" else exp.Max(this=e)), FLOAT


def agg_query(er: EngineRule, branches: Sequence[Branch], table: Table, dialect: str,
              source: Callable[[tuple[str, ...], bool], str]) -> AggQuery | str:
    """The rule's query, or the reason it falls back (a list field in the data)."""
    spec = er.agg
    assert spec is not None
    args = sorted({f.arg for f in spec.funcs if f.arg and f.arg != "_time"})
    for b in branches:
        for n in (*spec.by, *args):
            if {n, b.fmap.get(n, n)} & table.lists:
                return f"falls back: aggregation reads {n}, a list in some events"
    parts = []
    for b in branches:
        cols = [exp.alias_(_input(er, n, b.fmap, table), f"_b{i}", quoted=True)
                for i, n in enumerate(spec.by)]
        cols += [exp.alias_(_input(er, n, b.fmap, table), f"_a_{n}", quoted=True) for n in args]
        sel = "".join(c.sql(dialect) + ", " for c in cols)
        src = source(b.kinds, b.uses_text)  # ``events WHERE <kinds>`` or a sub-select
        cond = f"{src} AND ({b.sql})" if not src.startswith("(") else f"{src} WHERE {b.sql}"
        parts.append(f"SELECT {sel}_file, _position, {SEQ}, {EPOCH} FROM {cond}")
    by = [exp.column(f"_b{i}", quoted=True) for i in range(len(spec.by))]
    outs: list[tuple[str, str]] = [(n, TEXT) for n in spec.by]
    sel_parts = [exp.alias_(c, n, quoted=True) for c, n in zip(by, spec.by, strict=True)]
    for f in spec.funcs:
        e, typ = _func(f.fn, f.arg, dialect)
        if typ == INT:  # as text: what the result filter reads (to_text of the count)
            e = exp.Cast(this=e, to=exp.DataType.build("VARCHAR"))
        sel_parts.append(exp.alias_(e, f.name + (LIST_SUFFIX if typ == LIST else ""),
                                    quoted=True))
        outs.append((f.name, typ))
    first = "ARG_MIN" if dialect == "duckdb" else "MIN_BY"
    seq = exp.column(SEQ).sql(dialect)
    select = ", ".join(p.sql(dialect) for p in sel_parts)
    where = " AND ".join(f"{c.sql(dialect)} IS NOT NULL" for c in by) or "TRUE"
    group = f" GROUP BY {', '.join(c.sql(dialect) for c in by)}" if by else ""
    grouped = (f"SELECT {select}, MIN({seq}) AS {FIRST_SEQ}, {first}(_file, {seq}) AS "
               f"{FIRST_FILE}, {first}(_position, {seq}) AS {FIRST_POSITION} FROM ("
               + " UNION ALL ".join(parts) + f") AS _u WHERE {where}{group}")
    having = _having(er, outs, dialect)
    sql = grouped if having is None else f"SELECT * FROM ({grouped}) AS _g WHERE {having}"
    return AggQuery(er, sql, tuple(outs), having is not None)


def _having(er: EngineRule, outs: Sequence[tuple[str, str]], dialect: str) -> str | None:
    """The result condition over the grouped rows (the texts the local row's values read as),
    when it is a plain filter that compiles; None otherwise (Python filters alone)."""
    from ruleatlas.engine.pipeline import fields_of

    cond = er.analysis.result_condition
    if er.result_steps is not None or cond is None:
        return None
    if set(fields_of(cond)) & {n for n, t in outs if t == FLOAT}:
        return None  # a double's SQL text is not Python's
    names = [n + LIST_SUFFIX if t == LIST else n for n, t in outs if t != FLOAT]
    c = COMPILERS[dialect](Table.from_names(names))
    got = c.compile(cond)
    if not got.ok or got.uses_text:
        return None
    return c.sql(got.expression)
