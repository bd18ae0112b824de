"""Hunting files (``rule.type == "hunt"``): every query of ``extra["queries"]``, one after another.

Each query is analyzed in its own language (``analyze_query(language, text)``; ES|QL with its
``kql()`` calls lowered). The combined analysis:

* ``stages``: the stages of query 1, then of query 2, ..., numbered across the file, each named
  ``query N`` (:attr:`Stage.name`); predicate stage numbers and spans are moved to match (spans
  point into the rule's joined ``query`` text when the query is found in it);
* ``condition``: the Or of the queries' event conditions (an event is of interest when one query
  looks at it); None when one query has no event filter;
* ``result_condition`` and ``group_by``: none for the file (each query's own result filter and
  group-by stay in its stages); ``sequence`` and ``steps`` (pipeline steps): the query's own
  when the file has one query;
* ``problems``: each query's, prefixed ``query N: ``;
* ``extra["queries"]``: per query its language, its first and last stage, and its own extra.

A SQL query (osquery: live host tables, not events) has no analyzer: one ``opaque`` stage with
the reason :data:`SQL_REASON` and an ``unsupported`` problem.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ruleatlas.languages import QueryAnalyzer
from ruleatlas.languages.elastic.trees import move_problem, move_sequence, move_stage, move_tree
from ruleatlas.model import (
    Analysis,
    Node,
    Or,
    Problem,
    Rule,
    Sequence,
    Stage,
    StageKind,
    Step,
)

SQL_LANGUAGE = "sql"
SQL_REASON = "SQL hunting query (osquery): no analyzer"


def sql_analysis(text: str) -> Analysis:
    """One opaque stage for an osquery SQL query."""
    return Analysis(
        language=SQL_LANGUAGE,
        stages=(Stage(0, "sql", text.strip(), StageKind.OPAQUE, notes=(SQL_REASON,)),),
        condition=None,
        problems=(Problem(SQL_REASON, "unsupported", code="sql-hunting-query"),),
    )


def _or(conditions: list[Node]) -> Node | None:
    out: list[Node] = []
    for c in conditions:
        for a in c.args if isinstance(c, Or) else (c,):
            if a not in out:
                out.append(a)
    if not out:
        return None
    return out[0] if len(out) == 1 else Or(tuple(out))


def analyze_hunt(rule: Rule, analyze: QueryAnalyzer) -> Analysis:
    """The combined analysis of a hunting file (see module doc). ``analyze(language, text)``
    analyzes one query, SQL excepted."""
    entries = [q for q in rule.extra.get("queries") or () if isinstance(q, dict)]
    if not entries and rule.query:
        entries = [{"language": rule.language, "query": rule.query}]
    stages: list[Stage] = []
    problems: list[Problem] = []
    conditions: list[Node] = []
    unfiltered = False
    queries: list[dict[str, Any]] = []
    sequence: Sequence | None = None
    steps: tuple[Step, ...] = ()
    pos = 0
    for n, entry in enumerate(entries, 1):
        lang, text = str(entry.get("language") or rule.language), str(entry.get("query") or "")
        sub = sql_analysis(text) if lang == SQL_LANGUAGE else analyze(lang, text)
        found = rule.query.find(text.rstrip(), pos) if text.strip() else -1
        offset = found if found >= 0 else 0
        pos = found + len(text.rstrip()) if found >= 0 else pos
        first = len(stages)
        name = f"query {n}"
        for st in sub.stages:
            stages.append(replace(move_stage(st, first, rule.query, offset), name=name))
        problems.extend(move_problem(p, f"{name}: ", rule.query, offset) for p in sub.problems)
        if lang != SQL_LANGUAGE:
            cond = move_tree(sub.condition, first, rule.query, offset)
            if cond is None:
                unfiltered = True
            else:
                conditions.append(cond)
        if len(entries) == 1:
            sequence = move_sequence(sub.sequence, rule.query, offset)
            steps = sub.steps
        queries.append({"index": n, "language": lang, "stages": [first, len(stages) - 1],
                        "extra": dict(sub.extra)})
    condition = None if unfiltered else _or(conditions)
    return Analysis(
        language=rule.language,
        stages=tuple(stages),
        condition=condition,
        problems=tuple(problems),
        extra={"queries": queries},
        sequence=sequence,
        steps=steps,
    )

