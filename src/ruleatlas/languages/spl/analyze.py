"""One SPL search into an :class:`Analysis`: stages as written, expanded, lowered.

Never raises: a search that does not parse gives one opaque stage and a located problem; an
unknown macro is a warning and its stage or term is kept opaque.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from ruleatlas.caching import SPL_DRILLDOWNS, SPL_EXPANDED_STAGES, BoundedCache
from ruleatlas.languages.parsing import ParseError, span_of
from ruleatlas.languages.spl.ast import Command
from ruleatlas.languages.spl.lower import (
    AGGREGATING,
    JoinSpec,
    _Ctx,
    aggregate_step,
    apply_rename,
    lower_command,
    pipeline_step,
    rename_pairs,
)
from ruleatlas.languages.spl.macros import Expansion, expand
from ruleatlas.languages.spl.parser import Parser
from ruleatlas.languages.spl.tokens import T, Token
from ruleatlas.model import (
    Analysis,
    Macro,
    Node,
    Phase,
    Problem,
    Span,
    Stage,
    StageKind,
    Step,
    conjoin,
    problem_to_dict,
    stage_to_dict,
)


@lru_cache(maxsize=SPL_EXPANDED_STAGES)
def _parse_expanded(source: str) -> tuple[Command, ...]:
    """Parse a macro-expanded stage. Trees are immutable, and most expanded stages repeat
    across rules (``| convert ... ctime(firstTime)``, ``| search *``), so parses are shared."""
    return Parser(source).parse().commands


@dataclass
class _Search:
    """What analyzing one search accumulates, stage after stage."""

    query: str
    macros: Mapping[str, Macro]
    whole: Parser  # the parser over the whole query (stages without macros are parsed from it)
    leading: bool  # the search starts with a pipe
    ctx: _Ctx
    problems: list[Problem] = field(default_factory=list)
    stages: list[Stage] = field(default_factory=list)
    event_conds: list[Node | None] = field(default_factory=list)
    result_conds: list[Node | None] = field(default_factory=list)
    group_by: tuple[str, ...] = ()
    used: list[str] = field(default_factory=list)  # macro keys, in the order met
    filters: list[str] = field(default_factory=list)  # filter macros met
    expanded_parts: list[str] = field(default_factory=list)  # the search after expansion
    steps: list[Step] = field(default_factory=list)  # every command, in order


@dataclass
class _StageText:
    """One stage as written and after macro expansion."""

    idx: int
    start: int
    end: int
    first: Token
    implicit: bool  # the first stage of a search without a leading pipe (an implicit search)
    text: str  # as shown: "| cmd ..." (the implicit search without the pipe)
    expansion: Expansion
    source: str  # the text its commands are parsed from
    expanded_text: str | None  # the expansion on one line, when a macro changed the stage
    stage_filters: list[str]  # filter macros this stage met first

    @property
    def is_macro(self) -> bool:
        return self.first.kind is T.MACRO and self.first.end == self.end


def analyze_query(query: str, macros: Mapping[str, Macro], language: str = "spl",
                  with_drilldowns: list[Any] | None = None) -> Analysis:
    whole = Parser(query)
    try:
        leading, written = whole.split()
    except ParseError as e:
        return _unparsed(query, language, e)
    s = _Search(query, macros, whole, leading, _Ctx(query=query))
    for idx, (cmd_start, cmd_end, first) in enumerate(written):
        st = _expand_stage(s, idx, cmd_start, cmd_end, first)
        try:
            commands = _parse_stage(s, st)
        except ParseError as e:
            s.problems.append(Problem(f"SPL parse error in stage {idx + 1} after macro "
                                      f"expansion: {e.description}", "error",
                                      span_of(query, cmd_start), "parse-error"))
            s.stages.append(Stage(idx, first.text.lower(), st.text, StageKind.OPAQUE,
                                  st.expanded_text, span=span_of(query, cmd_start, cmd_end)))
            continue
        s.stages.append(_lower_stage(s, st, commands))
    return Analysis(
        language=language,
        stages=tuple(s.stages),
        condition=conjoin(s.event_conds),
        result_condition=conjoin(s.result_conds),
        group_by=s.group_by,
        problems=tuple(s.problems),
        extra=_extra(s, with_drilldowns),
        steps=tuple(s.steps),
    )


def _unparsed(query: str, language: str, e: ParseError) -> Analysis:
    """A search whose stages cannot even be split: one opaque stage and the located error."""
    return Analysis(
        language=language,
        stages=(Stage(0, "search", query.strip(), kind=StageKind.OPAQUE,
                      span=Span(e.line, e.col, e.pos, e.pos)),),
        problems=(Problem(f"SPL parse error: {e.description}", "error",
                          Span(e.line, e.col, e.pos, e.pos), "parse-error"),),
    )


def _expand_stage(s: _Search, idx: int, cmd_start: int, cmd_end: int,
                  first: Token) -> _StageText:
    """Expand the macros of one stage; record the macros and filters met and the expansion's
    problems (their spans moved from the stage's text to the query's)."""
    raw = s.query[cmd_start:cmd_end]
    implicit = idx == 0 and not s.leading
    exp = expand(raw, s.macros)
    s.used.extend(k for k in dict.fromkeys(exp.used) if k not in s.used)
    stage_filters = [f for f in exp.filters if f not in s.filters]
    s.filters.extend(stage_filters)
    for p in exp.problems:
        loc = p.location
        if loc is not None and loc.start is not None:
            loc = span_of(s.query, cmd_start + loc.start, cmd_start + (loc.end or loc.start))
        s.problems.append(Problem(p.message, p.severity, loc, p.code))
    s.expanded_parts.append(exp.text.strip() if implicit else f"| {exp.text.strip()}")
    return _StageText(
        idx, cmd_start, cmd_end, first, implicit, raw if implicit else f"| {raw}", exp,
        exp.text if implicit else f"| {exp.text}",
        " ".join(exp.text.split()) if exp.text != raw else None, stage_filters)


def _parse_stage(s: _Search, st: _StageText) -> tuple[Command, ...]:
    """The stage's commands: from the query's own tokens when no macro changed it (its
    ``source`` becomes the query, so offsets refer to it), else parsed from the expansion."""
    if st.expansion.text == s.query[st.start:st.end]:
        st.source = s.query
        return (s.whole.command(st.start, st.end, st.implicit),)
    return _parse_expanded(st.source)


def _lower_stage(s: _Search, st: _StageText, commands: tuple[Command, ...]) -> Stage:
    """Lower the commands of one stage (conditions, group-by, pipeline steps) into its Stage."""
    ctx = s.ctx
    ctx.stage = st.idx
    ctx.span = span_of(s.query, st.start, st.end)
    conds: list[Node | None] = []
    kinds: list[StageKind] = []
    by: tuple[str, ...] = ()
    stage_phase = ctx.phase
    carried: tuple[str, ...] = ()
    for c in commands:
        ctx.source = st.source
        ctx.cmd_text = st.source[c.start : c.end]
        if c.name == "rename" and s.group_by:
            s.group_by = apply_rename(s.group_by, rename_pairs(c.items))
        if ctx.phase is Phase.RESULT and not carried:
            carried = tuple(ctx.carried or ())
        res = lower_command(c, ctx)
        if c.name in AGGREGATING:
            s.steps.append(aggregate_step(c, res.by, st.idx, ctx))
        else:
            s.steps.append(_step(s, st, c, res.condition))
        kinds.append(res.kind)
        if res.condition is not None:
            conds.append(res.condition)
            (s.event_conds if ctx.phase is Phase.EVENT else s.result_conds).append(
                res.condition)
        if c.name in AGGREGATING:
            by = res.by
            s.group_by = res.by
            ctx.phase = Phase.RESULT
    kind, notes = _stage_kind(st, commands, kinds)
    return Stage(
        index=st.idx, command=commands[0].name if commands else st.first.text.lower(),
        text=st.text, kind=kind, expanded=st.expanded_text, condition=conjoin(conds),
        phase=stage_phase, by=by, notes=notes, carried=carried, span=ctx.span,
    )


def _step(s: _Search, st: _StageText, c: Command, cond: Node | None) -> Step:
    """A command as a pipeline step; a join's subsearch is analyzed like a search of its
    own."""
    step = pipeline_step(c, cond, st.idx)
    if isinstance(step, JoinSpec):
        sub = analyze_query(st.source[step.start + 1 : step.end - 1], s.macros)
        return replace(step.step, subsearch=sub)
    return step


def _stage_kind(st: _StageText, commands: tuple[Command, ...],
                kinds: list[StageKind]) -> tuple[StageKind, tuple[str, ...]]:
    """The kind of a stage from its commands' kinds, and notes on a macro stage."""
    notes: list[str] = []
    if st.stage_filters and st.is_macro:
        kind = StageKind.MACRO
        notes.append("filter macro (empty by default)")
    elif st.is_macro and any(p.code == "unknown-macro" for p in st.expansion.problems):
        kind = StageKind.OPAQUE
        notes.append("unknown macro: kept as written")
    else:
        kind = next((k for k in (StageKind.AGGREGATE, StageKind.GENERATE, StageKind.FILTER)
                     if k in kinds), StageKind.TRANSFORM)
    if st.is_macro and not notes and len(commands) > 1:
        notes.append(f"macro expands to {len(commands)} commands")
    return kind, tuple(notes)


def _extra(s: _Search, with_drilldowns: list[Any] | None) -> dict[str, Any]:
    """What the analysis carries beside stages and trees (macros, computed fields, datamodels,
    the pipelines the engine replays, drilldowns)."""
    ctx = s.ctx
    extra: dict[str, Any] = {
        "macros": s.used,
        "filter_macros": s.filters,
        "computed_fields": sorted(set(ctx.computed) | set(ctx.renamed)),
        "datamodel": ctx.datamodels,
        "tstats": ctx.tstats,
    }
    if s.used:
        extra["expanded_search"] = "\n".join(s.expanded_parts)
    if with_drilldowns:
        extra["drilldowns"] = [_drilldown(d, s.macros) for d in with_drilldowns
                               if isinstance(d, Mapping)]
    return extra


PLACEHOLDER = "%original_detection_search%"

# Drilldown analyses, per search text, for one macro table. ESCU's 2,618 drilldowns are 130
# distinct texts (templates such as ``%original_detection_search% | search dest = $dest$``), so
# a build analyzes each once. The cache is bound to the table (held, not its id), so that a new
# table empties it.
_DRILLDOWNS: BoundedCache[str, dict[str, Any]] = BoundedCache(SPL_DRILLDOWNS)


def _drilldown(d: Mapping[str, Any], macros: Mapping[str, Macro]) -> dict[str, Any]:
    """A drilldown search analyzed like a detection (stages via ``model.stage_to_dict``), with
    ``%original_detection_search%`` shown as a placeholder stage for the detection's own search
    rather than as a keyword predicate; ``$token$`` values stay as written."""
    search = str(d.get("search") or "")
    _DRILLDOWNS.bind(macros)
    done = _DRILLDOWNS.get(search)
    if done is None:
        done = _DRILLDOWNS.put(search, _analyze_drilldown(search, macros))
    return {"name": d.get("name"), **done}


def _analyze_drilldown(search: str, macros: Mapping[str, Macro]) -> dict[str, Any]:
    a = analyze_query(search, macros)
    stages: list[dict[str, Any]] = []
    for st in a.stages:
        if st.text.strip() == PLACEHOLDER:
            st = replace(st, kind=StageKind.MACRO, condition=None,
                         notes=("placeholder for the detection search",))
        stages.append(stage_to_dict(st))
    return {"search": search, "stages": stages,
            "problems": [problem_to_dict(p) for p in a.problems]}
