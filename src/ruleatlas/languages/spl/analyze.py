"""One SPL search into an :class:`Analysis`: stages as written, expanded, lowered.

Never raises: a search that does not parse gives one opaque stage and a located problem; an
unknown macro is a warning and its stage or term is kept opaque.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from functools import lru_cache
from typing import Any

from ruleatlas.caching import SPL_DRILLDOWNS, SPL_EXPANDED_STAGES, BoundedCache
from ruleatlas.languages.spl.ast import Command
from ruleatlas.languages.spl.errors import ParseError, span_of
from ruleatlas.languages.spl.lower import (
    AGGREGATING,
    _Ctx,
    apply_rename,
    lower_command,
    pipeline_step,
    rename_pairs,
)
from ruleatlas.languages.spl.macros import expand
from ruleatlas.languages.spl.parser import Parser
from ruleatlas.languages.spl.tokens import T
from ruleatlas.model import (
    Analysis,
    Macro,
    Node,
    Phase,
    Problem,
    Span,
    Stage,
    StageKind,
    analysis_to_dict,
    conjoin,
    problem_to_dict,
    stage_to_dict,
)


@lru_cache(maxsize=SPL_EXPANDED_STAGES)
def _parse_expanded(source: str) -> tuple[Command, ...]:
    """Parse a macro-expanded stage. Trees are immutable, and most expanded stages repeat
    across rules (``| convert ... ctime(firstTime)``, ``| search *``), so parses are shared."""
    return Parser(source).parse().commands


def analyze_query(query: str, macros: Mapping[str, Macro], language: str = "spl",
                  with_drilldowns: list[Any] | None = None) -> Analysis:
    problems: list[Problem] = []
    whole = Parser(query)
    try:
        leading, written = whole.split()
    except ParseError as e:
        return Analysis(
            language=language,
            stages=(Stage(0, "search", query.strip(), kind=StageKind.OPAQUE,
                          span=Span(e.line, e.col, e.pos, e.pos)),),
            problems=(Problem(f"SPL parse error: {e.description}", "error",
                              Span(e.line, e.col, e.pos, e.pos), "parse-error"),),
        )
    ctx = _Ctx(query=query)
    stages: list[Stage] = []
    event_conds: list[Node | None] = []
    result_conds: list[Node | None] = []
    group_by: tuple[str, ...] = ()
    used: list[str] = []
    filters: list[str] = []
    expanded_parts: list[str] = []  # the whole search after macro expansion, stage by stage
    pipeline: list[dict[str, Any]] = []  # event-phase commands in order (see pipeline_step)
    after_last_agg: list[dict[str, Any]] = []  # the commands after the last aggregation
    for idx, (cmd_start, cmd_end, first) in enumerate(written):
        raw = query[cmd_start:cmd_end]
        is_macro_stage = first.kind is T.MACRO and first.end == cmd_end
        first_implicit = idx == 0 and not leading
        text = raw if first_implicit else f"| {raw}"
        exp = expand(raw, macros)
        for k in exp.used:
            if k not in used:
                used.append(k)
        stage_filters = [f for f in exp.filters if f not in filters]
        filters.extend(stage_filters)
        for p in exp.problems:
            loc = p.location
            if loc is not None and loc.start is not None:
                loc = span_of(query, cmd_start + loc.start, cmd_start + (loc.end or loc.start))
            problems.append(Problem(p.message, p.severity, loc, p.code))
        expanded_text = " ".join(exp.text.split()) if exp.text != raw else None
        expanded_parts.append(exp.text.strip() if first_implicit else f"| {exp.text.strip()}")
        source = exp.text if first_implicit else f"| {exp.text}"
        try:
            if exp.text == raw:  # no macro: parse the stage from the query's own tokens
                source = query
                sub_commands: tuple[Command, ...] = (
                    whole.command(cmd_start, cmd_end, first_implicit),)
            else:
                sub_commands = _parse_expanded(source)
        except ParseError as e:
            problems.append(Problem(f"SPL parse error in stage {idx + 1} after macro expansion: "
                                    f"{e.description}", "error", span_of(query, cmd_start),
                                    "parse-error"))
            stages.append(Stage(idx, first.text.lower(), text, StageKind.OPAQUE, expanded_text,
                                span=span_of(query, cmd_start, cmd_end)))
            continue
        ctx.stage = idx
        ctx.span = span_of(query, cmd_start, cmd_end)
        conds: list[Node | None] = []
        kinds: list[StageKind] = []
        by: tuple[str, ...] = ()
        stage_phase = ctx.phase
        unknown_stage = is_macro_stage and any(
            p.code == "unknown-macro" for p in exp.problems)
        for c in sub_commands:
            ctx.source = source
            ctx.cmd_text = source[c.start : c.end]
            if c.name == "rename" and group_by:
                group_by = apply_rename(group_by, rename_pairs(c.items))
            in_event_phase = ctx.phase is Phase.EVENT
            res = lower_command(c, ctx)
            if c.name in AGGREGATING:
                after_last_agg.clear()
            elif in_event_phase:
                pipeline.append(pipeline_step(c, res.condition, idx))
            else:
                step = pipeline_step(c, res.condition, idx)
                if "join" in step:  # the subsearch, analyzed like a search of its own
                    j = step["join"]
                    sub = analyze_query(source[j.pop("start") + 1 : j.pop("end") - 1], macros)
                    j["analysis"] = analysis_to_dict(sub)
                after_last_agg.append(step)
            kinds.append(res.kind)
            if res.condition is not None:
                conds.append(res.condition)
                (event_conds if ctx.phase is Phase.EVENT else result_conds).append(
                    res.condition)
            if c.name in AGGREGATING:
                by = res.by
                group_by = res.by
                ctx.phase = Phase.RESULT
        command = sub_commands[0].name if sub_commands else first.text.lower()
        notes: list[str] = []
        if stage_filters and is_macro_stage:
            kind = StageKind.MACRO
            notes.append("filter macro (empty by default)")
        elif unknown_stage:
            kind = StageKind.OPAQUE
            notes.append("unknown macro: kept as written")
        elif StageKind.AGGREGATE in kinds:
            kind = StageKind.AGGREGATE
        elif StageKind.GENERATE in kinds:
            kind = StageKind.GENERATE
        elif StageKind.FILTER in kinds:
            kind = StageKind.FILTER
        else:
            kind = StageKind.TRANSFORM
        if is_macro_stage and not notes and len(sub_commands) > 1:
            notes.append(f"macro expands to {len(sub_commands)} commands")
        stages.append(Stage(
            index=idx, command=command, text=text, kind=kind, expanded=expanded_text,
            condition=conjoin(conds), phase=stage_phase, by=by, notes=tuple(notes),
            span=span_of(query, cmd_start, cmd_end),
        ))
    extra: dict[str, Any] = {
        "macros": used,
        "filter_macros": filters,
        "computed_fields": sorted(set(ctx.computed) | set(ctx.renamed)),
        "datamodel": ctx.datamodels,
        "tstats": ctx.tstats,
    }
    if used:
        extra["expanded_search"] = "\n".join(expanded_parts)
    if ctx.computed or ctx.renamed or any("filter" not in st and st.get("outputs") != []
                                           for st in pipeline):
        # a command writes a field: the engine needs the order of writes and filters
        extra["event_pipeline"] = pipeline
    if any(k in st for st in after_last_agg
           for k in ("eval", "rex", "rename", "addtotals", "spath", "join")):
        extra["result_pipeline"] = after_last_agg
    if with_drilldowns:
        extra["drilldowns"] = [_drilldown(d, macros) for d in with_drilldowns
                               if isinstance(d, Mapping)]
    return Analysis(
        language=language,
        stages=tuple(stages),
        condition=conjoin(event_conds),
        result_condition=conjoin(result_conds),
        group_by=group_by,
        problems=tuple(problems),
        extra=extra,
    )


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
