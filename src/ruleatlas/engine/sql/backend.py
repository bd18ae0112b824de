"""What every SQL backend shares: which rules run as SQL, routing by event kind, one query
per kind with one boolean per rule, findings back as (rule id, file, position).

A backend (:mod:`.spark`, :mod:`.duckdb`) gives the table's column names, its event kinds and a
way to run one SQL text; :func:`plan_queries` does the rest:

1. each prepared rule (``engine.runner.prepare``) is **event-level** or falls back: aggregations,
   SPL ``eval``/``rex`` pipeline steps, result filters and sequences need the backend-neutral
   plan (``engine/plan.py``, not built yet) and are reported as "falls back: needs the plan
   (...)";
2. per event kind present in the data, the rules the local engine would route there (route
   keys, the Sigma ``product`` gate) are compiled under that kind's field map; a rule that
   cannot be compiled for some kind falls back as a whole, with the compiler's reasons;
3. per kind, one ``SELECT _file, _position, EXPLODE(ARRAY_COMPACT(ARRAY(IF(rule_0, 0, NULL),
   ...)))`` over the kind's rows (``CHUNKS`` rules per select, all selects one ``UNION ALL``), so
   the whole catalog is one job.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlglot import exp

from ruleatlas.coverage.routing import Key
from ruleatlas.engine.runner import EngineRule, product_ok
from ruleatlas.engine.sql.columnar import KIND_COLUMN, kind_key
from ruleatlas.engine.sql.compiler import COMPILERS, TEXT_COLUMN, PredicateCompiler, Table
from ruleatlas.model import StageKind

# rules per SELECT, per dialect (measured on the regression data: Spark 200 per select runs in
# a third of the time of 25 per select, whose many union branches cost more to plan)
CHUNKS: dict[str, int] = {"spark": 200, "duckdb": 200}
VIEW = "events"


@dataclass(frozen=True, slots=True)
class SqlFinding:
    rule_id: str
    file: str
    position: int


@dataclass(slots=True)
class SqlPlan:
    """The queries of one run, the rules they hold, and the rules that fall back (why)."""

    queries: list[str] = field(default_factory=list)
    rules: list[EngineRule] = field(default_factory=list)  # index = the query's rule number
    fallback: dict[str, str] = field(default_factory=dict)  # rule id -> reason
    kinds: int = 0
    compiled: int = 0  # (rule, kind) pairs compiled


def needs_plan(er: EngineRule) -> str | None:
    """Why a runnable rule is not event-level (the backend-neutral plan would run it)."""
    a = er.analysis
    if er.agg is not None or any(s.kind is StageKind.AGGREGATE for s in a.stages):
        return "falls back: needs the plan (aggregation)"
    if a.sequence is not None:
        return "falls back: needs the plan (sequence)"
    if er.plan is not None and er.plan.steps:
        return "falls back: needs the plan (eval/rex/rename steps)"
    if er.result is not None or er.result_steps is not None or a.result_condition is not None:
        return "falls back: needs the plan (result filter)"
    if er.joins:
        return "falls back: needs the plan (join)"
    return None


def routed(rules: Sequence[EngineRule], key: Key) -> list[int]:
    """Indexes of the rules the local engine runs on events of ``key`` (``Engine._routed``
    plus the product gate)."""
    return [i for i, er in enumerate(rules) if er.route.accepts(key) and product_ok(er, key)]


def plan_queries(rules: Iterable[EngineRule], columns: Sequence[str], kinds: Iterable[str],
                 dialect: str, chunk: int | None = None) -> SqlPlan:
    """Compile the event-level rules for every kind; the SQL texts to run (one per chunk of a
    kind's rules; a runner may run them as one ``UNION ALL``)."""
    out = SqlPlan()
    chunk = chunk or CHUNKS[dialect]
    event_level = _event_level(rules, out)
    table = Table.from_names(columns)
    comp_cls = COMPILERS[dialect]
    cache: dict[tuple[int, tuple[tuple[str, str], ...]], tuple[str, bool] | None] = {}
    groups: dict[tuple[str, ...], list[tuple[int, str, bool]]] = {}
    shared: dict[int, list[str]] = {}  # rules routed everywhere with one field map: their kinds

    def compiled(i: int, fmap: Mapping[str, str]) -> tuple[str, bool] | None:
        er = event_level[i]
        ck = (i, tuple(sorted(fmap.items())))
        if ck not in cache:  # a rule compiles once per field map, not once per kind
            c: PredicateCompiler = comp_cls(table, fmap)
            got = c.compile(er.analysis.condition)
            out.compiled += 1
            if not got.ok:
                out.fallback[er.rule.id] = "; ".join(got.unsupported)
            cache[ck] = (c.sql(got.expression), got.uses_text) if got.ok else None
        return cache[ck]

    for kind in sorted(kinds):
        key = kind_key(kind)
        out.kinds += 1
        for i in routed(event_level, key):
            er = event_level[i]
            if er.rule.id in out.fallback:
                continue
            if er.route.any and not er.route.field_maps:
                shared.setdefault(i, []).append(kind)  # one select over all its kinds
                continue
            hit = compiled(i, er.route.field_map(key))
            if hit is not None:
                groups.setdefault((kind,), []).append((i, *hit))
    for i, ks in shared.items():
        hit = compiled(i, event_level[i].route.common_map)
        if hit is not None:
            groups.setdefault(tuple(ks), []).append((i, *hit))
    index: dict[int, int] = {}
    text = comp_cls(table).text_expression()
    wrap = _wrapper(dialect)
    for group_kinds, items in groups.items():
        items = [x for x in items if event_level[x[0]].rule.id not in out.fallback]
        for i, _, _ in items:
            if i not in index:
                index[i] = len(out.rules)
                out.rules.append(event_level[i])
        for start in range(0, len(items), chunk):
            part = items[start:start + chunk]
            source = _source(group_kinds, text if any(u for _, _, u in part) else None,
                             dialect)
            cases = ", ".join(f"CASE WHEN {sql} THEN {index[i]} END" for i, sql, _ in part)
            out.queries.append(f"SELECT _file, _position, {wrap.replace(HOLE, cases)} AS _rule "
                               f"FROM {source}")
    return out


def _event_level(rules: Iterable[EngineRule], out: SqlPlan) -> list[EngineRule]:
    event_level: list[EngineRule] = []
    for er in rules:
        if not er.runnable:
            out.fallback[er.rule.id] = f"not runnable: {er.reason}"
            continue
        why = needs_plan(er)
        if why:
            out.fallback[er.rule.id] = why
        else:
            event_level.append(er)
    return event_level


HOLE = "__RULES__"


def _wrapper(dialect: str) -> str:
    """``EXPLODE(ARRAY_COMPACT(ARRAY(__RULES__)))`` in the dialect (``UNNEST(LIST_FILTER(...))``
    for DuckDB), generated by sqlglot once; the rules' CASEs go in the hole."""
    e = exp.Explode(this=exp.ArrayCompact(this=exp.Array(expressions=[exp.column(HOLE)])))
    return e.sql(dialect=dialect)


def _source(kinds: Sequence[str], text: exp.Expr | None, dialect: str) -> str:
    """The rows of these kinds, with the joined text column when a keyword rule reads it."""
    col = exp.column(KIND_COLUMN)
    cond = (exp.EQ(this=col, expression=exp.Literal.string(kinds[0])) if len(kinds) == 1
            else exp.In(this=col, expressions=[exp.Literal.string(k) for k in kinds]))
    where = cond.sql(dialect=dialect)
    if text is None:
        return f"{VIEW} WHERE {where}"
    t = exp.alias_(text, TEXT_COLUMN, quoted=True).sql(dialect=dialect)
    return f"(SELECT *, {t} FROM {VIEW} WHERE {where}) AS _k"


def findings(plan: SqlPlan, rows: Iterable[tuple[str, int, int]]) -> list[SqlFinding]:
    return [SqlFinding(plan.rules[r].rule.id, f, int(p)) for f, p, r in rows]
