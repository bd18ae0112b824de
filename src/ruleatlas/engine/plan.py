"""The backend-neutral plan of a rule: what to run on events, as data (no closures).

:func:`plan_rule` decides, once per rule, everything that does not depend on events:

* the **route**: the event kinds the rule may look at and the field maps to read them with
  (``coverage.routing.route_for``; Elastic languages read the ECS view, Windows kinds only);
* whether it can run at all, and the **reason** when it cannot (an ``Opaque`` node, a
  generating or unknown command, a filter on a field no replayed step computes, an Elastic
  machine-learning rule, ...);
* the **head** predicate tree every event is tested with (``condition``), the typed pipeline
  **steps** replayed after it in search order (SPL ``eval``/``rex``/``rename``/filters:
  ``engine.pipeline.Plan``), the **aggregations** (``AggSpec``: functions, ``by``, bins; a
  chain of them), the **result** filter and steps on the aggregated rows, **joins** (their
  subsearch as a plan of its own), an EQL **sequence** and an Elastic **rule type**
  (threshold, new terms).

A :class:`RulePlan` holds model nodes, typed steps and frozen specs only, so it pickles into
the catalog (``engine.plans``) and any backend can read it:

* the local engine (``engine.runner``: :func:`~.runner.engine_rule` compiles a plan into
  Python matchers, per event kind, behind a literal pre-filter; ``prepare`` is
  ``plan_rule`` plus a check that the local compiler runs every tree);
* the SQL backends (``engine.sql``: Spark SQL and DuckDB compile the same plan's trees with
  sqlglot; what SQL cannot express falls back to the local engine with the reason).

The engine never re-reads query text: everything comes from the language's lowering
(``Analysis``: stages, steps, sequence, extra).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ruleatlas.coverage.routing import Key, Route, route_for
from ruleatlas.engine import datamodels
from ruleatlas.engine.aggregate import AggSpec, agg_spec
from ruleatlas.engine.compile import Matcher, NotRunnable, compile_node
from ruleatlas.engine.ecs import (
    constants,
    described_channels,
    described_ids,
    may_have,
    non_windows,
    reads_windows,
)
from ruleatlas.engine.elastic_rules import NOT_RUNNABLE_TYPES, RuleType, rule_type_of
from ruleatlas.engine.elastic_semantics import compile_elastic, elastic_tree
from ruleatlas.engine.esql_semantics import ESQL, PipelineSemantics
from ruleatlas.engine.pipeline import Plan, Step, fields_of, plan, result_plan, stage_writes
from ruleatlas.engine.spl_semantics import route_channel_terms
from ruleatlas.languages import language
from ruleatlas.languages.elastic.rule_types import window_seconds
from ruleatlas.model import (
    Aggregate,
    Analysis,
    And,
    Bin,
    Const,
    Join,
    Node,
    Not,
    Op,
    Opaque,
    Or,
    Pattern,
    Phase,
    Predicate,
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
# Elastic rule types the engine runs over the events their query matched (engine.elastic_rules)
RULE_TYPES = frozenset({"threshold", "new_terms"})
# Languages whose pipelines the engine replays with their own semantics (plan, event steps and
# aggregation), by ``Language.semantics``: ES|QL (engine.esql_semantics).
PIPELINES: Mapping[str, PipelineSemantics] = {"esql": ESQL}


@dataclass(frozen=True, slots=True)
class JoinPlan:
    """A ``join [subsearch]`` after the aggregation: its stage, the join's options (fields,
    type, max, overwrite) and the subsearch's own plan (run hidden beside the rule)."""

    stage: int
    spec: Join  # without its subsearch (``sub`` is its plan)
    sub: RulePlan


@dataclass(frozen=True, slots=True)
class RulePlan:
    """Everything :func:`plan_rule` decides about a rule, as data.

    ``rule`` keeps the fields a finding, a filter or a report reads (id, title, source, path,
    status, severity, language, logsource, ATT&CK ids); the query, body and description stay in
    ``rules.rule_json``. ``condition`` is the event-phase tree every routed event is tested with
    (for SPL the head of the search, for tstats None, for a sequence any of its members);
    ``plan`` the steps after it (SPL eval/rex/filters, on events); ``agg``/``chain``/``bins``
    the aggregations; ``result_condition`` and ``has_result`` the row filter of a rule that has
    one, ``result_plan`` the steps after the last aggregation (with ``joins``); ``view`` the
    events' shape the trees read (``raw`` or ``ecs``) and ``semantics`` the compiler of
    ``engine.runner.COMPILERS``; ``sequence``/``optional`` an EQL sequence and its nullable
    keys; ``rule_type`` an Elastic threshold or new-terms rule. ``anchors`` (the local
    pre-filter's literals under the route's common map) are filled in by the local backend.
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
    anchors: frozenset[tuple[str, str]] | None = None
    has_anchors: bool = False
    view: str = "raw"
    semantics: str = "default"
    sequence: Sequence | None = None
    optional: frozenset[str] = frozenset()
    rule_type: RuleType | None = None

    @property
    def runnable(self) -> bool:
        return self.reason is None

    @property
    def collects(self) -> bool:
        """Findings come from the events the rule matched, after the last event (a sequence or
        an Elastic threshold / new-terms rule)."""
        return self.sequence is not None or self.rule_type is not None


def rule_head(rule: Rule) -> Rule:
    """The rule without the text a hunt never reads (query, body, description, references)."""
    return dataclasses.replace(rule, query="", body="", description="", references=(),
                               falsepositives=(), how_to_implement=None, tests=(), extra={})

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
    if ecs and lang is not None and lang.semantics in PIPELINES:
        return None  # the rest is judged by the language's own pipeline (_plan_ecs)
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
            outs = set(st.by) | stage_writes(analysis, st.index)
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


def _plan_joins(p: RulePlan, rp: Plan) -> tuple[JoinPlan, ...]:
    """Each ``join [subsearch]`` after the aggregation: the subsearch planned as a hidden rule
    run over the same events, whose rows the join reads."""
    out: list[JoinPlan] = []
    for st in rp.steps:
        if st.kind != "join" or st.join is None:
            continue
        j = st.join
        if j.max != "1":
            raise NotRunnable(f"join max={j.max}: only max=1 (the default) is run")
        if j.subsearch is None:
            raise NotRunnable(f"join (stage {st.stage + 1}) without a subsearch")
        sub_rule = dataclasses.replace(p.rule, id=f"{p.rule.id}#join{st.stage + 1}")
        sub = plan_rule(sub_rule, j.subsearch, p.tactics)
        if not sub.runnable:
            raise NotRunnable(f"join subsearch (stage {st.stage + 1}): {sub.reason}")
        out.append(JoinPlan(st.stage, dataclasses.replace(j, subsearch=None),
                            dataclasses.replace(sub, hidden=True)))
    return tuple(out)


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


def _plan_tstats(p: RulePlan, analysis: Analysis) -> RulePlan:
    """A runnable tstats search: datamodel fields computed, then its ``where``, on the routed
    events; the pre-filter anchors on the raw fields (``datamodels.anchor_view``)."""
    st = analysis.stages[0]
    step = _tstats_step(analysis)
    assert step is not None and step.datamodel is not None  # checked by _why_not
    dm = step.datamodel
    where = st.condition
    agg: AggSpec | None = None
    try:  # what the aggregation functions read (values(Processes.dest)) is computed too
        agg = agg_spec(step, "stats")
        args = [f.arg for f in agg.funcs if f.arg and f.arg != "_time"]
    except NotRunnable:
        args = []  # plan_rule reports it when it builds the aggregation
    names = list(dict.fromkeys([*fields_of(where), *(b for b in st.by if b != "_time"),
                                *args]))
    fill: tuple[tuple[str, Any], ...] = ()
    value = next((v for k, v in step.options if k.lower() == "fillnull_value"), None)
    if value is not None:
        fill = tuple((b, value) for b in st.by if b != "_time")
    derive = {"datamodel": dm, "names": names, "fill": fill}
    steps = (Step("derive", 0, derive=derive), Step("filter", 0, node=where))
    return dataclasses.replace(
        p, agg=agg, plan=Plan(None, steps, {}, {}), condition=None,
        anchor_node=datamodels.anchor_view(where, dm), route=datamodels.route(p.route, dm))


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


Verdict = bool | None  # three-valued: None when the kind's constants cannot tell


def _verdict(node: Node | None, key: Key, consts: Mapping[str, Any],
             semantics: str) -> Verdict:
    """Whether ``node`` can be true of an event of kind ``key``, whose ECS constants are
    ``consts``: a predicate on a constant is decided by its value, one on a field the kind's
    view never has as on a missing field; on another field it is unknown."""
    if node is None:
        return True
    if isinstance(node, Predicate):
        if node.field is None:
            return None
        if node.field in consts:
            event: dict[str, Any] = {node.field: consts[node.field]}
        elif not may_have(key, node.field):
            event = {}
        else:
            return None
        test = _predicate_test(node, semantics)
        return None if test is None else test(event)
    if isinstance(node, Not):
        v = _verdict(node.arg, key, consts, semantics)
        return None if v is None else not v
    if isinstance(node, (And, Or)):
        vs = [_verdict(a, key, consts, semantics) for a in node.args]
        decisive = isinstance(node, Or)  # True decides an Or, False an And
        if decisive in vs:
            return decisive
        return None if None in vs else not decisive
    if isinstance(node, Const):
        return bool(node.value)
    return None


@lru_cache(maxsize=16384)
def _predicate_test(node: Predicate, semantics: str) -> Matcher | None:
    """A predicate compiled once for :func:`_verdict` (every kind tests the same ones)."""
    try:
        return (compile_elastic if semantics == "elastic" else compile_node)(node, {})
    except NotRunnable:
        return None


def _ecs_kinds(cond: Node | None, keys: frozenset[Key], semantics: str) -> frozenset[Key]:
    """The event kinds of ``keys``' channels whose ECS constants (``event.category``,
    ``event.type``, ``event.action``, ``event.code``, the dataset) do not rule ``cond`` out.
    A category names more kinds in Elastic's pipelines than the coverage table lists
    (``process where event.action == "CreateRemoteThread"`` is Sysmon 8)."""
    out: set[Key] = set()
    for ch in {k[0] for k in keys}:
        mine = {k for k in keys if k[0] == ch}
        if (ch, None) in mine or not described_ids(ch):
            out |= mine
            continue
        for k in mine | {(ch, e) for e in described_ids(ch)}:
            if _verdict(cond, k, constants(k), semantics) is not False:
                out.add(k)
    return frozenset(out)


def _never_windows(cond: Node | None, semantics: str) -> bool:
    """Whether a rule routed to any event can match no Windows event's view: every kind the
    mapping describes, and an event of a channel it does not describe (the common fields
    only), rules the condition out."""
    kinds: list[Key] = [(ch, e) for ch in described_channels() for e in described_ids(ch)]
    kinds.append(("(a channel the mapping does not describe)", None))
    return all(_verdict(cond, k, constants(k), semantics) is False for k in kinds)


def _plan_ecs(p: RulePlan, analysis: Analysis, semantics: str) -> RulePlan:
    """An Elastic language's rule: matched on the ECS view of Windows events, with its
    sequence or rule type run over the events it collects (or the reason it cannot run)."""
    p = dataclasses.replace(p, view="ecs", semantics=semantics)
    rule, keys = p.rule, p.route.keys
    if keys is not None:
        win = frozenset(k for k in keys if _windows_channel(k[0]))
        if not win:
            data = ", ".join(sorted({str(k[0]) for k in keys}))
            return dataclasses.replace(p, reason=(
                f"reads {data} data: the engine's ECS view is of Windows event logs only "
                "(docs/ecs.md)"))
        keys = win
    else:
        indices = _indices(rule, analysis)
        if indices and not reads_windows(indices):
            return dataclasses.replace(p, reason=(
                f"reads {', '.join(indices)}: not Windows event logs, the engine's ECS view is "
                "of Windows event logs only (docs/ecs.md)"))
        if semantics not in PIPELINES and _never_windows(analysis.condition, semantics):
            return dataclasses.replace(p, reason=(
                "cannot match the ECS view of any Windows event: it needs values or fields "
                "the Windows integrations never give (docs/ecs.md)"))
    p = dataclasses.replace(p, route=Route(keys, events=p.route.events))
    cond = analysis.condition
    if analysis.sequence is not None:
        cond = _every_member(analysis.sequence)
        p = dataclasses.replace(p, sequence=analysis.sequence, optional=frozenset(
            str(x) for x in analysis.extra.get("optional_fields") or ()))
    for st in analysis.stages:
        if st.kind is StageKind.AGGREGATE and st.command in RULE_TYPES:
            got = rule_type_of(st.command, analysis.extra,
                               window_seconds(rule.extra.get("from")))
            if isinstance(got, str):
                return dataclasses.replace(p, reason=got)
            p = dataclasses.replace(p, rule_type=got)
    own = PIPELINES.get(semantics)
    if own is not None:
        esql = own.prepare(analysis)
        if isinstance(esql, str):
            return dataclasses.replace(p, reason=esql)
        return dataclasses.replace(p, plan=Plan(None, esql.steps, {}, {}), agg=esql.agg,
                                   later=esql.reads, anchor_node=esql.anchors,
                                   condition=esql.head, result_condition=None)
    if semantics == "elastic":
        cond = elastic_tree(cond)
    if keys is not None:
        kinds = _ecs_kinds(cond, keys, semantics)
        if not kinds:
            return dataclasses.replace(p, reason=(
                "cannot match the ECS view of its event kinds: it needs values or fields the "
                "Windows integrations never give those events (docs/ecs.md)"))
        p = dataclasses.replace(p, route=Route(kinds, events=p.route.events))
    # a threshold's result predicates (count >= value) are the rule type's own test
    result = None if p.rule_type is not None else analysis.result_condition
    return dataclasses.replace(p, condition=cond, result_condition=result)


def _indices(rule: Rule, analysis: Analysis) -> tuple[str, ...]:
    """The index patterns a rule searches (``index`` of the rule; ES|QL's ``FROM``, also of
    each query of a hunting file)."""
    raw = rule.extra.get("index") or analysis.extra.get("indices") or ()
    out = [str(x) for x in ([raw] if isinstance(raw, str) else raw)]
    for q in analysis.extra.get("queries") or ():
        got = (q.get("extra") or {}).get("indices") if isinstance(q, Mapping) else None
        out.extend(str(x) for x in got or ())
    return tuple(dict.fromkeys(out))


def _view_fields(p: RulePlan, fields: tuple[str, ...]) -> tuple[str, ...]:
    """The ECS fields a rule reads beyond its condition's: sequence join keys and the rule
    type's fields."""
    out: list[str] = []
    seq = p.sequence
    if seq is not None:
        for s in (*seq.steps, *((seq.until,) if seq.until is not None else ())):
            out.extend((*seq.by, *s.by))
    if p.rule_type is not None:
        out.extend(p.rule_type.reads)
    out.extend(sorted(p.later))  # read by an ES|QL rule's steps and aggregation
    return tuple(f for f in dict.fromkeys(out) if f not in fields)


def _route(rule: Rule, analysis: Analysis) -> tuple[Route, str | None]:
    try:
        return route_for(rule, analysis), None
    except Exception as exc:  # recorded: the rule is not runnable, and the reason says why
        return Route(None), f"its events could not be routed: {type(exc).__name__}: {exc}"


def plan_rule(rule: Rule, analysis: Analysis, tactics: tuple[str, ...] = ()) -> RulePlan:
    """The plan of one rule (see the module doc); ``reason`` says why it cannot run."""
    route, routing_error = _route(rule, analysis)
    p = RulePlan(rule, route, None, condition=analysis.condition,
                 result_condition=analysis.result_condition, tactics=tactics)
    lang = language(rule.language)
    spl = lang is not None and lang.pipeline
    ecs = lang is not None and lang.view == "ecs"
    pl = plan(analysis) if spl else None
    rp = result_plan(analysis) if spl else None
    p = dataclasses.replace(p, reason=routing_error or _why_not(rule, analysis, pl, rp, ecs))
    if ecs and lang is not None and p.runnable:
        p = _plan_ecs(p, analysis, lang.semantics)
        if lang.semantics in PIPELINES:  # its own steps and aggregation are in the plan
            analysis = dataclasses.replace(analysis, condition=p.condition,
                                           result_condition=None, steps=())
    if spl and p.runnable:
        head = pl.head if pl is not None else route_channel_terms(analysis.condition)
        p = dataclasses.replace(p, plan=pl, condition=head, later=frozenset(
            {f for s in analysis.stages if s.kind is StageKind.AGGREGATE for f in s.by}
            | set(fields_of(analysis.result_condition))))
        if analysis.stages and analysis.stages[0].command == "tstats":
            p = _plan_tstats(p, analysis)
    p = dataclasses.replace(p, fields=_shown_fields(p, analysis),
                            keywords=_keywords_of(p.condition if p.view == "ecs"
                                                  else analysis.condition))
    if not p.runnable:
        return dataclasses.replace(p, rule=rule_head(rule))
    try:
        p = _plan_aggregations(p, analysis, rp)
    except NotRunnable as exc:
        p = dataclasses.replace(p, reason=exc.message)
    return dataclasses.replace(p, rule=rule_head(rule))


def _shown_fields(p: RulePlan, analysis: Analysis) -> tuple[str, ...]:
    """The fields a finding shows: the condition's, what the eval/rex steps read, an Elastic
    rule's join keys and rule-type fields."""
    fields = tuple(fields_of(p.condition if p.view == "ecs" else analysis.condition))
    if p.view == "ecs":
        fields += _view_fields(p, fields)
    if p.plan is not None:  # what the eval/rex steps read is part of why an event matched
        extra = [f for st in p.plan.steps if st.kind != "filter"
                 for f in sorted(st.reads()) if f not in fields]
        fields += tuple(dict.fromkeys(extra))
    return fields


def _plan_aggregations(p: RulePlan, analysis: Analysis, rp: Plan | None) -> RulePlan:
    """The aggregations (with tstats spans and bin/bucket steps), the result filter and the
    steps after the last aggregation, with their joins. Raises :class:`NotRunnable`."""
    agg = [x for x in analysis.steps if isinstance(x, Aggregate)]
    if not agg:
        return dataclasses.replace(p, has_result=analysis.result_condition is not None
                                   and p.result_condition is not None)
    specs = [(p.agg or agg_spec(a, "stats"))  # built by _plan_tstats if it could
             if a.command == "tstats" else agg_spec(a) for a in agg]
    bins = p.bins
    span = agg[0].span if agg[0].command == "tstats" else None
    if span is not None:
        secs = span_seconds(span)
        if secs is None:
            raise NotRunnable(f"tstats span={span} is not supported")
        bins = (*bins, ("_time", secs))
    for st in analysis.stages:
        b = _bin_of(analysis, st.index) if st.command.lower() in ("bin", "bucket") else None
        if b and st.index < agg[0].stage:
            bins = (*bins, b)
    if p.plan is not None and p.plan.unrun:
        reads = set(specs[0].by) | {f.arg for f in specs[0].funcs if f.arg}
        bad = sorted(reads & p.plan.unrun.keys())
        if bad:
            raise NotRunnable("the aggregation reads fields the engine does not compute: "
                              + ", ".join(f"{f} ({p.plan.unrun[f]})" for f in bad))
    p = dataclasses.replace(p, agg=specs[0], chain=tuple(specs[1:]), bins=bins,
                            has_result=True)
    if rp is not None:  # the result filters run among the steps, in search order
        p = dataclasses.replace(p, result_plan=rp, joins=_plan_joins(p, rp), has_result=False)
    return p


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
