"""The local backend: run many rules' plans over a stream of events on this machine.

Per rule, once: its :class:`~.plan.RulePlan` (``engine.plan.plan_rule``: route, runnability,
head predicate, steps, aggregations, sequence, rule type), checked by compiling its trees once
(:func:`checked`) and turned into an :class:`EngineRule` (:func:`engine_rule`; :func:`prepare`
does the three).

Per event kind ``(channel, event id)``, once (:class:`Engine` group cache): the rules whose route
accepts it, each compiled with that kind's field map (Elastic's languages: on the kind's ECS
view, ``engine.ecs``), and a :class:`~.matcher.Prefilter` over their literal anchors.

Per event: :func:`event_key`, a dict lookup for the group, one automaton scan per anchored field,
then the full matcher of the few candidate rules; the SPL steps after the head, aggregations fed,
sequence and rule-type events collected for :meth:`Engine.finish`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ruleatlas.coverage.routing import Key, Route, event_key
from ruleatlas.engine.aggregate import Aggregator, AggSpec
from ruleatlas.engine.compile import Matcher, NotRunnable, compile_node
from ruleatlas.engine.ecs import ecs_view
from ruleatlas.engine.elastic_rules import RuleType
from ruleatlas.engine.elastic_semantics import compile_elastic
from ruleatlas.engine.esql_semantics import compile_esql
from ruleatlas.engine.events import Event
from ruleatlas.engine.matcher import Anchor, Prefilter, anchors, text_values
from ruleatlas.engine.pipeline import (
    JoinRows,
    Plan,
    Step,
    Steps,
    compile_steps,
    join_op,
)
from ruleatlas.engine.plan import PIPELINES, RulePlan, plan_rule, span_seconds
from ruleatlas.engine.sequence import TIME_FIELDS, build_runner, run_sequence
from ruleatlas.engine.sigma_semantics import as_number
from ruleatlas.model import (
    Analysis,
    Node,
    Problem,
    Rule,
    Sequence,
    predicates,
)

__all__ = ["COMPILERS", "Engine", "EngineRule", "Finding", "checked", "engine_rule", "epoch",
           "prepare", "product_ok", "span_seconds"]

# (Channel, EventID) pairs whose event kind the engine remembers (a log has a few dozen).
EVENT_KEY_CACHE = 4096
# Events one sequence, threshold or new-terms rule may hold until the end of a hunt (their
# ECS fields only); past it the rule stops, with a problem in the hunt's report.
MAX_COLLECTED = 1_000_000

# The compilers of predicate trees, by ``Language.semantics``.
COMPILERS: Mapping[str, Callable[[Node | None, Mapping[str, str]], Matcher]] = {
    "default": compile_node,
    "elastic": compile_elastic,
    "esql": compile_esql,
}

@dataclass(slots=True)
class EngineRule:
    """One rule made ready to run (or the reason it cannot)."""

    rule: Rule
    analysis: Analysis
    route: Route
    reason: str | None = None
    agg: AggSpec | None = None
    result: Matcher | None = None
    fields: tuple[str, ...] = ()
    tactics: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    chain: tuple[AggSpec, ...] = ()  # later aggregations, run over the rows of the first
    bins: tuple[tuple[str, float], ...] = ()  # bin/bucket span before the aggregation
    plan: Plan | None = None  # eval/rex computed before a filter (see engine.pipeline)
    later: frozenset[str] = frozenset()  # fields read after the event phase (by, result)
    result_steps: Steps | None = None  # eval/.../filters after the last aggregation, on rows
    anchor_node: Node | None = None  # tstats: what the pre-filter anchors on (datamodels.py)
    joins: list[tuple[EngineRule, JoinRows]] = field(default_factory=list)  # subsearches
    hidden: bool = False  # a join's subsearch: its rows feed the rule, they are no findings
    view: str = "raw"  # "ecs": matched against engine.ecs.ecs_view of each event, no field map
    semantics: str = "default"  # which of COMPILERS runs the trees
    sequence: Sequence | None = None  # EQL sequence/sample: run over the collected events
    optional: frozenset[str] = frozenset()  # ?fields: join keys that may be null
    rule_type: RuleType | None = None  # Elastic threshold/new_terms over the matched events
    source: RulePlan | None = None  # the plan it was made from (shipped to Spark's workers)
    # the rest of the rule, filled in by ready() when the engine first routes an event to it
    # (engine.plans: a hunt reads a cached plan's body only for the event kinds it sees)
    pending: Callable[[EngineRule], None] | None = None
    _compiled: dict[tuple[tuple[str, str], ...], Matcher] = field(default_factory=dict)
    _anchors: dict[tuple[tuple[str, str], ...], set[Anchor] | None] = field(
        default_factory=dict)
    _steps: dict[tuple[tuple[str, str], ...], Steps | None] = field(default_factory=dict)

    @property
    def runnable(self) -> bool:
        return self.reason is None

    @property
    def collects(self) -> bool:
        """The rule's findings come from the events it matched, after the last event
        (a sequence or an Elastic threshold/new-terms rule)."""
        return self.sequence is not None or self.rule_type is not None

    def ready(self) -> EngineRule:
        """The rule with every field filled in (see ``pending``)."""
        fill = self.pending
        if fill is not None:
            self.pending = None
            fill(self)
        return self

    def compiled(self, fmap: Mapping[str, str]) -> tuple[Matcher, set[Anchor] | None]:
        """The matcher and anchors of the event-phase tree under one field map (cached)."""
        return self.matcher(fmap), self.anchors(fmap)

    def matcher(self, fmap: Mapping[str, str]) -> Matcher:
        """The event-phase tree compiled under one field map (cached)."""
        k = tuple(sorted(fmap.items()))
        got = self._compiled.get(k)
        if got is None:
            got = self._compiled[k] = COMPILERS[self.semantics](self.analysis.condition, fmap)
        return got

    def anchors(self, fmap: Mapping[str, str]) -> set[Anchor] | None:
        """The pre-filter's anchors of the rule under one field map (cached)."""
        k = tuple(sorted(fmap.items()))
        if k not in self._anchors:
            node = self.analysis.condition if self.anchor_node is None else self.anchor_node
            self._anchors[k] = anchors(node, fmap)
        return self._anchors[k]

    def seed_anchors(self, fmap: Mapping[str, str], found: set[Anchor] | None) -> None:
        """What :meth:`anchors` gives under ``fmap``, computed before (``engine.plans``)."""
        self._anchors[tuple(sorted(fmap.items()))] = found

    def steps(self, fmap: Mapping[str, str]) -> Steps | None:
        """The eval/rex/filter steps after the head condition under one field map (cached);
        None for the rules whose condition is the whole event filter."""
        if self.plan is None or not self.plan.steps:
            return None
        k = tuple(sorted(fmap.items()))
        if k not in self._steps:
            own = PIPELINES.get(self.semantics)
            self._steps[k] = (own.steps if own else compile_steps)(self.plan.steps, fmap,
                                                                  self.later)
        return self._steps[k]


def engine_rule(p: RulePlan) -> EngineRule:
    """The local backend's form of a plan: an :class:`EngineRule` whose event matchers are
    compiled per event kind by the :class:`Engine`; the row filter and the steps after the
    aggregation compile on first use."""
    rule = p.rule
    er = EngineRule(rule, Analysis(rule.language, condition=p.condition,
                                   result_condition=p.result_condition),
                    p.route, reason=p.reason, agg=p.agg, fields=p.fields, tactics=p.tactics,
                    keywords=p.keywords, chain=p.chain, bins=p.bins, plan=p.plan,
                    later=p.later, anchor_node=p.anchor_node, hidden=p.hidden, view=p.view,
                    semantics=p.semantics, sequence=p.sequence, optional=p.optional,
                    rule_type=p.rule_type, source=p)
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


def _lazy_matcher(node: Node | None) -> Matcher:
    """``compile_node(node)`` on first call (the plan says it compiles: it did when made)."""
    compiled: list[Matcher] = []

    def run(fields: Mapping[str, Any]) -> bool:
        if not compiled:
            compiled.append(compile_node(node))
        return compiled[0](fields)

    return run


def _lazy_steps(steps: tuple[Step, ...], joins: Mapping[int, Callable[[dict[str, Any]], bool]]
                ) -> Steps:
    compiled: list[Steps | None] = []

    def run(fields: Mapping[str, Any]) -> dict[str, Any] | None:
        if not compiled:
            compiled.append(compile_steps(steps, joins=joins))
        fn = compiled[0]
        return dict(fields) if fn is None else fn(fields)

    return run


def checked(p: RulePlan) -> RulePlan:
    """The plan once the local backend has compiled every tree and step of it (a tree it cannot
    run makes the plan not runnable, with the reason), with the pre-filter's anchors under the
    route's common field map (most event kinds use it)."""
    if not p.runnable:
        return p
    joins = tuple(dataclasses.replace(j, sub=checked(j.sub)) for j in p.joins)
    p = dataclasses.replace(p, joins=joins)
    fmap = p.route.common_map
    try:
        for j in joins:
            if not j.sub.runnable:
                raise NotRunnable(f"join subsearch (stage {j.stage + 1}): {j.sub.reason}")
        er = engine_rule(p)
        er.matcher(fmap)
        er.steps(fmap)
        if p.has_result:
            compile_node(p.result_condition)
        if p.result_plan is not None:
            compile_steps(p.result_plan.steps, joins={j.stage: _true for j in joins})
    except NotRunnable as exc:
        return dataclasses.replace(p, reason=exc.message)
    got = er.anchors(fmap)
    return dataclasses.replace(p, anchors=None if got is None else frozenset(got),
                               has_anchors=True)


def prepare(rule: Rule, analysis: Analysis, tactics: tuple[str, ...] = ()) -> EngineRule:
    """A rule made ready to run on this machine: its plan (``engine.plan.plan_rule``), checked
    by the local compiler (:func:`checked`), as an :class:`EngineRule` holding the whole rule."""
    er = engine_rule(checked(plan_rule(rule, analysis, tactics)))
    er.rule = rule
    return er
# --------------------------------------------------------------------------------------------
# Findings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule matching one event (or one aggregated row, with its group's first event)."""

    rule: EngineRule
    event: Event
    matched: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        r = self.rule.rule
        return {
            "rule_id": r.id,
            "rule_title": r.title,
            "source": r.source,
            "severity": r.severity,
            "file": self.event.file,
            "record_id": self.event.record_id,
            "time": self.event.time,
            "host": self.event.host,
            "matched": dict(self.matched),
            "tactics": list(self.rule.tactics),
        }


def _short(v: Any, limit: int = 300) -> Any:
    if isinstance(v, str) and len(v) > limit:
        return v[:limit] + "..."
    return v


def matched_fields(fields: Mapping[str, Any], names: Iterable[tuple[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for rule_field, ev_field in names:
        v = fields.get(ev_field)
        if v is not None:
            out[rule_field] = _short(v)
    return out


# --------------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------------


def is_windows_key(key: Key) -> bool:
    """A Windows event log record: a channel name (not a sourcetype) and a numeric event id."""
    ch, eid = key
    return (ch is not None and ":" not in ch and eid is not None and eid.isdigit()
            and not ch.lower().startswith("linux"))


def product_ok(er: EngineRule, key: Key) -> bool:
    """The logsource ``product`` gate for rules the routing table cannot narrow (route "any"):
    a Sigma ``product: cisco`` keyword rule must not run on Windows events, nor a ``product:
    windows`` rule on CloudTrail records. Any rule that declares a logsource product is gated
    (Sigma's do; the other sources declare none)."""
    if not er.route.any:
        return True
    product = str(er.rule.logsource.get("product") or "").lower()
    if not product:
        return True
    return (product == "windows") == is_windows_key(key)


def _never(_fields: Mapping[str, Any]) -> bool:
    return False


def _view_only(rules: list[EngineRule]) -> frozenset[str] | None:
    """The ECS fields some rule of ``rules`` reads (and the event time); None when a rule
    searches every field (a keyword)."""
    out: set[str] = set(TIME_FIELDS)
    for er in rules:
        if er.keywords or any(p.field is None for p, _ in predicates(er.analysis.condition)):
            return None
        out.update(er.fields)
    return frozenset(out)


class _Group:
    """The rules one event kind reaches: their anchors in one :class:`Prefilter`; each rule's
    matcher (and SPL steps) compiled the first time the pre-filter names it a candidate, so a
    kind with 2,000 routed rules compiles the few its events can match, not all of them."""

    __slots__ = ("ecs", "fmaps", "matchers", "names", "only", "prefilter", "probe", "rules",
                 "slots", "spaced", "steps")

    def __init__(self, key: Key, rules: list[tuple[int, EngineRule]], min_score: int,
                 view: str = "raw") -> None:
        self.ecs: _Group | None = None  # the rules matched on the ECS view of the events
        self.only: frozenset[str] | None = None  # the ECS fields they read (None: all)
        if view == "raw":
            ecs = [(i, r) for i, r in rules if r.view == "ecs"]
            if ecs:
                rules = [(i, r) for i, r in rules if r.view != "ecs"]
                self.ecs = _Group(key, ecs, min_score, "ecs")
        else:
            self.only = _view_only([r for _, r in rules])
        self.slots: list[int] = []
        self.rules: list[EngineRule] = []
        self.fmaps: list[Mapping[str, str]] = []
        self.matchers: list[Matcher] = []
        self.steps: list[Steps | None] = []  # eval/rex/filters after the head (SPL)
        self.names: list[tuple[tuple[str, str], ...]] = []
        entries: list[set[Anchor] | None] = []
        for idx, er in rules:
            fmap = er.route.field_map(key) if er.view != "ecs" else {}
            self.slots.append(idx)
            self.rules.append(er)
            self.fmaps.append(fmap)
            self.matchers.append(self._first(len(self.matchers)))
            self.steps.append(None)
            self.names.append(tuple((f, fmap.get(f, f)) for f in er.fields))
            entries.append(er.anchors(fmap))
        self.prefilter = Prefilter(entries, min_score)
        self.spaced = False  # events of this kind have field names with spaces (Defender)
        self.probe = 50  # how many more events to look at before deciding they do not

    def _first(self, s: int) -> Matcher:
        """Slot ``s``'s matcher until it is compiled: compiles, then matches."""
        def first(fields: Mapping[str, Any]) -> bool:
            return self.compile(s)(fields)
        return first

    def compile(self, s: int) -> Matcher:
        er, fmap = self.rules[s], self.fmaps[s]
        try:
            m = er.matcher(fmap)
            self.steps[s] = er.steps(fmap)
        except NotRunnable as exc:  # only under this map (a mapped field changes a value)
            er.reason = exc.message
            m = _never
        self.matchers[s] = m
        return m


class Engine:
    """Runs prepared rules on events; see the module docstring for the three levels of work.

    ``prefilter=False`` evaluates every routed rule on every event (for tests and benchmarks).
    """

    def __init__(self, rules: Iterable[EngineRule], prefilter: bool = True,
                 route: bool = True) -> None:
        self.rules = [r for r in rules if r.runnable]
        # joins' subsearches run as hidden rules over the same events; their rows go to the
        # JoinRows the joining rule reads in finish()
        self._join_rows: dict[int, JoinRows] = {}
        i = 0
        while i < len(self.rules):  # subsearches of subsearches too
            for sub, rows in self.rules[i].joins:
                self._join_rows[len(self.rules)] = rows
                self.rules.append(sub)
            i += 1
        self.use_prefilter = prefilter
        self.use_route = route
        self._groups: dict[Key, _Group] = {}
        self._keys: dict[tuple[Any, Any], Key] = {}  # (Channel, EventID) as read -> key
        self._by_key: dict[Key, list[int]] | None = None  # route key -> rule indexes
        self._anywhere: list[int] = []  # rules routed to every event
        # made on a rule's first aggregated event (an aggregator without events has no rows)
        self.aggregators: dict[int, Aggregator] = {}
        self.events = 0
        self.candidates = 0
        # the events each sequence / threshold / new-terms rule matched (their ECS fields)
        self.collected: dict[int, list[tuple[Mapping[str, Any], Event]]] = {}
        self.problems: list[Problem] = []

    def _routed(self, key: Key) -> list[int]:
        """Indexes of the rules whose route accepts ``key``, in rule order: the index by route
        key is built once, so a new event kind does not scan every rule."""
        if self._by_key is None:
            by_key: dict[Key, list[int]] = {}
            anywhere: list[int] = []
            for i, r in enumerate(self.rules):
                if r.route.keys is None:
                    anywhere.append(i)
                else:
                    for k in r.route.keys:
                        by_key.setdefault(k, []).append(i)
            self._by_key, self._anywhere = by_key, anywhere
        hit = set(self._anywhere)
        hit.update(self._by_key.get(key, ()))
        hit.update(self._by_key.get((key[0], None), ()))
        return sorted(hit)

    def _group(self, key: Key) -> _Group:
        g = self._groups.get(key)
        if g is None:
            rules = self.rules
            chosen = ([(i, rules[i].ready()) for i in self._routed(key)
                       if product_ok(rules[i], key)]
                      if self.use_route else [(i, r.ready()) for i, r in enumerate(rules)])
            g = self._groups[key] = _Group(key, chosen, 1 if self.use_prefilter else 10**9)
        return g

    def aggregator(self, idx: int) -> Aggregator:
        """Rule ``idx``'s aggregator, made on its first row (the result condition waits for
        the last aggregation of a chain)."""
        agg = self.aggregators.get(idx)
        if agg is None:
            er = self.rules[idx].ready()
            assert er.agg is not None
            own = PIPELINES.get(er.semantics)
            agg = self.aggregators[idx] = own.aggregator(er.agg, er.plan) if own else Aggregator(
                er.agg, _true if er.chain else (er.result or _true))
        return agg

    def match(self, event: Event) -> Iterator[Finding]:
        """Findings of the stateless rules on one event; feeds the aggregating ones."""
        self.events += 1
        fields = event.fields
        if self.use_route:
            ck = (fields.get("Channel"), fields.get("EventID"))
            cacheable = type(ck[0]) is str and type(ck[1]) in (int, str)
            key = self._keys.get(ck) if cacheable else None
            if key is None:
                key = event_key(fields)
                if cacheable and len(self._keys) < EVENT_KEY_CACHE:
                    self._keys[ck] = key
        else:
            key = (None, None)
        g = self._groups.get(key) or self._group(key)
        if g.spaced or g.probe:
            _space_aliases(g, fields)
        if g.slots:
            yield from self._match_group(g, fields, event)
        if g.ecs is not None:
            yield from self._match_group(g.ecs, ecs_view(fields, key, g.ecs.only), event)

    def _match_group(self, g: _Group, fields: dict[str, Any], event: Event
                     ) -> Iterator[Finding]:
        """Findings of one group's rules on one event's fields (raw, or its ECS view)."""
        slots = g.prefilter.candidates(fields)
        self.candidates += len(slots)
        for s in slots:
            if g.matchers[s](fields):
                steps = g.steps[s]
                fs = fields if steps is None else steps(fields)  # eval/rex, then their filters
                if fs is None:
                    continue
                idx = g.slots[s]
                er = self.rules[idx]
                if er.collects:
                    self.collect(idx, fs, event)
                    continue
                if er.agg is not None:
                    self.aggregator(idx).add(_agg_input(er, event, g.names[s], fs), event)
                    continue
                if er.result is not None and not er.result(fs):
                    continue
                if er.hidden:  # a join's subsearch without aggregation: its rows are events
                    self._join_rows[idx].rows.append(dict(fs))
                    continue
                found = matched_fields(fs, g.names[s])
                if er.keywords:
                    text = text_values(fields)
                    found["keywords"] = [k for k in er.keywords if k in text]
                yield Finding(er, event, found)

    def collect(self, idx: int, fields: Mapping[str, Any], event: Event) -> None:
        """Keep an event a collecting rule matched, for :meth:`finish` (at most
        :data:`MAX_COLLECTED` per rule: past it the rule stops, with a problem)."""
        got = self.collected.setdefault(idx, [])
        er = self.rules[idx].ready()  # (a --jobs parent replays events it never routed)
        if len(got) < MAX_COLLECTED:  # only what the rule reads and what a finding shows
            keep = (*er.fields, *TIME_FIELDS)
            got.append(({k: fields[k] for k in keep if k in fields}, Event(
                {k: event.fields[k] for k in _EVENT_KEYS if k in event.fields}, event.file,
                event.position)))
            return
        if er.reason is None:
            er.reason = (f"stopped: more than {MAX_COLLECTED:,} events matched its query "
                         "(engine.runner.MAX_COLLECTED)")
            self.problems.append(Problem(f"rule {er.rule.id}: {er.reason}", "warning",
                                         code="collect-limit"))
            got.clear()

    def _collected_findings(self, idx: int) -> Iterator[Finding]:
        """A sequence's matches, or a threshold / new-terms rule's alerts, over what the rule
        collected: one finding each, on its first event (the rule filled in first: with
        worker processes the parent never routed an event to it)."""
        er = self.rules[idx].ready()
        got = self.collected.get(idx) or []
        if er.reason is not None or not got:
            return
        event_of = {id(f): ev for f, ev in got}
        if er.rule_type is not None:
            for head, said in er.rule_type.alerts([f for f, _ in got]):
                said.update({k: _short(v) for k, v in head.items()
                             if k in er.fields and k not in said})
                yield Finding(er, event_of[id(head)], said)
            return
        assert er.sequence is not None
        compiler = COMPILERS[er.semantics]
        runner = build_runner(er.sequence, lambda node: compiler(node, {}),
                              optional=er.optional)
        for m in run_sequence(runner, [f for f, _ in got]):
            said = {"sequence.by": list(m.key),
                    "sequence.events": [_member(event_of[id(f)]) for f in m.events]}
            yield Finding(er, event_of[id(m.events[0])], said)

    def finish(self) -> Iterator[Finding]:
        """Findings of the aggregating rules, once every event has been seen (joins'
        subsearches first: their rows are what the joining rules read)."""
        for idx in sorted(self._join_rows, reverse=True):  # a nested subsearch before its own
            rows = self._join_rows[idx]
            if self.rules[idx].agg is not None:
                rows.set([dict(f.matched) for f in self._finish_one(idx, raw=True)])
        for idx in sorted(self.aggregators):  # rule order, whichever saw events first
            if idx not in self._join_rows:
                yield from self._finish_one(idx)
        for idx in sorted(self.collected):
            yield from self._collected_findings(idx)

    def _finish_one(self, idx: int, raw: bool = False) -> Iterator[Finding]:
        er = self.rules[idx]
        agg = self.aggregators.get(idx)
        if agg is None:
            return
        rows = agg.rows()
        for n, spec in enumerate(er.chain, 1):  # stats | eventstats ...: rows are events
            last = n == len(er.chain)
            nxt = Aggregator(spec, (er.result or (lambda _: True)) if last
                             else (lambda _: True))
            for row, event in rows:
                nxt.add(row, event)
            rows = nxt.rows()
        for row, event in rows:
            out = row if er.result_steps is None else er.result_steps(row)
            if out is None:
                continue
            yield Finding(er, event, out if raw else {k: _short(v) for k, v in out.items()})

    def run(self, events: Iterable[Event]) -> Iterator[Finding]:
        for ev in events:
            yield from self.match(ev)
        yield from self.finish()


# What a finding reads of its event (Event.record_id, time, host, channel, event_id)
_EVENT_KEYS = ("EventRecordID", "TimeCreated", "UtcTime", "@timestamp", "EventTime", "timestamp",
               "_time", "Computer", "Channel", "EventID")


def _member(ev: Event) -> dict[str, Any]:
    """One event of a sequence as a finding names it."""
    return {"file": ev.file, "record_id": ev.record_id, "time": ev.time}


def _true(_fields: Mapping[str, Any]) -> bool:
    return True


def _space_aliases(g: _Group, fields: dict[str, Any]) -> None:
    """Windows Defender (and a few other providers) render EventData names with spaces
    (``Threat Name``); Sigma rules name them without (``ThreatName``), as SigmaHQ's own
    regression checker reads them. Add the spaceless name beside the original."""
    if g.probe:
        g.probe -= 1
    spaced = [k for k in fields if " " in k]
    if spaced:
        g.spaced = True
        for k in spaced:
            fields.setdefault(k.replace(" ", ""), fields[k])


def epoch(v: Any) -> float | None:
    """Seconds since 1970 from an event time (ISO text, ``2020-09-02 01:43:50.069``, number)."""
    n = as_number(v)
    if n is not None:
        return n
    if not isinstance(v, str):
        return None
    t = v.strip().replace("Z", "+00:00")
    try:
        d = datetime.fromisoformat(t)
    except ValueError:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    return d.timestamp()


def _agg_input(er: EngineRule, event: Event, names: tuple[tuple[str, str], ...],
               fields: Mapping[str, Any]) -> dict[str, Any]:
    """What an aggregation reads of one event (``fields``: the event's, with what eval/rex
    computed): mapped names, ``_time`` (Splunk's event time, from the event's own time) and
    the bin/bucket spans applied."""
    out = _mapped(fields, names)
    if "_time" not in out:
        t = epoch(event.time)
        if t is not None:
            out["_time"] = t
    for name, span in er.bins:
        v = epoch(out.get(name)) if name == "_time" else as_number(out.get(name))
        if v is not None:
            out[name] = (v // span) * span
    return out


def _mapped(fields: Mapping[str, Any], names: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """Event fields plus the rule's names for mapped ones (so ``by Image`` reads NewProcessName
    on Security 4688)."""
    out = dict(fields)
    for rule_field, ev_field in names:
        if rule_field != ev_field and ev_field in fields:
            out[rule_field] = fields[ev_field]
    return out
