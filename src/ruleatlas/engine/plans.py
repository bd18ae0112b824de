"""Prepared rules kept in the catalog, so that ``hunt`` starts without preparing every rule.

:func:`~.runner.prepare` works out, once per rule, everything that does not depend on events:
the route, whether the rule can run (and why not), the SPL steps and aggregation, the fields a
finding shows. Doing that for the whole catalog (decoding every analysis, routing, compiling
every tree to find what cannot run) took 6-7 s before the first event was read. A
:class:`RulePlan` is that work as data (never closures): :func:`plan_of` takes it from a
prepared :class:`~.runner.EngineRule`, :func:`engine_rule` turns it back into one, whose
matchers are compiled later, per event kind and only for the rules a kind's events reach.

Plans live in the catalog (``store/plans.py``, table ``engine_plans``), one row per rule, keyed
by

* the rule's **content digest**: BLAKE2b of its stored ``rule_json``, ``analysis_json`` and
  ATT&CK tactics, so a changed rule (or a re-analysis after a Splunk macro changed) recomputes
  only its own plan;
* the **engine key**: :data:`ENGINE_VERSION` and a hash of the code a plan depends on
  (``engine/``, ``coverage/``, ``model.py``), so a new engine recomputes every plan.

``build`` refreshes the plans of the rules it wrote, in its own transaction (:func:`refresh`),
and records the build stamp they match. ``hunt`` (:func:`load`) reads the rows straight away when
that stamp is still the catalog's; otherwise it checks every rule's digest first and recomputes
(and stores, when it can write) the stale plans. Each row is a :class:`PlanHead` (what routing,
filters and reports read) holding the pickled :class:`RulePlan` as bytes, unpickled only when an
event kind routed to the rule shows up. A row that cannot be read back is a
:class:`~ruleatlas.model.Problem` naming the catalog and the rule, and the rule is prepared from
its analysis instead: a broken cache costs time, never findings.

Serialisation is ``pickle`` of the frozen dataclasses, written by our own code into our own
catalog and read with an unpickler that only admits the model's, the engine's and the routing
table's classes (no other callable can be named in a row). Measured on the corpus's 5,748
conditions (``docs/engine.md``, "Plan cache"): pickle with constructor reducers 0.08 s, default
pickle 0.16 s, JSON + ``node_from_dict`` 0.23 s, marshal + a Python rebuild 0.28 s.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import io
import json
import pickle
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from ruleatlas import model
from ruleatlas.coverage.routing import Route
from ruleatlas.engine.aggregate import AggFunc, AggSpec
from ruleatlas.engine.compile import Matcher, compile_node
from ruleatlas.engine.elastic_rules import Cardinality, RuleType
from ruleatlas.engine.pipeline import (
    Fields,
    JoinRows,
    Plan,
    Step,
    Steps,
    compile_steps,
    join_op,
    result_plan,
)
from ruleatlas.engine.runner import EngineRule, prepare
from ruleatlas.model import Analysis, Node, Problem, Rule, analysis_from_dict

# Bump when what a plan means changes without its classes changing (the code hash below
# catches edits of the engine's files; this is the explicit, reviewable part of the key).
ENGINE_VERSION = 3
# The code a plan is computed by: any change to these files makes every stored plan stale.
ENGINE_PARTS = ("model.py", "engine", "coverage")


@lru_cache(maxsize=1)
def engine_key() -> str:
    """``ENGINE_VERSION`` and a hash of :data:`ENGINE_PARTS` (``v1-<16 hex>``)."""
    base = Path(__file__).resolve().parent.parent
    h = hashlib.blake2b(digest_size=8)
    for part in ENGINE_PARTS:
        p = base / part
        files = sorted(f for f in p.rglob("*") if f.suffix in (".py", ".yaml", ".yml", ".json")
                       ) if p.is_dir() else [p]
        for f in files:
            try:
                data = f.read_bytes()
            except OSError:
                continue  # a file that vanished is not part of the engine any more
            h.update(f.relative_to(base).as_posix().encode() + b"\0" + data + b"\0")
    return f"v{ENGINE_VERSION}-{h.hexdigest()}"


@dataclass(frozen=True, slots=True)
class JoinPlan:
    """A ``join [subsearch]`` after the aggregation: its stage, the join's options (fields,
    type, max, overwrite) and the subsearch's own plan (run hidden beside the rule)."""

    stage: int
    spec: model.Join  # without its subsearch (``sub`` is its plan)
    sub: RulePlan


@dataclass(frozen=True, slots=True)
class RulePlan:
    """Everything :func:`~.runner.prepare` decides about a rule, as data.

    ``rule`` keeps the fields a finding, a filter or a report reads (id, title, source, path,
    status, severity, language, logsource, ATT&CK ids); the query, body and description stay in
    ``rules.rule_json``. ``condition`` is the event-phase tree the matcher is compiled from
    (for SPL the head of the search, for tstats None), ``result_condition`` and
    ``has_result`` the row filter of a rule that has one, ``result_plan`` the steps after the
    last aggregation (compiled, with the joins' operations, on first use).
    """

    rule: Rule
    route: Route
    reason: str | None
    condition: Node | None = None
    result_condition: Node | None = None
    has_result: bool = False
    agg: AggSpec | None = None
    chain: tuple[AggSpec, ...] = ()
    bins: tuple[tuple[str, float], ...] = ()
    plan: Plan | None = None
    later: frozenset[str] = frozenset()
    result_plan: Plan | None = None
    anchor_node: Node | None = None
    joins: tuple[JoinPlan, ...] = ()
    fields: tuple[str, ...] = ()
    tactics: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    hidden: bool = False
    # the pre-filter's anchors under the route's common field map (most event kinds use it)
    anchors: frozenset[tuple[str, str]] | None = None
    has_anchors: bool = False
    view: str = "raw"
    semantics: str = "default"
    sequence: model.Sequence | None = None
    optional: frozenset[str] = frozenset()
    rule_type: RuleType | None = None

    @property
    def runnable(self) -> bool:
        return self.reason is None


def rule_head(rule: Rule) -> Rule:
    """The rule without the text a hunt never reads (query, body, description, references)."""
    return dataclasses.replace(rule, query="", body="", description="", references=(),
                               falsepositives=(), how_to_implement=None, tests=(), extra={})


def plan_of(er: EngineRule) -> RulePlan:
    """The data of a prepared rule (closures left out: they are rebuilt by :func:`engine_rule`)."""
    rp = result_plan(er.analysis) if er.result_steps is not None else None
    anchors = None
    if er.runnable:
        got = er.anchors(er.route.common_map)
        anchors = None if got is None else frozenset(got)
    joins: list[JoinPlan] = []
    if rp is not None:
        steps = [st for st in rp.steps if st.kind == "join" and st.join is not None]
        for st, (sub, _rows) in zip(steps, er.joins, strict=False):
            assert st.join is not None
            spec = dataclasses.replace(st.join, subsearch=None)
            joins.append(JoinPlan(st.stage, spec, plan_of(sub)))
    return RulePlan(
        rule=rule_head(er.rule), route=er.route, reason=er.reason,
        condition=er.analysis.condition, result_condition=er.analysis.result_condition,
        has_result=er.result is not None, agg=er.agg, chain=er.chain, bins=er.bins,
        plan=er.plan, later=er.later, result_plan=rp, anchor_node=er.anchor_node,
        joins=tuple(joins), fields=er.fields, tactics=er.tactics, keywords=er.keywords,
        hidden=er.hidden, anchors=anchors, has_anchors=er.runnable, view=er.view,
        semantics=er.semantics, sequence=er.sequence, optional=er.optional,
        rule_type=er.rule_type)


def _lazy_matcher(node: Node | None) -> Matcher:
    """``compile_node(node)`` on first call (the plan says it compiles: it did when made)."""
    compiled: list[Matcher] = []

    def run(fields: Fields) -> bool:
        if not compiled:
            compiled.append(compile_node(node))
        return compiled[0](fields)

    return run


def _lazy_steps(steps: tuple[Step, ...], joins: Mapping[int, Callable[[dict[str, Any]], bool]]
                ) -> Steps:
    compiled: list[Steps | None] = []

    def run(fields: Fields) -> dict[str, Any] | None:
        if not compiled:
            compiled.append(compile_steps(steps, joins=joins))
        fn = compiled[0]
        return dict(fields) if fn is None else fn(fields)

    return run


def engine_rule(p: RulePlan) -> EngineRule:
    """A runnable :class:`~.runner.EngineRule` from its plan; the row filter and the steps after
    the aggregation compile on first use, the event matchers per event kind (``Engine``)."""
    rule = p.rule
    er = EngineRule(rule, Analysis(rule.language, condition=p.condition,
                                   result_condition=p.result_condition),
                    p.route, reason=p.reason, agg=p.agg, fields=p.fields, tactics=p.tactics,
                    keywords=p.keywords, chain=p.chain, bins=p.bins, plan=p.plan,
                    later=p.later, anchor_node=p.anchor_node, hidden=p.hidden, view=p.view,
                    semantics=p.semantics, sequence=p.sequence, optional=p.optional,
                    rule_type=p.rule_type)
    if p.has_anchors:
        er.seed_anchors(p.route.common_map, None if p.anchors is None else set(p.anchors))
    if p.has_result:
        er.result = _lazy_matcher(p.result_condition)
    if p.result_plan is not None:
        ops: dict[int, Callable[[dict[str, Any]], bool]] = {}
        for j in p.joins:
            rows = JoinRows(j.spec.fields)
            er.joins.append((engine_rule(j.sub), rows))
            ops[j.stage] = join_op(j.spec, rows)
        er.result_steps = _lazy_steps(p.result_plan.steps, ops)
    return er


# --------------------------------------------------------------------------------------------
# Heads: what a hunt reads of every rule before the first event
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlanHead:
    """What a hunt needs of every rule up front: the fields filters and reports read, the
    route's event kinds, the reason it cannot run. The rest of the plan (``body``, a pickled
    :class:`RulePlan`, with its BLAKE2b ``check``) is read only when an event kind the rule is
    routed to shows up (:func:`lazy_engine_rule`)."""

    rule: Rule
    keys: frozenset[tuple[str | None, str | None]] | None
    reason: str | None
    tactics: tuple[str, ...]
    joins: bool
    check: bytes
    body: bytes

    @property
    def runnable(self) -> bool:
        return self.reason is None

    def plan(self) -> RulePlan:
        """The whole plan; :class:`PlanError` when the body is not the one written."""
        if _check_of(self.body) != self.check:
            raise PlanError("the plan's body does not match its checksum")
        p = loads(self.body, RulePlan)
        if p.rule.id != self.rule.id:
            raise PlanError(f"the plan's body is the plan of {p.rule.id!r}")
        return p


def _check_of(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=8).digest()


def head_of(p: RulePlan) -> PlanHead:
    body = dumps(p)
    r = p.rule
    slim = dataclasses.replace(r, attack=(), tags=(), data_sources=(), stories=())
    return PlanHead(slim, p.route.keys, p.reason, p.tactics, bool(p.joins), _check_of(body),
                    body)


def lazy_engine_rule(h: PlanHead, fallback: Callable[[PlanHead, PlanError], RulePlan]
                     ) -> EngineRule:
    """An :class:`~.runner.EngineRule` holding only what routing reads (event kinds, product);
    the :class:`~.runner.Engine` fills in the rest (:meth:`~.runner.EngineRule.ready`) when an
    event kind it is routed to first shows up. A body that cannot be read is replaced by
    ``fallback(head, error)`` (the rule prepared from its analysis)."""
    if h.joins:  # the engine adds a join's subsearch rules at once
        return engine_rule(_body(h, fallback))

    def fill(er: EngineRule) -> None:
        full = engine_rule(_body(h, fallback))
        for name in _ENGINE_FIELDS:
            setattr(er, name, getattr(full, name))

    return EngineRule(h.rule, Analysis(h.rule.language), Route(h.keys), reason=h.reason,
                      tactics=h.tactics, pending=fill)


_ENGINE_FIELDS = tuple(f.name for f in dataclasses.fields(EngineRule) if f.name != "pending")


def _body(h: PlanHead, fallback: Callable[[PlanHead, PlanError], RulePlan]) -> RulePlan:
    try:
        return h.plan()
    except PlanError as exc:
        return fallback(h, exc)


# --------------------------------------------------------------------------------------------
# Serialisation
# --------------------------------------------------------------------------------------------

# Every dataclass and enum of the model (nodes, values, Rule, ...: a type added there is
# admitted without touching this list), and the engine's own plan types.
_MODEL = [v for v in vars(model).values()
          if isinstance(v, type) and v.__module__ == model.__name__]
_CLASSES: tuple[type, ...] = (
    PlanHead, RulePlan, JoinPlan, Route, Plan, Step, AggSpec, AggFunc, RuleType, Cardinality,
    *(c for c in _MODEL if dataclasses.is_dataclass(c)),
)
_ENUMS: tuple[type, ...] = tuple(c for c in _MODEL if issubclass(c, Enum))
_ALLOWED = {(c.__module__, c.__qualname__): c for c in (*_CLASSES, *_ENUMS)}
_ALLOWED.update({("builtins", "frozenset"): frozenset, ("builtins", "set"): set})


def _reducer(cls: type) -> Callable[[Any], tuple[Any, ...]]:
    names = tuple(f.name for f in dataclasses.fields(cls))

    def reduce(o: Any) -> tuple[Any, ...]:
        return (cls, tuple([getattr(o, n) for n in names]))

    return reduce


# A frozen slotted dataclass pickles by default through a Python __setstate__ per object;
# rebuilt by its constructor instead (one C call per object), a plan loads ~1.7x faster.
_DISPATCH = {c: _reducer(c) for c in _CLASSES}


class PlanError(ValueError):
    """A stored plan that cannot be read back (corrupt, truncated, or not a plan)."""


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        got = _ALLOWED.get((module, name))
        if got is None:
            raise PlanError(f"a plan names {module}.{name}, which is not a plan class")
        return got


def dumps(p: RulePlan | PlanHead) -> bytes:
    buf = io.BytesIO()
    pk = pickle.Pickler(buf, protocol=5)
    pk.dispatch_table = _DISPATCH  # type: ignore[assignment]
    pk.dump(p)
    return buf.getvalue()


T = TypeVar("T", RulePlan, PlanHead)


def loads(data: bytes, kind: type[T]) -> T:
    """A plan (or head) from :func:`dumps`; :class:`PlanError` for anything else."""
    try:
        got = _Unpickler(io.BytesIO(data)).load()
    except PlanError:
        raise
    except Exception as exc:  # any unpickling failure of a damaged row: reported by the caller
        raise PlanError(f"unreadable plan: {type(exc).__name__}: {exc}") from exc
    if not isinstance(got, kind):
        raise PlanError(f"a plan row holds a {type(got).__name__}, not a {kind.__name__}")
    return got


# --------------------------------------------------------------------------------------------
# Computing, checking and loading plans
# --------------------------------------------------------------------------------------------


def digest(rule_json: str, analysis_json: str | None, tactics: Sequence[str]) -> bytes:
    """The content key of a rule's plan."""
    h = hashlib.blake2b(digest_size=16)
    h.update(rule_json.encode())
    h.update(b"\0" + (analysis_json or "").encode() + b"\0")
    h.update("\0".join(tactics).encode())
    return h.digest()


def compute(rule_json: str, analysis_json: str | None, tactics: tuple[str, ...]) -> RulePlan:
    """The plan of one stored rule (what ``hunt`` did for every rule before the cache)."""
    from ruleatlas.engine.catalog import rule_from_dict, tactics_of

    rule = rule_from_dict(json.loads(rule_json))
    if analysis_json:
        analysis = analysis_from_dict(json.loads(analysis_json))
    else:
        from ruleatlas.languages import analyze

        analysis = analyze(rule)
    return plan_of(prepare(rule, analysis, tactics or tactics_of(rule)))


def _compute_row(task: tuple[str, str, str | None, tuple[str, ...]]) -> tuple[str, bytes, bytes]:
    rid, rj, aj, tactics = task
    return rid, digest(rj, aj, tactics), dumps(head_of(compute(rj, aj, tactics)))


Runner = Callable[[Callable[[Any], Any], list[Any]], Iterable[Any]]


def refresh(conn: Any, run: Runner | None = None, checked: str | None = None) -> int:
    """Bring the catalog's plans up to date with its rules (called by ``build`` inside its
    write transaction, ``run`` being its process pool): the plans of new and changed rules are
    computed, those of deleted rules dropped; the rows are then marked as checked against the
    build stamp (``meta.last_build``). Returns how many plans were computed."""
    from ruleatlas.store import plans as store

    key = engine_key()
    have = {r.rule_id: r.digest for r in store.plan_rows(conn, key)}
    todo = []
    ids = []
    for t in store.rule_texts(conn):
        ids.append(t.id)
        if have.get(t.id) != digest(t.rule_json, t.analysis_json, t.tactics):
            todo.append((t.id, t.rule_json, t.analysis_json, t.tactics))
    done = (run or (lambda fn, tasks: map(fn, tasks)))(_compute_row, todo)
    store.write(conn, key, (store.PlanRow(rid, d, b) for rid, d, b in done), keep=ids,
                checked=checked if checked is not None else store.state(conn, key).stamp)
    return len(todo)


def refresh_timed(conn: Any, run: Runner | None = None) -> float:
    """:func:`refresh`, returning the seconds it took (the build's ``timings["plans"]``)."""
    import time

    t = time.perf_counter()
    refresh(conn, run)
    return time.perf_counter() - t


@dataclass(frozen=True, slots=True)
class LoadedPlans:
    """The plan heads of a catalog's rules (id order), and what the cache could not give."""

    db: str
    plans: tuple[PlanHead, ...]
    computed: int  # plans prepared from the analysis in this call (stale, missing, broken)
    checked: bool  # True when every rule's digest was compared (the stamp did not match)
    problems: tuple[Problem, ...] = ()

    def engine_rules(self, problems: list[Problem] | None = None) -> list[EngineRule]:
        """The runnable rules, lazily filled (see :func:`lazy_engine_rule`); a body found
        broken on the way is recomputed from the catalog and reported into ``problems``."""
        def fallback(h: PlanHead, exc: PlanError) -> RulePlan:
            if problems is not None:
                problems.append(_problem(self.db, h.rule.id, str(exc)))
            return recompute(self.db, h.rule.id)

        return [lazy_engine_rule(h, fallback) for h in self.plans if h.runnable]


def _problem(db: str | Path, rule_id: str, why: str) -> Problem:
    return Problem(f"{db}: engine_plans row {rule_id!r}: {why}; the rule is prepared from "
                   "its analysis instead", severity="warning", code="plan-cache")


def recompute(db: str | Path, rule_id: str) -> RulePlan:
    """A rule's plan computed from the catalog's stored rule (no cache involved)."""
    from ruleatlas.store import plans as store

    conn = store.connect(db)
    try:
        texts = store.rule_texts(conn, [rule_id])
    finally:
        conn.close()
    if not texts:
        raise PlanError(f"{db}: no rule {rule_id!r} in the catalog")
    t = texts[0]
    return compute(t.rule_json, t.analysis_json, t.tactics)


def load(db: str | Path, ids: Sequence[str] | None = None, store_back: bool = True
         ) -> LoadedPlans:
    """Plan heads of every rule of the catalog ``db`` (or of ``ids``), from the cache where it
    is current, prepared anew (and written back, with ``store_back``) where it is not."""
    from ruleatlas.store import plans as store

    key = engine_key()
    conn = store.connect(db)
    gc_was = gc.isenabled()
    gc.disable()  # hundreds of thousands of small objects: no collection while they arrive
    try:
        store.snapshot(conn)
        st = store.state(conn, key)
        trusted = (ids is None and st.stamp is not None and st.checked == st.stamp
                   and st.engine == key and st.plans == st.rules)
        if trusted:
            heads, problems, _ = _decode(db, store.plan_rows(conn, key), {})
            if not problems:
                return LoadedPlans(str(db), tuple(heads), 0, False)
        return _check(conn, db, key, ids, st.stamp, store_back and ids is None)
    finally:
        conn.close()
        if gc_was:
            gc.enable()


def _decode(db: str | Path, rows: Sequence[Any], want: Mapping[str, bytes]
            ) -> tuple[list[PlanHead], list[Problem], set[str]]:
    """Heads of ``rows`` (only those whose digest is ``want[id]`` when ``want``), the problems
    of broken rows, and the ids of the rows that gave a head."""
    out: list[PlanHead] = []
    problems: list[Problem] = []
    ok: set[str] = set()
    for r in rows:
        if want and want.get(r.rule_id) != r.digest:
            continue
        try:
            h = loads(r.plan, PlanHead)
            if h.rule.id != r.rule_id:
                raise PlanError(f"the row holds the plan of {h.rule.id!r}")
        except PlanError as exc:
            problems.append(_problem(db, r.rule_id, str(exc)))
            continue
        out.append(h)
        ok.add(r.rule_id)
    return out, problems, ok


def _check(conn: Any, db: str | Path, key: str, ids: Sequence[str] | None, stamp: str | None,
           store_back: bool) -> LoadedPlans:
    """Every rule's digest against its stored plan; stale, missing and broken plans computed."""
    from ruleatlas.store import plans as store

    texts = store.rule_texts(conn, ids)
    want = {t.id: digest(t.rule_json, t.analysis_json, t.tactics) for t in texts}
    good, problems, ok = _decode(db, store.plan_rows(conn, key, ids), want)
    by_id = {h.rule.id: h for h in good}
    fresh: list[store.PlanRow] = []
    for t in texts:
        if t.id in ok:
            continue
        h = head_of(compute(t.rule_json, t.analysis_json, t.tactics))
        by_id[t.id] = h
        fresh.append(store.PlanRow(t.id, want[t.id], dumps(h)))
    if store_back:
        why = store.save(conn, key, fresh, keep=[t.id for t in texts], checked=stamp)
        if why is not None:
            problems.append(Problem(f"{db}: plans not stored ({why}); the next hunt prepares "
                                    "them again", severity="warning", code="plan-cache"))
    plans = tuple(by_id[t.id] for t in texts)
    return LoadedPlans(str(db), plans, len(fresh), True, tuple(problems))
