"""Run many rules over a stream of events: routing, pre-filtering, matching, aggregation.

Per rule, once (:func:`prepare`): its route (``coverage.routing.route_for``: event kinds plus
field maps), whether it can run at all (an ``Opaque`` node, a generating or unknown command, a
filter on a field a command the engine does not replay writes -> "not runnable: reason"), its
aggregation plan, and for SPL the ``eval``/``rex``/... steps replayed in search order
(``engine.pipeline``).

Per event kind ``(channel, event id)``, once (:class:`Engine` group cache): the rules whose route
accepts it, each compiled with that kind's field map, and a :class:`~.matcher.Prefilter` over
their literal anchors.

Per event: :func:`event_key`, a dict lookup for the group, one automaton scan per anchored field,
then the full matcher of the few candidate rules.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ruleatlas.coverage.routing import Key, Route, event_key, route_for
from ruleatlas.engine import datamodels
from ruleatlas.engine.aggregate import Aggregator, AggSpec, agg_spec
from ruleatlas.engine.compile import Matcher, NotRunnable, compile_node
from ruleatlas.engine.ecs import ecs_view, non_windows
from ruleatlas.engine.elastic_rules import NOT_RUNNABLE_TYPES, RuleType, rule_type_of
from ruleatlas.engine.elastic_semantics import compile_elastic, elastic_tree
from ruleatlas.engine.events import Event
from ruleatlas.engine.matcher import Anchor, Prefilter, anchors, text_values
from ruleatlas.engine.pipeline import (
    JoinRows,
    Plan,
    Step,
    Steps,
    compile_steps,
    fields_of,
    join_op,
    plan,
    result_plan,
)
from ruleatlas.engine.sequence import TIME_FIELDS, build_runner, run_sequence
from ruleatlas.engine.sigma_semantics import as_number
from ruleatlas.engine.spl_semantics import route_channel_terms
from ruleatlas.languages import language
from ruleatlas.languages.elastic.rule_types import window_seconds
from ruleatlas.model import (
    Aggregate,
    Analysis,
    Bin,
    Join,
    Node,
    Op,
    Opaque,
    Or,
    Pattern,
    Phase,
    Problem,
    Rule,
    Sequence,
    StageKind,
    predicates,
    walk,
)

# Commands that change nothing a filter or an aggregation reads (display, ordering, macros).
BENIGN = frozenset({
    "table", "fields", "sort", "head", "tail", "dedup", "fillnull", "convert", "search",
    "where", "regex", "rename", "macro", "detection", "condition", "reverse", "eval_time",
})
AGGREGATES = frozenset({"stats", "eventstats"})
# Commands that write fields and that engine.pipeline replays in search order.
REPLAYED = frozenset({"eval", "rex", "rename", "addtotals", "spath"})


# (Channel, EventID) pairs whose event kind the engine remembers (a log has a few dozen).
EVENT_KEY_CACHE = 4096
# Events one sequence, threshold or new-terms rule may hold until the end of a hunt (their
# ECS fields only); past it the rule stops, with a problem in the hunt's report.
MAX_COLLECTED = 1_000_000
# Elastic rule types the engine runs over the events their query matched (engine.elastic_rules)
RULE_TYPES = frozenset({"threshold", "new_terms"})

# The compilers of predicate trees, by ``Language.semantics``.
COMPILERS: Mapping[str, Callable[[Node | None, Mapping[str, str]], Matcher]] = {
    "default": compile_node,
    "elastic": compile_elastic,
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
            self._steps[k] = compile_steps(self.plan.steps, fmap, self.later)
        return self._steps[k]


def _keywords_of(node: Node | None) -> tuple[str, ...]:
    """Lowered literals of the positive keyword predicates (shown as ``matched.keywords``)."""
    out: list[str] = []
    for p, positive in predicates(node):
        if positive and (p.op is Op.KEYWORD or p.field is None):
            for v in p.values:
                lit = v.literal() if isinstance(v, Pattern) else v
                if isinstance(v, Pattern) and lit is None:
                    lit = max((x for x in v.parts if isinstance(x, str)), key=len, default="")
                if isinstance(lit, str) and lit:
                    out.append(lit.lower())
    return tuple(dict.fromkeys(out))


def _computed(analysis: Analysis) -> set[str]:
    c = analysis.extra.get("computed_fields") if analysis.extra else None
    if isinstance(c, Mapping):
        return {str(k) for k in c}
    if isinstance(c, (list, tuple, set)):
        return {str(x) for x in c}
    return set()


def _why_not(rule: Rule, analysis: Analysis, pl: Plan | None, rp: Plan | None,
             ecs: bool = False) -> str | None:
    """The reason a rule cannot run faithfully on single events (given the search's plans,
    ``engine.pipeline``), or None. ``ecs``: an Elastic language's rule (its sequences and rule
    types run over the events they collect)."""
    if rule.source == "elastic" and rule.type and rule.type in NOT_RUNNABLE_TYPES:
        return NOT_RUNNABLE_TYPES[rule.type]
    lang = language(rule.language)
    why = lang.not_runnable(rule, analysis) if lang and lang.not_runnable else None
    if why:
        return why
    if analysis.sequence is not None and not ecs:
        return (f"{analysis.sequence.kind} queries (ordered events joined by keys) are run for "
                "the Elastic languages only")
    for p in analysis.problems:
        if p.severity == "error":
            return f"analysis error: {p.message}"
    for n in walk(analysis.condition):
        if isinstance(n, Opaque):
            return f"cannot run {n.text!r}: {n.reason}"
    for n in walk(analysis.result_condition):
        if isinstance(n, Opaque):
            return f"cannot run {n.text!r}: {n.reason}"
    if analysis.condition is None and not analysis.stages:
        return "the rule has no condition"
    computed = _computed(analysis)
    used = set(fields_of(analysis.condition))
    if pl is not None:  # in search order: eval/rex outputs are computed, others are not
        if pl.uncomputed:
            return ("filters on fields the engine does not compute: " + ", ".join(
                f"{f} ({cmd})" for f, cmd in sorted(pl.uncomputed.items())))
    elif computed & used:
        return ("filters on fields computed by eval/rex the engine does not compute: "
                + ", ".join(sorted(computed & used)))
    last_agg = max((s.index for s in analysis.stages if s.kind is StageKind.AGGREGATE),
                   default=-1)
    aggs = 0
    for st in analysis.stages:
        cmd = st.command.lower()
        if st.kind is StageKind.OPAQUE:
            return f"stage {st.index} ({st.command}) cannot be run: {st.text[:80]!r}"
        if st.kind is StageKind.GENERATE:
            return f"generating command {st.command} (datamodel/lookup search) cannot run on events"
        if st.kind is StageKind.AGGREGATE:
            if ecs and cmd in RULE_TYPES:
                continue  # run over the matched events (engine.elastic_rules)
            if cmd == "tstats":
                why = _tstats_problem(analysis, st)
                if why:
                    return why
            elif cmd not in AGGREGATES:
                return f"aggregation {st.command} is not supported"
            aggs += 1
        if (aggs and st.kind is StageKind.FILTER and st.condition is not None
                and any(s.kind is StageKind.AGGREGATE for s in analysis.stages
                        if s.index > st.index)):
            return "a filter between two aggregations is not supported"
        if cmd in ("bin", "bucket"):
            if _bin_of(analysis, st.index) is None:
                return f"{st.command} stage {st.text[:60]!r} is not supported"
            continue
        if (pl is not None and st.kind is StageKind.TRANSFORM and st.phase is Phase.EVENT
                and cmd in REPLAYED):
            continue  # replayed in order by the pipeline steps
        if (rp is not None and st.kind is StageKind.TRANSFORM and st.index > last_agg
                and cmd in REPLAYED):
            continue  # replayed on the last aggregation's rows
        joined = rp is not None and any(s.kind == "join" and s.stage == st.index
                                        for s in rp.steps)
        if joined:
            continue  # run beside the rule, joined on its rows (engine.pipeline.join_op)
        if cmd == "join" and _join_kind(analysis, st.index) == "inner":
            return ("join (inner, the default) keeps only the rows another search also "
                    "returns: not supported")
        if st.kind is StageKind.TRANSFORM and cmd not in BENIGN:
            outs = set(st.by) | _stage_outputs(st.text)
            later = set(fields_of(analysis.result_condition))
            later |= {f for s in analysis.stages if s.index > st.index
                      for f in fields_of(s.condition)}
            if cmd in ("lookup", "inputlookup", "join", "append", "rex", "eval", "spath",
                       "transaction", "streamstats", "makemv", "mvexpand", "iplocation",
                       "appendpipe", "foreach", "map", "xmlkv", "extract"):
                if outs & later or not outs:
                    return f"{st.command} stage output is used by a later filter"
            elif later:
                return f"command {st.command} is not supported before a filter"
    if rp is not None and rp.uncomputed:
        return ("the result filter reads fields the engine does not compute: " + ", ".join(
            f"{f} ({cmd})" for f, cmd in sorted(rp.uncomputed.items())))
    if (lang is not None and lang.pipeline and not analysis.steps
            and any(s.kind in (StageKind.AGGREGATE, StageKind.TRANSFORM)
                    for s in analysis.stages)):
        return ("the analysis has no pipeline steps (stored by an older Rule Atlas): rebuild "
                "the catalog")
    return None


def _join_kind(analysis: Analysis, stage: int) -> str:
    """``join type=outer x [...]`` -> ``outer`` (``left`` is ``outer``); Splunk's default is
    ``inner``."""
    j = next((x for x in analysis.steps if isinstance(x, Join) and x.stage == stage), None)
    return "inner" if j is None else j.kind


def _bin_of(analysis: Analysis, stage: int) -> tuple[str, float] | None:
    """``bucket span=5m _time`` at ``stage`` -> ``("_time", 300.0)``; None for other forms
    (``bins=``, ``start=``, several fields, no span)."""
    b = next((x for x in analysis.steps if isinstance(x, Bin) and x.stage == stage), None)
    if b is None or b.span is None or len(b.fields) != 1:
        return None
    secs = span_seconds(b.span)
    return None if secs is None else (b.fields[0], secs)


def _prepare_joins(er: EngineRule, rp: Plan, tactics: tuple[str, ...]) -> dict[int, Any]:
    """Each ``join [subsearch]`` after the aggregation: the subsearch prepared as a hidden rule
    the engine runs over the same events, and the join operation reading its rows."""
    ops: dict[int, Any] = {}
    for st in rp.steps:
        if st.kind != "join" or st.join is None:
            continue
        j = st.join
        if j.max != "1":
            raise NotRunnable(f"join max={j.max}: only max=1 (the default) is run")
        if j.subsearch is None:
            raise NotRunnable(f"join (stage {st.stage + 1}) without a subsearch")
        sub_rule = dataclasses.replace(er.rule, id=f"{er.rule.id}#join{st.stage + 1}")
        sub = prepare(sub_rule, j.subsearch, tactics)
        if not sub.runnable:
            raise NotRunnable(f"join subsearch (stage {st.stage + 1}): {sub.reason}")
        sub.hidden = True
        rows = JoinRows(j.fields)
        er.joins.append((sub, rows))
        ops[st.stage] = join_op(j, rows)
    return ops


def _tstats_step(analysis: Analysis) -> Aggregate | None:
    """The search's one tstats (or mstats) step; None when there are several or none."""
    found = [x for x in analysis.steps
             if isinstance(x, Aggregate) and x.command in ("tstats", "mstats")]
    return found[0] if len(found) == 1 else None


def _tstats_problem(analysis: Analysis, st: Any) -> str | None:
    step = _tstats_step(analysis)
    if st.index != 0 or step is None:
        return "tstats after other commands, or more than one tstats, is not supported"
    return datamodels.tstats_problem(step, fields_of(st.condition))


def _prepare_tstats(er: EngineRule, analysis: Analysis) -> None:
    """A runnable tstats search: datamodel fields computed, then its ``where``, on the routed
    events; the pre-filter anchors on the raw fields (``datamodels.anchor_view``)."""
    st = analysis.stages[0]
    step = _tstats_step(analysis)
    assert step is not None and step.datamodel is not None  # checked by _why_not
    dm = step.datamodel
    where = st.condition
    try:  # what the aggregation functions read (values(Processes.dest)) is computed too
        er.agg = agg_spec(step, "stats")
        args = [f.arg for f in er.agg.funcs if f.arg and f.arg != "_time"]
    except NotRunnable:
        args = []  # prepare reports it when it builds the aggregation
    names = list(dict.fromkeys([*fields_of(where), *(b for b in st.by if b != "_time"),
                                *args]))
    fill: tuple[tuple[str, Any], ...] = ()
    value = next((v for k, v in step.options if k.lower() == "fillnull_value"), None)
    if value is not None:
        fill = tuple((b, value) for b in st.by if b != "_time")
    derive = {"datamodel": dm, "names": names, "fill": fill}
    steps = (Step("derive", 0, derive=derive), Step("filter", 0, node=where))
    er.plan = Plan(None, steps, {}, {})
    er.analysis = dataclasses.replace(analysis, condition=None)
    er.anchor_node = datamodels.anchor_view(where, dm)
    er.route = datamodels.route(er.route, dm)


def _stage_outputs(text: str) -> set[str]:
    """Field names an ``eval x=...``/``rex "(?<x>...)"`` stage writes (best effort)."""
    import re

    outs = set(re.findall(r"(?:^|[,|\s])([A-Za-z_][\w.]*)\s*=(?!=)", text))
    outs |= set(re.findall(r"\(\?P?<([A-Za-z_]\w*)>", text))
    outs |= set(re.findall(r"\bas\s+([A-Za-z_][\w.]*)", text, re.I))
    return outs


def _windows_channel(channel: str | None) -> bool:
    """A Windows event log channel (the ECS view's input), not a sourcetype or another OS."""
    return (channel is not None and ":" not in channel
            and not channel.lower().startswith("linux") and channel not in non_windows())


def _every_member(seq: Sequence) -> Node | None:
    """What an event must satisfy to take any part in a sequence (a member, a missing member,
    the until condition); None when a member takes every event."""
    members: list[Node] = []
    for s in (*seq.steps, *((seq.until,) if seq.until is not None else ())):
        if s.condition is None:
            return None
        if s.condition not in members:
            members.append(s.condition)
    return members[0] if len(members) == 1 else Or(tuple(members))


def _prepare_ecs(er: EngineRule, semantics: str) -> str | None:
    """An Elastic language's rule: matched on the ECS view of Windows events, with its
    sequence or rule type run over the events it collects; the reason it cannot run, or None."""
    er.view, er.semantics = "ecs", semantics
    rule, analysis = er.rule, er.analysis
    keys = er.route.keys
    if keys is not None:
        win = frozenset(k for k in keys if _windows_channel(k[0]))
        if not win:
            data = ", ".join(sorted({str(k[0]) for k in keys}))
            return (f"reads {data} data: the engine's ECS view is of Windows event logs only "
                    "(docs/ecs.md)")
        er.route = Route(win, events=er.route.events)
    else:
        er.route = Route(None, events=er.route.events)
    cond = analysis.condition
    if analysis.sequence is not None:
        er.sequence = analysis.sequence
        er.optional = frozenset(str(x) for x in analysis.extra.get("optional_fields") or ())
        cond = _every_member(analysis.sequence)
    for st in analysis.stages:
        if st.kind is StageKind.AGGREGATE and st.command in RULE_TYPES:
            got = rule_type_of(st.command, analysis.extra,
                               window_seconds(rule.extra.get("from")))
            if isinstance(got, str):
                return got
            er.rule_type = got
    if semantics == "elastic":
        cond = elastic_tree(cond)
    # a threshold's result predicates (count >= value) are the rule type's own test
    result = None if er.rule_type is not None else analysis.result_condition
    er.analysis = dataclasses.replace(analysis, condition=cond, result_condition=result)
    return None


def _view_fields(er: EngineRule) -> tuple[str, ...]:
    """The ECS fields a rule reads beyond its condition's: sequence join keys, the rule
    type's fields, the event time (sequences and new terms are ordered in time)."""
    out: list[str] = []
    seq = er.sequence
    if seq is not None:
        for s in (*seq.steps, *((seq.until,) if seq.until is not None else ())):
            out.extend((*seq.by, *s.by))
    if er.rule_type is not None:
        out.extend(er.rule_type.reads)
    return tuple(f for f in dict.fromkeys(out) if f not in er.fields)


def prepare(rule: Rule, analysis: Analysis, tactics: tuple[str, ...] = ()) -> EngineRule:
    """Everything about a rule that does not depend on events (route, plan, runnability)."""
    routing_error: str | None = None
    try:
        route = route_for(rule, analysis)
    except Exception as exc:  # recorded: the rule is not runnable, and the reason says why
        route = Route(None)
        routing_error = f"its events could not be routed: {type(exc).__name__}: {exc}"
    er = EngineRule(rule, analysis, route, tactics=tactics)
    lang = language(rule.language)
    spl = lang is not None and lang.pipeline
    ecs = lang is not None and lang.view == "ecs"
    pl = plan(analysis) if spl else None
    rp = result_plan(analysis) if spl else None
    er.reason = routing_error or _why_not(rule, analysis, pl, rp, ecs)
    if ecs and lang is not None and not er.reason:
        er.reason = _prepare_ecs(er, lang.semantics)
        analysis = er.analysis
    if spl and not er.reason:
        er.plan = pl
        head = er.plan.head if er.plan is not None else route_channel_terms(analysis.condition)
        er.analysis = dataclasses.replace(analysis, condition=head)
        if analysis.stages and analysis.stages[0].command == "tstats":
            _prepare_tstats(er, analysis)
        er.later = frozenset(
            {f for s in analysis.stages if s.kind is StageKind.AGGREGATE for f in s.by}
            | set(fields_of(analysis.result_condition)))
    er.fields = tuple(fields_of(analysis.condition))
    if er.view == "ecs":
        er.fields += _view_fields(er)
    if er.plan is not None:  # what the eval/rex steps read is part of why an event matched
        extra_fields = [f for st in er.plan.steps if st.kind != "filter"
                        for f in sorted(st.reads()) if f not in er.fields]
        er.fields += tuple(dict.fromkeys(extra_fields))
    er.keywords = _keywords_of(analysis.condition)
    if er.reason:
        return er
    try:
        er.compiled(er.route.common_map)
        er.steps(er.route.common_map)
        agg = [x for x in analysis.steps if isinstance(x, Aggregate)]
        if agg:
            specs = [(er.agg or agg_spec(a, "stats"))  # built by _prepare_tstats if it could
                     if a.command == "tstats" else agg_spec(a) for a in agg]
            span = agg[0].span if agg[0].command == "tstats" else None
            if span is not None:
                secs = span_seconds(span)
                if secs is None:
                    raise NotRunnable(f"tstats span={span} is not supported")
                er.bins = (*er.bins, ("_time", secs))
            for st in analysis.stages:
                b = _bin_of(analysis, st.index) if st.command.lower() in (
                    "bin", "bucket") else None
                if b and st.index < agg[0].stage:
                    er.bins = (*er.bins, b)
            er.agg, er.chain = specs[0], tuple(specs[1:])
            if er.plan is not None and er.plan.unrun:
                reads = set(er.agg.by) | {f.arg for f in er.agg.funcs if f.arg}
                bad = sorted(reads & er.plan.unrun.keys())
                if bad:
                    raise NotRunnable("the aggregation reads fields the engine does not "
                                      "compute: " + ", ".join(
                                          f"{f} ({er.plan.unrun[f]})" for f in bad))
            er.result = compile_node(analysis.result_condition)
        elif analysis.result_condition is not None:
            er.result = compile_node(analysis.result_condition)
        if agg and rp is not None:  # the result filters run among the steps, in search order
            er.result_steps = compile_steps(rp.steps, joins=_prepare_joins(er, rp, tactics))
            er.result = None
    except NotRunnable as exc:
        er.reason = exc.message
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
            agg = self.aggregators[idx] = Aggregator(
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
        if len(got) < MAX_COLLECTED:
            got.append((fields, event))
            return
        er = self.rules[idx]
        if er.reason is None:
            er.reason = (f"stopped: more than {MAX_COLLECTED:,} events matched its query "
                         "(engine.runner.MAX_COLLECTED)")
            self.problems.append(Problem(f"rule {er.rule.id}: {er.reason}", "warning",
                                         code="collect-limit"))
            got.clear()

    def _collected_findings(self, idx: int) -> Iterator[Finding]:
        """A sequence's matches, or a threshold / new-terms rule's alerts, over what the rule
        collected: one finding each, on its first event."""
        er = self.rules[idx]
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


_UNITS = {"": 1, "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1, "m": 60, "min": 60,
          "mins": 60, "minute": 60, "minutes": 60, "h": 3600, "hr": 3600, "hrs": 3600,
          "hour": 3600, "hours": 3600, "d": 86400, "day": 86400, "days": 86400}
_SPAN_VALUE = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)", re.I)


def span_seconds(value: str) -> float | None:
    """A span as written (``5m``, ``1h``, ``30``) in seconds; None for other units."""
    m = _SPAN_VALUE.match(value)
    if m is None or m.group(2).lower() not in _UNITS:
        return None
    return float(m.group(1)) * _UNITS[m.group(2).lower()]


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
