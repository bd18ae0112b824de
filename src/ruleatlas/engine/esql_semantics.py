"""ES|QL rules replayed on events: the query's pipeline, command by command, ES|QL's semantics.

The ES|QL lowering records each command as a typed step (``Analysis.steps``,
``languages/esql/steps.py``). :func:`prepare_esql` turns them into the engine's plan:

* the **head**: the ``where`` filters before any command that writes (``eval``, ``dissect``,
  ``grok``, ``rename``) or reshapes rows (``keep``, ``drop``, ``mv_expand``) what they read.
  They are the rule's condition (:func:`compile_esql`: true only when ES|QL's three-valued
  condition is true), and their lowered predicates (the stages' trees) are what the
  pre-filter anchors on: an ES|QL-true row makes the predicate tree true, so the anchors stay
  a necessary condition;
* the **steps** after the head, replayed on a row list (:func:`compile_rows`): ``where``
  (three-valued), ``eval`` (left to right; :mod:`engine.esql_functions`), ``rename``,
  ``dissect`` / ``grok`` (:mod:`engine.esql_extract`), ``keep`` / ``drop`` (columns matching
  the patterns), ``mv_expand`` (one row per value), ``stats ... by`` (groups over every
  matched event: a null key is its own group, a multi-valued key puts the row in the group of
  each value, as ES|QL's ``STATS`` does), ``inline stats`` (every row with its group's
  aggregates), ``sort`` and ``limit`` (on the rows after an aggregation; before one, the rows
  are events replayed one at a time, and both change nothing a filter reads);
* ``from`` is the source (index patterns: routing); ``@timestamp`` compared with ``now()``
  (a look-back window, ``@timestamp > now() - 7 day``, or a settle delay,
  ``@timestamp < now() - 5m``) is true: a log file is replayed as if the rule had run over
  it when its events were recent (the rule's schedule window, not a property of the events).

Findings: a rule without aggregation gives one finding per event whose rows survive (an
``mv_expand`` may make several rows of one event; Elastic deduplicates the alerts of one
document by ``_id``); an aggregating rule gives one finding per row of its last command, on the
first event of the row's group.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from datetime import datetime
from itertools import product
from typing import Any

from ruleatlas.engine import esql_extract
from ruleatlas.engine.aggregate import AggFunc, Aggregator, AggSpec, _State, _update
from ruleatlas.engine.compile import Matcher, NotRunnable
from ruleatlas.engine.esql_functions import (
    NOW,
    UnknownFunction,
    compile_esql_term,
    single,
    to_datetime,
)
from ruleatlas.engine.pipeline import Plan, Step, Steps, fields_of, put
from ruleatlas.engine.sigma_semantics import as_number, to_text
from ruleatlas.model import (
    Aggregate,
    Analysis,
    And,
    Call,
    Condition,
    Const,
    Eval,
    FieldRef,
    Filter,
    Node,
    OtherCommand,
    Rename,
    Rex,
    Term,
    conjoin,
    term_fields,
)

ROWS = "_esql_rows"  # an event's rows when an mv_expand made several (engine-internal)
PAYLOAD = "_esql_payload"  # the event a row after an aggregation comes from
# Rows an ``inline stats`` over events keeps (per rule): past it the rows are not kept.
MAX_INLINE_ROWS = 100_000
# Commands replayed; any other is a reason the rule cannot run.
REPLAYED = frozenset({"keep", "drop", "sort", "limit", "mv_expand"})
Rows = list[dict[str, Any]]
RowOp = Callable[[Rows], Rows]


# --------------------------------------------------------------------------------------------
# Conditions
# --------------------------------------------------------------------------------------------


def compile_esql(node: Node | None, field_map: Mapping[str, str] | None = None) -> Matcher:
    """The matcher of an ES|QL head (``Condition``s joined by ``And``): true only where the
    condition is true (a null drops the row). Raises :class:`NotRunnable`."""
    if node is None:
        return lambda _f: True
    try:
        fn = _tri(node)
    except UnknownFunction as exc:
        raise NotRunnable(exc.message) from None
    return lambda f: fn(f) is True


def _tri(node: Node) -> Callable[[Mapping[str, Any]], bool | None]:
    if isinstance(node, Condition):
        return compile_esql_term(node.expr)
    if isinstance(node, Const):
        v = node.value
        return lambda _f: v
    if isinstance(node, And):
        return compile_esql_term(Call("AND", tuple(_as_term(a) for a in node.args)))
    raise NotRunnable(f"an ES|QL filter holds a {type(node).__name__} node")


def _as_term(node: Node) -> Term:
    if isinstance(node, Condition):
        return node.expr
    if isinstance(node, Const):
        return node.value
    if isinstance(node, And):
        return Call("AND", tuple(_as_term(a) for a in node.args))
    raise NotRunnable(f"an ES|QL filter holds a {type(node).__name__} node")


def _window(t: Term) -> Term:
    """``t`` with each comparison of ``@timestamp`` against an expression reading ``now()``
    made true (see the module docstring)."""
    if not isinstance(t, Call):
        return t
    if t.name in ("<", "<=", ">", ">=") and len(t.args) == 2:
        a, b = t.args
        if (a == FieldRef("@timestamp") and _reads_now(b)) or (
                b == FieldRef("@timestamp") and _reads_now(a)):
            return True
    return Call(t.name, tuple(_window(a) for a in t.args))


def _reads_now(t: Term) -> bool:
    return isinstance(t, Call) and (t.name.lower() == "now" or any(_reads_now(a)
                                                                   for a in t.args))


# --------------------------------------------------------------------------------------------
# Steps on rows
# --------------------------------------------------------------------------------------------


def _filter(node: Node | None) -> RowOp:
    m = compile_esql(node)
    return lambda rows: [r for r in rows if m(r)]


def _eval(assigns: tuple[tuple[str, Term], ...]) -> RowOp:
    try:
        compiled = [(n, compile_esql_term(t)) for n, t in assigns]
    except UnknownFunction as exc:
        raise NotRunnable(exc.message) from None

    def op(rows: Rows) -> Rows:
        for r in rows:
            for name, fn in compiled:
                put(r, name, fn(r))
        return rows

    return op


def _rename(pairs: tuple[tuple[str, str], ...]) -> RowOp:
    def op(rows: Rows) -> Rows:
        for r in rows:
            for a, b in pairs:
                put(r, b, r.pop(a, None))
        return rows

    return op


def _columns(names: Sequence[str], keep: bool) -> RowOp:
    """``keep`` / ``drop``: the columns matching the patterns (``*`` any run)."""
    rx = re.compile("|".join(fnmatch.translate(n) for n in names) or "(?!)")

    def op(rows: Rows) -> Rows:
        out = []
        for r in rows:
            out.append({k: v for k, v in r.items()
                        if k.startswith("_esql_") or (rx.match(k) is not None) is keep})
        return out

    return op


def _mv_expand(name: str) -> RowOp:
    def op(rows: Rows) -> Rows:
        out: Rows = []
        for r in rows:
            v = r.get(name)
            if isinstance(v, list) and len(v) > 1:
                out.extend({**r, name: x} for x in v)
            else:
                out.append(r)
        return out

    return op


def _sort_key(v: Any) -> tuple[int, Any]:
    n = as_number(v)
    if n is not None and not isinstance(v, str):
        return (0, n)
    d = to_datetime(v) if not isinstance(v, str) else None
    if d is not None:
        return (0, d.timestamp())
    return (1, to_text(v))


def _key_of(name: str) -> Callable[[dict[str, Any]], tuple[int, Any]]:
    return lambda r: _sort_key(single(r.get(name)))


def _sort(keys: Sequence[str]) -> RowOp:
    """``sort a, b desc nulls last``: a null is larger than any value (ascending: nulls last,
    descending: first) unless ``nulls first|last`` says otherwise (ES|QL's ``SORT``)."""
    parsed: list[tuple[str, bool, bool]] = []
    for k in keys:
        name, nulls = k, ""
        for tail in (" nulls first", " nulls last"):
            if name.endswith(tail):
                name, nulls = name[: -len(tail)], tail.split()[-1]
        desc = name.endswith(" desc")
        name = name.removesuffix(" desc").removesuffix(" asc").strip()
        parsed.append((name, desc, nulls == "first" or (not nulls and desc)))

    def op(rows: Rows) -> Rows:
        out = list(rows)
        for name, desc, nulls_first in reversed(parsed):
            have = [r for r in out if single(r.get(name)) is not None]
            none = [r for r in out if single(r.get(name)) is None]
            have.sort(key=_key_of(name), reverse=desc)
            out = none + have if nulls_first else have + none
        return out

    return op


def _limit(args: Sequence[str]) -> RowOp:
    n = int(args[0]) if args and args[0].isdigit() else None
    if n is None:
        raise NotRunnable(f"limit {' '.join(args)!r} is not a number")
    return lambda rows: rows[:n]


def _command(st: Step, after: bool) -> RowOp | None:
    """keep/drop/mv_expand/sort/limit (sort and limit only after an aggregation)."""
    if st.command in ("keep", "drop"):
        return _columns(st.outputs, st.command == "keep")
    if st.command == "mv_expand":
        return _mv_expand(st.outputs[0])
    if st.command == "sort":
        return _sort(st.outputs) if after else None
    if st.command == "limit":
        return _limit(st.outputs) if after else None
    raise NotRunnable(f"stage {st.stage + 1} ({st.command}) is not replayed on events")


def compile_rows(steps: Sequence[Step], after: bool = False) -> RowOp:
    """The steps as one operation on a row list (``after``: rows of an aggregation).
    Raises :class:`NotRunnable` for a step or function the engine does not have."""
    ops: list[RowOp] = []
    for st in steps:
        op = _step_op(st, after)
        if op is not None:
            ops.append(op)
        if st.kind == "aggregate":
            after = True

    def run(rows: Rows) -> Rows:
        for o in ops:
            if not rows:
                break
            rows = o(rows)
        return rows

    return run


def _step_op(st: Step, after: bool) -> RowOp | None:
    if st.kind == "filter":
        return _filter(st.node)
    if st.kind == "eval":
        return _eval(st.assigns)
    if st.kind == "rename":
        return _rename(st.renames)
    if st.kind == "rex" and st.rex is not None:
        try:
            return esql_extract.compile_extract(st.rex)
        except UnknownFunction as exc:
            raise NotRunnable(exc.message) from None
    if st.kind == "aggregate" and st.aggregate is not None:
        spec = esql_agg_spec(st.aggregate)
        return lambda rows: aggregate_rows(spec, rows)
    if st.kind == "command":
        return _command(st, after)
    raise NotRunnable(f"step {st.kind} is not supported")


def compile_esql_steps(steps: Sequence[Step], fmap: Mapping[str, str] | None = None,
                       later: AbstractSet[str] = frozenset()) -> Steps | None:
    """The steps before the first aggregation, on one event's fields: the row (its
    ``_esql_rows`` listing every row when there are several), or None when none is left."""
    first = next((i for i, s in enumerate(steps) if s.kind == "aggregate"), len(steps))
    if first == 0:
        return None
    run = compile_rows(steps[:first])

    def one(fields: Mapping[str, Any]) -> dict[str, Any] | None:
        rows = run([dict(fields)])
        if not rows:
            return None
        if len(rows) == 1:
            return {k: _plain(v) for k, v in rows[0].items()}
        return {**{k: _plain(v) for k, v in rows[0].items()}, ROWS: rows}

    return one


# --------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------

# ES|QL's aggregation functions as the engine's (engine/aggregate.py AGG_FUNCS).
AGG_NAMES: dict[str, str] = {
    "count": "count", "count_distinct": "dc", "values": "values", "min": "min", "max": "max",
    "sum": "sum", "avg": "avg", "median": "median", "std_dev": "stdevp",
}


def esql_agg_spec(a: Aggregate) -> AggSpec:
    """A lowered ES|QL aggregation as the engine computes it (``engine/aggregate.py``'s
    functions, under ES|QL's names: :data:`AGG_NAMES`); raises :class:`NotRunnable`."""
    if a.problem:
        raise NotRunnable(f"stage {a.stage + 1} ({a.command}): {a.problem}")
    funcs = []
    for f in a.functions:
        fn = AGG_NAMES.get(f.name.lower())
        if fn is None:
            raise NotRunnable(f"stage {a.stage + 1}: ES|QL aggregation {f.name}() is not "
                              "supported")
        arg = None if f.field in (None, "*") else f.field
        funcs.append(AggFunc(fn, arg, f.alias or f.name))
    return AggSpec(a.command, tuple(funcs), tuple(a.by))


def _keys(spec: AggSpec, row: Mapping[str, Any]) -> Iterator[tuple[Any, ...]]:
    """The group keys of a row: a null key is one group, a multi-valued key each value's."""
    choices = []
    for b in spec.by:
        v = row.get(b)
        choices.append(list(dict.fromkeys(_hashable(x) for x in v)) if isinstance(v, list)
                       and v else [_hashable(single(v))])
    return product(*choices)


def _hashable(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


class Groups:
    """The groups of one ``stats`` / ``inline stats`` as rows arrive (``stats`` keeps a small
    state per group; ``inline stats`` keeps the rows too, at most :data:`MAX_INLINE_ROWS`)."""

    def __init__(self, spec: AggSpec) -> None:
        self.spec = spec
        self.states: dict[tuple[Any, ...], list[_State]] = {}
        self.first: dict[tuple[Any, ...], Any] = {}
        self.members: list[tuple[dict[str, Any], list[tuple[Any, ...]]]] = []

    def add(self, r: dict[str, Any]) -> None:
        keys = list(_keys(self.spec, r))
        for k in keys:
            states = self.states.get(k)
            if states is None:
                states = self.states[k] = [_State() for _ in self.spec.funcs]
                self.first[k] = r.get(PAYLOAD)
            for st, f in zip(states, self.spec.funcs, strict=True):
                _update(st, f, r)
        if self.spec.command == "inline stats" and len(self.members) < MAX_INLINE_ROWS:
            self.members.append((r, keys))

    def rows(self) -> Rows:
        """``stats``: one row per group (its keys and aggregates, the payload of its first
        row); ``inline stats``: every row with its group's aggregates (one per key)."""
        aggs = {k: {f.name: _result(st, f) for st, f in zip(sts, self.spec.funcs,
                                                            strict=True)}
                for k, sts in self.states.items()}
        if self.spec.command == "inline stats":
            return [_clean({**r, **aggs[k]}) for r, keys in self.members for k in keys]
        out: Rows = []
        for k, agg in aggs.items():
            row: dict[str, Any] = dict(zip(self.spec.by, k, strict=True))
            row.update(agg)
            row[PAYLOAD] = self.first[k]
            out.append(_clean(row))
        return out


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if v is not None}


def aggregate_rows(spec: AggSpec, rows: Rows) -> Rows:
    g = Groups(spec)
    for r in rows:
        g.add(r)
    return g.rows()


def _result(st: _State, f: AggFunc) -> Any:
    from ruleatlas.engine.aggregate import AGG_FUNCS

    v = AGG_FUNCS[f.fn](st)
    if f.fn == "values":
        return None if not v else v[0] if len(v) == 1 else v
    if f.fn == "count" and f.arg is not None:
        return st.count
    return v


class EsqlAggregator(Aggregator):
    """The first aggregation of an ES|QL rule over the rows of every matched event, then the
    commands after it (``plan`` steps past the first aggregate step) on its rows."""

    def __init__(self, spec: AggSpec, plan: Plan | None) -> None:
        super().__init__(spec, lambda _r: True)
        steps = plan.steps if plan is not None else ()
        first = next((i for i, s in enumerate(steps) if s.kind == "aggregate"), len(steps))
        self.after = compile_rows(steps[first + 1:], after=True)
        self.grouped = Groups(spec)
        self.now: datetime | None = None  # the last matched event's time: now() after it

    def add(self, fields: Mapping[str, Any], payload: Any) -> None:
        t = to_datetime(single(fields.get("@timestamp")) or getattr(payload, "time", None))
        if t is not None and (self.now is None or t > self.now):
            self.now = t
        for r in fields.get(ROWS) or [fields]:
            self.grouped.add({**r, PAYLOAD: payload})

    def rows(self) -> Iterator[tuple[dict[str, Any], Any]]:
        got = self.grouped.rows()
        if self.now is not None:
            for r in got:
                r[NOW] = self.now
        for r in self.after(got):
            yield ({k: _plain(v) for k, v in r.items() if not k.startswith("_esql_")},
                   r.get(PAYLOAD))


def _plain(v: Any) -> Any:
    """A value as a finding shows it (dates as ISO text)."""
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, datetime):
        return v.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return v


# --------------------------------------------------------------------------------------------
# Preparing a rule
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EsqlPlan:
    """What :func:`plan_esql` makes of an analysis."""

    head: Node | None  # the exact conditions of the head filters
    anchors: Node | None  # their lowered predicate trees (the pre-filter's anchors)
    steps: tuple[Step, ...]  # everything after the head, aggregations as "aggregate" steps
    agg: AggSpec | None
    reads: frozenset[str]  # every column a step reads


def _writes(st: Any) -> set[str]:
    if isinstance(st, Eval):
        return {n for n, _ in st.assigns}
    if isinstance(st, Rename):
        return {x for p in st.pairs for x in p}
    if isinstance(st, Rex):
        return set(esql_extract.outputs(st.mode or "", st.pattern or ""))
    return set()


def _reads(st: Any) -> set[str]:
    if isinstance(st, Filter):
        out = set(fields_of(st.node))
        if isinstance(st.node, Condition):
            out |= _kql_fields(st.node.expr)
        return out
    if isinstance(st, Eval):
        return {f for _, t in st.assigns for f in (*term_fields(t), *_kql_fields(t))}
    if isinstance(st, Rename):
        return {a for a, _ in st.pairs}
    if isinstance(st, Rex):
        return {st.field}
    if isinstance(st, Aggregate):
        return set(st.by) | {f.field for f in st.functions if f.field not in (None, "*")}
    if isinstance(st, OtherCommand) and st.command == "mv_expand":
        return set(st.outputs)
    return set()


def _kql_fields(t: Term) -> set[str]:
    """The fields the ``kql("...")`` calls of a term read (their queries' own fields)."""
    if not isinstance(t, Call):
        return set()
    out: set[str] = set()
    if t.name == "kql" and len(t.args) == 1 and isinstance(t.args[0], str):
        from ruleatlas.languages.kql import analyze_kql_query

        out.update(fields_of(analyze_kql_query(t.args[0]).condition))
    for a in t.args:
        out |= _kql_fields(a)
    return out


def plan_esql(analysis: Any) -> EsqlPlan:
    """The head, steps and first aggregation of an ES|QL analysis; raises
    :class:`NotRunnable` with the reason it cannot run."""
    head: list[Node | None] = []
    anchors: list[Node | None] = []
    steps: list[Step] = []
    written: set[str] = set()
    blocked = False  # a keep/drop/mv_expand/aggregation came: later filters stay in order
    agg: AggSpec | None = None
    reads: set[str] = set()
    for st in analysis.steps:
        reads |= _reads(st)
        if agg is None and _step_reads_now(st):
            raise NotRunnable(f"stage {st.stage + 1}: now() before an aggregation (other than "
                              "a look-back window on @timestamp) has no time on a log file")
        if isinstance(st, Filter):
            node = _window_node(st.node)
            if not blocked and not (set(fields_of(node)) & written):
                head.append(node)
                anchors.append(analysis.stages[st.stage].condition
                               if st.stage < len(analysis.stages) else None)
            else:
                steps.append(Step("filter", st.stage, node=node))
            continue
        written |= _writes(st)
        steps.append(_plan_step(st))
        if isinstance(st, OtherCommand | Aggregate):
            blocked = True
        if isinstance(st, Aggregate) and agg is None:
            agg = esql_agg_spec(st)
    return EsqlPlan(conjoin(head), conjoin(anchors), tuple(steps), agg, frozenset(reads))


def _step_reads_now(st: Any) -> bool:
    if isinstance(st, Filter) and isinstance(st.node, Condition):
        return _reads_now(_window(st.node.expr))
    if isinstance(st, Eval):
        return any(_reads_now(t) for _, t in st.assigns)
    return False


def _window_node(node: Node | None) -> Node:
    if isinstance(node, Condition):
        return replace(node, expr=_window(node.expr))
    if node is None:
        return Const(True)
    return node


def _plan_step(st: Any) -> Step:
    if isinstance(st, Eval):
        return Step("eval", st.stage, assigns=st.assigns)
    if isinstance(st, Rename):
        return Step("rename", st.stage, renames=st.pairs)
    if isinstance(st, Rex):
        return Step("rex", st.stage, rex={"field": st.field, "pattern": st.pattern,
                                          "mode": st.mode, "separator": st.max_match})
    if isinstance(st, Aggregate):
        esql_agg_spec(st)  # refused here when the engine cannot compute it
        return Step("aggregate", st.stage, command=st.command, aggregate=st)
    if isinstance(st, OtherCommand):
        if st.command not in REPLAYED:
            raise NotRunnable(f"stage {st.stage + 1} ({st.command}) cannot run on events: "
                              f"{_WHY.get(st.command, 'not replayed by the engine')}")
        return Step("command", st.stage, command=st.command, outputs=st.outputs)
    raise NotRunnable(f"stage {st.stage + 1}: {type(st).__name__} is not replayed")


_WHY: dict[str, str] = {
    "row": "a generating command (no events)", "show": "a generating command (no events)",
    "enrich": "an enrich policy's data is not known here",
    "lookup join": "a lookup index's data is not known here",
    "completion": "an LLM completion", "change_point": "change-point detection",
    "fork": "fork branches are not replayed", "sample": "random sampling",
    "grok": "several grok patterns", "dissect": "a dissect option other than "
    "append_separator",
}


def prepare_esql(analysis: Analysis) -> EsqlPlan | str:
    """An ES|QL rule's head, anchors, steps, aggregation and the columns its view must carry
    (checked by compiling them once), or the reason it cannot run."""
    if len(analysis.extra.get("queries") or ()) > 1:
        return ("a hunting file with several queries: each is its own pipeline, not replayed "
                "as one rule")
    if not analysis.steps:
        return ("the analysis has no pipeline steps (stored by an older Rule Atlas): rebuild "
                "the catalog")
    try:
        p = plan_esql(analysis)
        compile_esql(p.head)
        compile_rows(p.steps)
    except NotRunnable as exc:
        return exc.message
    return p


@dataclass(frozen=True, slots=True)
class PipelineSemantics:
    """A language whose queries the engine replays with their own semantics: how a rule is
    prepared, how its event steps compile, and its aggregator (``engine.plan.PIPELINES``)."""

    prepare: Callable[[Analysis], EsqlPlan | str]
    steps: Callable[[Sequence[Step], Mapping[str, str] | None, AbstractSet[str]],
                    Steps | None]
    aggregator: Callable[[AggSpec, Plan | None], Aggregator]


ESQL = PipelineSemantics(prepare_esql, compile_esql_steps, EsqlAggregator)
