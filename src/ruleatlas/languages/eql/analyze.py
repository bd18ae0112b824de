"""One EQL query into an :class:`Analysis`: stages as a user reads them, lowered trees, and a
:class:`model.Sequence` for ``sequence``/``sample`` queries.

Never raises for bad input: a query that does not parse gives one opaque stage and a located
``parse-error`` problem.

Stages: an event query is one stage (``process where``); a sequence or sample is one stage per
member (``sequence step N``: the member's condition, its effective join keys in ``by``) plus one
for ``until``; each pipe is one more stage. ``Analysis.condition`` is the event query's filter,
or for a sequence the Or of its members' conditions (what one event must satisfy to appear in
a finding; missing-event members and ``until`` live in the :class:`model.Sequence` only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ruleatlas.languages.eql import ast as E
from ruleatlas.languages.eql.lower import LowerCtx, key_name, lower_expr
from ruleatlas.languages.eql.parser import parse
from ruleatlas.languages.parsing import ParseError, span_of
from ruleatlas.model import (
    Analysis,
    Condition,
    Node,
    Not,
    Op,
    Opaque,
    Or,
    Phase,
    Predicate,
    Problem,
    Sequence,
    SequenceStep,
    Span,
    Stage,
    StageKind,
    conjoin,
    walk,
)
from ruleatlas.model import And as MAnd

CATEGORY_FIELD = "event.category"
# Seconds per maxspan unit (Elasticsearch time units).
TIME_UNITS: dict[str | None, float] = {
    None: 0.001, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0,
    "micros": 1e-6, "nanos": 1e-9,
}


def event_condition(q: E.EventQuery, ctx: LowerCtx) -> Node | None:
    """The category predicate (unless ``any``) and the condition, conjoined."""
    cat: Node | None = None
    if q.category is not None:
        end = ctx.query.find("where", q.start)
        end = q.start + len(q.category) if end < 0 else end
        text = ctx.query[q.start : end].strip()
        cat = Predicate(CATEGORY_FIELD, Op.EQ, (q.category,), cased=True, stage=ctx.stage,
                        text=text, span=span_of(ctx.query, q.start, q.start + len(text)))
    return conjoin([cat, lower_expr(q.condition, ctx)])


def _with_phase(n: Node, phase: Phase) -> Node:
    if isinstance(n, (Predicate, Condition)):
        return replace(n, phase=phase)
    if isinstance(n, (MAnd, Or)):
        return type(n)(tuple(_with_phase(a, phase) for a in n.args))
    if isinstance(n, Not):
        return Not(_with_phase(n.arg, phase))
    return n


def _member(m: E.Member, shared: tuple[str, ...], ctx: LowerCtx) -> tuple[SequenceStep, Stage]:
    cond = event_condition(m.query, ctx)
    own = tuple(key_name(k, ctx) for k in m.by)
    text = ctx.query[m.start : m.end]
    span = span_of(ctx.query, m.start, m.end)
    step = SequenceStep(cond, own, m.runs, m.missing, m.query.category, text, span)
    notes: list[str] = []
    if m.missing:
        notes.append("missing event: matches only when no such event occurs")
    if m.runs is not None:
        notes.append(f"runs={m.runs}: {m.runs} consecutive events")
    stage = Stage(ctx.stage or 0, "", text, StageKind.FILTER, condition=cond, by=shared + own,
                  notes=tuple(notes), span=span)
    return step, stage


def _sequence(body: E.Sequence | E.Sample, ctx: LowerCtx) -> tuple[Sequence, list[Stage]]:
    kind = "sequence" if isinstance(body, E.Sequence) else "sample"
    shared = tuple(key_name(k, ctx) for k in body.by)
    steps: list[SequenceStep] = []
    stages: list[Stage] = []
    for n, m in enumerate(body.members):
        ctx.stage = n
        step, stage = _member(m, shared, ctx)
        steps.append(step)
        stages.append(replace(stage, index=n, command=f"{kind} step {n + 1}"))
    until = None
    maxspan = maxspan_text = None
    if isinstance(body, E.Sequence):
        if body.until is not None:
            ctx.stage = len(stages)
            until, stage = _member(body.until, shared, ctx)
            stages.append(replace(stage, index=len(stages), command="until",
                                  notes=("ends a pending sequence",)))
        if body.maxspan is not None:
            ms = body.maxspan
            maxspan = float(ms.value) * TIME_UNITS[ms.unit]
            maxspan_text = ms.text
    head: list[str] = []
    if shared:
        head.append("joined on " + ", ".join(shared))
    if maxspan_text:
        head.append(f"within {maxspan_text}")
    if head and stages:
        stages[0] = replace(stages[0], notes=(*head, *stages[0].notes))
    seq = Sequence(kind, tuple(steps), shared, maxspan, maxspan_text, until)
    return seq, stages


def member_union(seq: Sequence) -> Node | None:
    """What one event must satisfy to appear in a finding: the Or of the non-missing members'
    conditions; None (no filter) when a member takes any event (``[any where true]``)."""
    members: list[Node] = []
    for s in seq.steps:
        if s.missing:
            continue
        if s.condition is None:
            return None
        if s.condition not in members:
            members.append(s.condition)
    return members[0] if len(members) == 1 else Or(tuple(members))


def _pipe_stage(p: E.Pipe, index: int, ctx: LowerCtx) -> tuple[Stage, Node | None]:
    text = "| " + ctx.query[p.start : p.end].lstrip("|").strip()
    span = span_of(ctx.query, p.start, p.end)
    fn = PIPES.get(p.name)
    if fn is None:
        ctx.problems.append(Problem(f"unknown EQL pipe '{p.name}': kept as written",
                                    "unsupported", span, "eql-pipe"))
        return Stage(index, p.name, text, StageKind.OPAQUE, span=span), None
    kind, cond, by, notes = fn(p, ctx)
    return Stage(index, p.name, text, kind, condition=cond,
                 phase=Phase.RESULT, by=by, notes=notes, span=span), cond


PipeResult = tuple[StageKind, Node | None, tuple[str, ...], tuple[str, ...]]


def _pipe_limit(p: E.Pipe, ctx: LowerCtx) -> PipeResult:
    n = p.args[0] if p.args else None
    count = str(n.value) if isinstance(n, E.Num) else "?"
    which = "first" if p.name == "head" else "last"
    return StageKind.TRANSFORM, None, (), (f"keeps the {which} {count} results",)


def _pipe_filter(p: E.Pipe, ctx: LowerCtx) -> PipeResult:
    cond = conjoin([_with_phase(lower_expr(a, ctx), Phase.RESULT) for a in p.args])
    return StageKind.FILTER, cond, (), ()


def _pipe_keys(p: E.Pipe, ctx: LowerCtx) -> PipeResult:
    keys = tuple(key_name(a, ctx) for a in p.args)
    if p.name == "unique":
        return StageKind.TRANSFORM, None, keys, ("one result per distinct key",)
    return StageKind.AGGREGATE, None, keys, ()


PIPES: dict[str, Callable[[E.Pipe, LowerCtx], PipeResult]] = {
    "head": _pipe_limit, "tail": _pipe_limit, "filter": _pipe_filter, "unique": _pipe_keys,
    "count": _pipe_keys, "unique_count": _pipe_keys,
}


def parse_error_analysis(query: str, e: ParseError) -> Analysis:
    where = Span(e.line, e.col, e.pos, e.pos)
    return Analysis(
        language="eql",
        stages=(Stage(0, "query", query.strip(), kind=StageKind.OPAQUE, span=where),),
        problems=(Problem(f"EQL parse error: {e.description}", "error", where,
                          "parse-error"),),
    )


def analyze_eql_query(query: str) -> Analysis:
    """The :class:`Analysis` of one EQL query (never raises for bad input)."""
    try:
        tree = parse(query)
    except ParseError as e:
        return parse_error_analysis(query, e)
    ctx = LowerCtx(query)
    body = tree.body
    sequence: Sequence | None = None
    if isinstance(body, E.EventQuery):
        ctx.stage = 0
        cond = event_condition(body, ctx)
        text = query[body.start : body.end].strip()
        stages = [Stage(0, f"{body.category or 'any'} where", text, StageKind.FILTER,
                        condition=cond, span=span_of(query, body.start, body.end))]
        event_cond = cond
    else:
        sequence, stages = _sequence(body, ctx)
        event_cond = member_union(sequence)
    result: list[Node | None] = []
    group_by: tuple[str, ...] = ()
    for p in tree.pipes:
        ctx.stage = len(stages)
        stage, cond = _pipe_stage(p, len(stages), ctx)
        stages.append(stage)
        result.append(cond)
        if stage.kind is StageKind.AGGREGATE:
            group_by = stage.by
    extra: dict[str, Any] = {"optional_fields": list(ctx.optional)}
    return Analysis(
        language="eql",
        stages=tuple(stages),
        condition=event_cond,
        result_condition=conjoin(result),
        group_by=group_by,
        problems=tuple(ctx.problems) + _opaque_problems(stages),
        extra=extra,
        sequence=sequence,
    )


def _opaque_problems(stages: list[Stage]) -> tuple[Problem, ...]:
    """One ``unsupported`` problem per opaque node left in a stage's tree."""
    out: list[Problem] = []
    for st in stages:
        for n in walk(st.condition):
            if isinstance(n, Opaque):
                out.append(Problem(f"kept opaque: {n.reason}", "unsupported", n.span,
                                   "eql-opaque"))
    return tuple(out)
