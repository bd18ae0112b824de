"""Rule plans kept in the catalog, so that ``hunt`` starts without planning every rule.

:func:`~.plan.plan_rule` works out, once per rule, everything that does not depend on events:
the route, whether the rule can run (and why not), the steps and aggregations, the fields a
finding shows; :func:`~.runner.checked` then has the local compiler compile every tree once.
Doing that for the whole catalog (decoding every analysis, routing, compiling every tree to
find what cannot run) took 6-7 s before the first event was read. The :class:`~.plan.RulePlan`
is that work as data (never closures); :func:`~.runner.engine_rule` turns it into a runnable
rule whose matchers are compiled later, per event kind and only for the rules a kind's events
reach.

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
from ruleatlas.engine.elastic_rules import Cardinality, RuleType
from ruleatlas.engine.pipeline import Plan, Step
from ruleatlas.engine.plan import JoinPlan, RulePlan, plan_rule
from ruleatlas.engine.runner import EngineRule, checked, engine_rule
from ruleatlas.model import Analysis, Problem, Rule, analysis_from_dict

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


def by_constructor(cls: type) -> Callable[[Any], tuple[Any, ...]]:
    """A pickle reducer of the dataclass ``cls`` that rebuilds each object by its constructor:
    a frozen slotted dataclass otherwise loads through a Python ``__setstate__`` that walks
    ``dataclasses.fields`` once per object (a plan loads ~1.7x faster this way; the OTRF
    corpus's 28,182 findings from Spark's tasks load in 0.45 s, not 0.95 s)."""
    names = tuple(f.name for f in dataclasses.fields(cls))

    def reduce(o: Any) -> tuple[Any, ...]:
        return (cls, tuple([getattr(o, n) for n in names]))

    return reduce


# A frozen slotted dataclass pickles by default through a Python __setstate__ per object;
# rebuilt by its constructor instead (one C call per object), a plan loads ~1.7x faster.
_DISPATCH = {c: by_constructor(c) for c in _CLASSES}


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
    return checked(plan_rule(rule, analysis, tactics or tactics_of(rule)))


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
