"""One ES|QL query into an :class:`Analysis`: one stage per command, lowered.

Never raises for bad input: a query that does not parse gives one opaque stage and a located
``parse-error`` problem; a hunting query in another language (osquery SQL, EQL) gives one opaque
stage and an ``unsupported`` problem saying which language it is.

Hunting queries sometimes keep the language tag of the Markdown code fence they were copied
from (``sql`` or ``esql`` alone on the first line): that line is blanked (offsets unchanged)
before parsing, and a note says so.
"""

from __future__ import annotations

import re
from typing import Any

from ruleatlas.languages.esql import ast as A
from ruleatlas.languages.esql.lower import AGGREGATING, Ctx, lower_command
from ruleatlas.languages.esql.parser import SOURCE_COMMANDS, TIME_UNITS, Parser
from ruleatlas.languages.esql.steps import query_steps
from ruleatlas.languages.parsing import ParseError, span_of
from ruleatlas.languages.spl.lower import apply_rename
from ruleatlas.model import Analysis, Node, Phase, Problem, Span, Stage, StageKind, conjoin

LANGUAGE = "esql"
_FENCE_TAG = re.compile(r"\A\s*(?:sql|esql)[ \t]*\r?\n", re.IGNORECASE)
_FIRST_WORD = re.compile(r"\A(?:\s+|//[^\n]*|/\*.*?\*/)*([A-Za-z_]+)", re.DOTALL)
_EQL_START = re.compile(r"\A\s*(?:sequence\b|sample\s+by\b|[a-z_]+\s+where\b)", re.IGNORECASE)


def strip_fence_tag(query: str) -> tuple[str, bool]:
    """``query`` with a leading code-fence language tag line blanked (same length)."""
    m = _FENCE_TAG.match(query)
    if m is None:
        return query, False
    return " " * (m.end() - 1) + "\n" + query[m.end():], True


def query_language(query: str) -> str:
    """``esql``, ``sql`` (osquery), ``eql`` or ``unknown``, from how the query starts (after a
    fence tag and comments); for the hunting queries whose ``language`` lists several."""
    text, _ = strip_fence_tag(query)
    m = _FIRST_WORD.match(text)
    word = m.group(1).lower() if m else ""
    if word in SOURCE_COMMANDS:
        return "esql"
    if word in ("select", "with"):
        return "sql"
    if _EQL_START.match(text):
        return "eql"
    return "unknown"


def _opaque(query: str, problem: Problem, span: Span | None = None) -> Analysis:
    return Analysis(language=LANGUAGE,
                    stages=(Stage(0, "query", query.strip(), kind=StageKind.OPAQUE, span=span),),
                    problems=(problem,))


def analyze_esql_query(query: str) -> Analysis:
    text, fenced = strip_fence_tag(query)
    lang = query_language(text)
    if lang in ("sql", "eql"):
        name = "an osquery SQL" if lang == "sql" else "an EQL"
        return _opaque(query, Problem(f"{name} query, not ES|QL: kept as written",
                                      "unsupported", span_of(text, 0), f"not-esql:{lang}"))
    try:
        tree = Parser(text).parse()
    except ParseError as e:
        loc = Span(e.line, e.col, e.pos, e.pos)
        return _opaque(query, Problem(f"ES|QL parse error: {e.description}", "error", loc,
                                      "parse-error"), loc)
    return lower_query(tree, text, fenced)


def lower_query(tree: A.Query, text: str, fenced: bool = False) -> Analysis:
    ctx = Ctx(query=text)
    for n in A.walk(tree):
        if isinstance(n, A.Duration) and n.unit not in TIME_UNITS:
            ctx.problems.append(Problem(f"unknown time unit {n.unit!r}", "warning",
                                        ctx.span(n), "unknown-time-unit"))
    stages: list[Stage] = []
    event_conds: list[Node | None] = []
    result_conds: list[Node | None] = []
    group_by: tuple[str, ...] = ()
    indices: list[str] = []
    metadata: list[str] = []
    for idx, c in enumerate(tree.commands):
        ctx.stage = idx
        phase = ctx.phase
        if c.name in ("from", "ts"):
            indices.extend(s.name for s in c.sources if s.name not in indices)
            metadata.extend(n for n in c.names if n not in metadata)
        if c.name == "rename" and group_by:
            group_by = apply_rename(group_by, [(p.old, p.new) for p in c.renames])
        if c.name == "drop" and group_by:
            group_by = tuple(g for g in group_by if g not in c.names)
        res = lower_command(c, ctx)
        if res.condition is not None:
            (event_conds if phase is Phase.EVENT else result_conds).append(res.condition)
        if c.name in AGGREGATING:
            group_by = res.by
            ctx.phase = Phase.RESULT
        notes = list(res.notes)
        if idx == 0 and fenced:
            notes.append("a code-fence language tag before the query was ignored")
        stages.append(Stage(
            index=idx, command=c.name, text=(text[c.start:c.end] if idx == 0
                                             else f"| {text[c.start:c.end]}"),
            kind=res.kind, condition=res.condition, phase=phase, by=res.by,
            notes=tuple(notes), span=span_of(text, c.start, c.end)))
    extra: dict[str, Any] = {
        "indices": indices,
        "metadata": metadata,
        "computed_fields": list(ctx.computed),
    }
    if any(c.name == "inline stats" for c in tree.commands):
        extra["inline_stats"] = True
    return Analysis(language=LANGUAGE, stages=tuple(stages), condition=conjoin(event_conds),
                    result_condition=conjoin(result_conds), group_by=group_by,
                    problems=tuple(ctx.problems), extra=extra, steps=query_steps(tree, ctx))
