"""What every SQL backend shares: which rules run as SQL, routing by event kind, the event
queries (one boolean per rule) and the aggregation queries.

A backend (:mod:`.spark`, :mod:`.duckdb`) gives the table's column names, its event kinds and a
way to run SQL; :func:`plan_queries` does the rest:

1. each prepared rule (``engine.runner.prepare``) runs as SQL or falls back (:func:`needs_plan`:
   SPL ``eval``/``rex``/``tstats`` steps before the filter, sequences, joins, Elastic rules on
   the ECS view, aggregations :mod:`.aggregate` cannot map); not-runnable rules are listed apart;
2. per rule, the kinds present that the local engine would route to it (route keys, the Sigma
   ``product`` gate), grouped by the field map each kind gives: one compile per map; a rule that
   cannot be compiled under some map falls back as a whole, with the compiler's reasons;
3. rules sharing kinds share selects: ``SELECT _file, _position, _seq,
   EXPLODE(ARRAY_COMPACT(ARRAY(CASE WHEN rule_0 THEN 0 END, ...)))`` over those kinds' rows
   (``CHUNKS`` rules per select); each aggregating rule gets its own ``GROUP BY`` query.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlglot import exp

from ruleatlas.coverage.routing import Key
from ruleatlas.engine.runner import EngineRule, product_ok
from ruleatlas.engine.sql.aggregate import AggQuery, Branch, FMap, agg_problem, agg_query
from ruleatlas.engine.sql.columnar import KIND_COLUMN, SEQ, kind_key
from ruleatlas.engine.sql.compiler import COMPILERS, TEXT_COLUMN, PredicateCompiler, Table
from ruleatlas.model import StageKind

# rules per SELECT, per dialect (measured on the regression data: Spark 200 per select runs in
# a third of the time of 25 per select, whose many union branches cost more to plan)
CHUNKS: dict[str, int] = {"spark": 200, "duckdb": 200}
VIEW = "events"
STEP_NAMES = {"derive": "tstats datamodel", "command": "other command"}


@dataclass(frozen=True, slots=True)
class SqlFinding:
    rule_id: str
    file: str
    position: int
    seq: int = 0  # the event's ``_seq``: the order the local engine reads it in


@dataclass(slots=True)
class SqlPlan:
    """The queries of one run, the rules they hold, and the rules that fall back (why)."""

    queries: list[str] = field(default_factory=list)
    rules: list[EngineRule] = field(default_factory=list)  # index = the query's rule number
    aggregations: list[AggQuery] = field(default_factory=list)  # one query per rule
    fallback: dict[str, str] = field(default_factory=dict)  # rule id -> reason
    not_runnable: dict[str, str] = field(default_factory=dict)  # by the local engine either
    kinds: int = 0
    compiled: int = 0  # (rule, field map) pairs compiled

    @property
    def in_sql(self) -> int:
        """Rules that run as SQL."""
        return len(self.rules) + len(self.aggregations)


def needs_plan(er: EngineRule) -> str | None:
    """Why a runnable rule cannot run as SQL at all (whatever the table): SPL steps, sequences,
    joins, and aggregations :func:`.aggregate.agg_problem` refuses. A result filter is no
    reason: it runs in Python on the rows SQL returns (the rebuilt event, or the group's
    row), as the local engine runs it."""
    a = er.analysis
    if er.view != "raw" or er.semantics != "default":
        return ("falls back: Elastic rule (the ECS view and Elasticsearch semantics are not "
                "compiled to SQL yet)")
    if er.collects:
        return "falls back: no SQL form yet (sequence, threshold or new terms over events)"
    if a.sequence is not None:
        return "falls back: no SQL form yet (sequence)"
    if er.plan is not None and er.plan.steps:
        kinds = sorted({STEP_NAMES.get(st.kind, st.kind) for st in er.plan.steps
                        if st.kind != "filter"} or {"filter"})
        return f"falls back: no SQL form yet ({'/'.join(kinds)} steps before the filter)"
    if er.joins:
        return "falls back: no SQL form yet (join)"
    if er.agg is not None:
        return agg_problem(er)
    if any(s.kind is StageKind.AGGREGATE for s in a.stages):
        return "falls back: no SQL form yet (aggregation)"
    if er.result_steps is not None:
        return "falls back: no SQL form yet (result steps)"
    return None


def routed(rules: Sequence[EngineRule], key: Key) -> list[int]:
    """Indexes of the rules the local engine runs on events of ``key`` (``Engine._routed``
    plus the product gate)."""
    return [i for i, er in enumerate(rules) if er.route.accepts(key) and product_ok(er, key)]


def branches(rules: Sequence[EngineRule], kinds: Iterable[str]) -> list[dict[FMap, list[str]]]:
    """Per rule, its field maps and the kinds (present in the data) each applies to: a rule
    compiles once per field map and runs in one select over all that map's kinds."""
    out: list[dict[FMap, list[str]]] = [{} for _ in rules]
    for kind in sorted(kinds):
        key = kind_key(kind)
        for i in routed(rules, key):
            fmap = tuple(sorted(rules[i].route.field_map(key).items()))
            out[i].setdefault(fmap, []).append(kind)
    return out


def plan_queries(rules: Iterable[EngineRule], columns: Sequence[str], kinds: Iterable[str],
                 dialect: str, chunk: int | None = None,
                 aliases: Mapping[str, str] | None = None) -> SqlPlan:
    """Compile the SQL-able rules for the kinds present; the event-level SQL texts (one per
    chunk of rules sharing their kinds; a runner may run them as one ``UNION ALL``) and one
    aggregation query per aggregating rule."""
    out = SqlPlan()
    chunk = chunk or CHUNKS[dialect]
    sqlable = _sqlable(rules, out)
    table = Table.from_names(columns, aliases)
    comp_cls = COMPILERS[dialect]
    kinds = sorted(kinds)
    out.kinds = len(kinds)
    per_rule = branches(sqlable, kinds)
    groups: dict[tuple[str, ...], list[tuple[int, str, bool]]] = {}
    aggs: dict[int, list[Branch]] = {}
    for i, er in enumerate(sqlable):
        compiled: list[Branch] = []
        for fmap, ks in per_rule[i].items():
            c: PredicateCompiler = comp_cls(table, dict(fmap))
            got = c.compile(er.analysis.condition)
            out.compiled += 1
            if not got.ok:
                out.fallback[er.rule.id] = "; ".join(got.unsupported)
                break
            compiled.append(Branch(tuple(ks), dict(fmap), c.sql(got.expression), got.uses_text))
        if er.rule.id in out.fallback or not compiled:
            continue
        if er.agg is not None:
            aggs[i] = compiled
            continue
        for b in compiled:
            groups.setdefault(b.kinds, []).append((i, b.sql, b.uses_text))
    index: dict[int, int] = {}
    text = comp_cls(table).text_expression()
    wrap = _wrapper(dialect)
    for group_kinds, items in groups.items():
        for i, _, _ in items:
            if i not in index:
                index[i] = len(out.rules)
                out.rules.append(sqlable[i])
        for start in range(0, len(items), chunk):
            part = items[start:start + chunk]
            source = _source(group_kinds, text if any(u for _, _, u in part) else None,
                             dialect)
            cases = ", ".join(f"CASE WHEN {sql} THEN {index[i]} END" for i, sql, _ in part)
            out.queries.append(f"SELECT _file, _position, {SEQ}, {wrap.replace(HOLE, cases)} "
                               f"AS _rule FROM {source}")
    for i, bs in aggs.items():
        q = agg_query(sqlable[i], bs, table, dialect,
                      lambda ks, u: _source(ks, text if u else None, dialect))
        if isinstance(q, str):
            out.fallback[sqlable[i].rule.id] = q
        else:
            out.aggregations.append(q)
    return out


def _sqlable(rules: Iterable[EngineRule], out: SqlPlan) -> list[EngineRule]:
    sqlable: list[EngineRule] = []
    for er in rules:
        if not er.runnable:
            out.not_runnable[er.rule.id] = er.reason or ""
            continue
        er.ready()
        why = needs_plan(er)
        if why:
            out.fallback[er.rule.id] = why
        else:
            sqlable.append(er)
    return sqlable


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


def findings(plan: SqlPlan, rows: Iterable[tuple[str, int, int, int]]) -> list[SqlFinding]:
    """The event queries' rows ``(_file, _position, _seq, _rule)`` as findings."""
    return [SqlFinding(plan.rules[r].rule.id, f, int(p), int(s)) for f, p, s, r in rows]
