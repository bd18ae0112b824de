"""What an Elastic rule TYPE adds to the analysis of its query, as stages a user reads.

The query (KQL, EQL, ES|QL) says which events a rule looks at; the rule type says what turns
those events into an alert. Each handler takes the query's :class:`Analysis` and appends one
stage (docs/elastic.md, "Rule types"):

* ``threshold``: an ``aggregate`` stage ``threshold`` grouping by ``threshold.field`` (no field:
  every event in one group), with result-phase predicates ``count >= value`` and, per
  ``cardinality`` entry, ``cardinality(<field>) >= value`` (distinct values of the field in the
  group). Kibana alerts on a group when both hold ("Threshold: >=", "Count: unique values >=").
  Field names :data:`COUNT_FIELD` and :func:`cardinality_field`.
* ``new_terms``: an ``aggregate`` stage ``new_terms`` grouping by the new-terms fields, no
  predicate: a value (with several fields, a combination of values) alerts when no event matching
  the query had it between ``history_window_start`` (``now-7d``) and the start of the rule's own
  window (``from``). ``extra["new_terms"]`` holds the fields and the window in seconds.
* ``threat_match``: a ``filter`` stage ``threat_match`` whose condition is a
  :class:`Condition` ``Call("threat_match", ...)``: the event matches when an indicator document
  of ``threat_index`` (matching ``threat_query``) has, for every entry of one mapping group, the
  indicator field equal to the event field (groups are OR-ed, entries AND-ed). ``by`` lists the
  event fields; notes name the indicator index, query and mapping.
* ``machine_learning`` (:func:`machine_learning`): no query at all; one ``generate`` stage names
  the job ids and the anomaly threshold, and an ``unsupported`` problem says why there is
  nothing to take apart.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from ruleatlas import model as M
from ruleatlas.languages import QueryAnalyzer
from ruleatlas.languages.elastic.toml_text import key_text, table_text

TypeHandler = Callable[[M.Rule, M.Analysis, QueryAnalyzer], M.Analysis]

COUNT_FIELD = "count"
ML_LANGUAGE = "ml"
THREAT_MATCH_FUNCTION = "threat_match"

# Elasticsearch date-math units -> seconds (``now-7d``, ``now-12h``).
DATE_MATH_UNITS: dict[str, int] = {"s": 1, "m": 60, "h": 3600, "H": 3600, "d": 86400,
                                   "w": 604800, "M": 2592000, "y": 31536000}
_NOW_MINUS = re.compile(r"^now-(\d+)([smhHdwMy])$")


def cardinality_field(name: str) -> str:
    """Result field of a threshold's distinct count: ``cardinality(process.args)``."""
    return f"cardinality({name})"


def window_seconds(text: Any) -> int | None:
    """``now-7d`` -> 604800; None for anything else."""
    m = _NOW_MINUS.match(str(text).strip()) if text is not None else None
    return int(m.group(1)) * DATE_MATH_UNITS[m.group(2)] if m else None


def _section(rule: M.Rule, table: str, fallback: str) -> tuple[str, M.Span | None]:
    found = table_text(rule.body, table)
    return found if found is not None else (fallback, None)


# --------------------------------------------------------------------------------------------
# threshold
# --------------------------------------------------------------------------------------------


def _threshold_predicates(th: Mapping[str, Any], stage: int) -> list[M.Predicate]:
    preds = [M.Predicate(COUNT_FIELD, M.Op.GE, (th["value"],), phase=M.Phase.RESULT, stage=stage,
                         text=f"{COUNT_FIELD} >= {th['value']}")]
    for c in th.get("cardinality") or ():
        name = cardinality_field(str(c.get("field")))
        preds.append(M.Predicate(name, M.Op.GE, (c.get("value"),), phase=M.Phase.RESULT,
                                 stage=stage, text=f"{name} >= {c.get('value')}"))
    return preds


def threshold(rule: M.Rule, base: M.Analysis, analyze_query: QueryAnalyzer) -> M.Analysis:
    th = rule.extra.get("threshold")
    if not isinstance(th, Mapping) or not isinstance(th.get("value"), int):
        why = M.Problem("threshold rule without a numeric threshold value", "error",
                        code="threshold")
        return replace(base, problems=(*base.problems, why))
    idx = len(base.stages)
    fields = tuple(str(f) for f in th.get("field") or ())
    preds = _threshold_predicates(th, idx)
    cond = M.conjoin(list(preds))
    group = "by " + ", ".join(fields) if fields else "over all matching events (no group-by)"
    notes = [f"one alert per group {group} with at least {th['value']} events"]
    for c in th.get("cardinality") or ():
        notes.append(f"and at least {c.get('value')} distinct values of {c.get('field')}")
    text, span = _section(rule, "rule.threshold", "; ".join(p.text or "" for p in preds))
    stage = M.Stage(idx, "threshold", text, M.StageKind.AGGREGATE, condition=cond,
                    phase=M.Phase.RESULT, by=fields, notes=tuple(notes), span=span)
    return replace(base, stages=(*base.stages, stage),
                   result_condition=M.conjoin([base.result_condition, cond]), group_by=fields,
                   extra={**base.extra, "threshold": dict(th)})


# --------------------------------------------------------------------------------------------
# new_terms
# --------------------------------------------------------------------------------------------


def new_terms(rule: M.Rule, base: M.Analysis, analyze_query: QueryAnalyzer) -> M.Analysis:
    nt = rule.extra.get("new_terms")
    if not isinstance(nt, Mapping) or not nt.get("fields"):
        why = M.Problem("new_terms rule without new-terms fields", "error", code="new-terms")
        return replace(base, problems=(*base.problems, why))
    idx = len(base.stages)
    fields = tuple(str(f) for f in nt["fields"])
    start = nt.get("history_window_start")
    seconds = window_seconds(start)
    what = (f"a value of {fields[0]}" if len(fields) == 1
            else "a combination of values of " + ", ".join(fields))
    notes = (
        f"alerts on {what} first seen in the rule's window: no matching event had it in the "
        f"history window",
        f"history window: from {start} to the start of the rule's window "
        f"(from = {rule.extra.get('from', 'now-6m')})",
    )
    text, span = _section(rule, "rule.new_terms",
                          f"new_terms_fields = {list(fields)}; history_window_start = {start}")
    stage = M.Stage(idx, "new_terms", text, M.StageKind.AGGREGATE, phase=M.Phase.RESULT, by=fields,
                    notes=notes, span=span)
    info = {"fields": list(fields), "history_window_start": start,
            "history_window_seconds": seconds}
    return replace(base, stages=(*base.stages, stage), group_by=fields,
                   extra={**base.extra, "new_terms": info})


# --------------------------------------------------------------------------------------------
# threat_match
# --------------------------------------------------------------------------------------------


def _mapping_groups(raw: Any) -> list[list[tuple[str, str]]]:
    """``threat_mapping`` as groups of (event field, indicator field)."""
    groups: list[list[tuple[str, str]]] = []
    for g in raw if isinstance(raw, list) else []:
        entries = g.get("entries") if isinstance(g, Mapping) else None
        pairs = [(str(e.get("field")), str(e.get("value"))) for e in entries or ()
                 if isinstance(e, Mapping)]
        if pairs:
            groups.append(pairs)
    return groups


def _mapping_term(groups: list[list[tuple[str, str]]]) -> M.Term:
    ors: list[M.Term] = []
    for g in groups:
        ands: list[M.Term] = [M.Call("==", (M.FieldRef(f), M.FieldRef(v))) for f, v in g]
        ors.append(ands[0] if len(ands) == 1 else M.Call("AND", tuple(ands)))
    return M.Call(THREAT_MATCH_FUNCTION, tuple(ors))


def threat_match(rule: M.Rule, base: M.Analysis, analyze_query: QueryAnalyzer) -> M.Analysis:
    groups = _mapping_groups(rule.extra.get("threat_mapping"))
    problems = list(base.problems)
    if not groups:
        problems.append(M.Problem("threat_match rule without a threat mapping", "error",
                                  code="threat-match"))
        return replace(base, problems=tuple(problems))
    idx = len(base.stages)
    fields = tuple(dict.fromkeys(f for g in groups for f, _ in g))
    mapping = " or ".join(" and ".join(f"{f} = {v}" for f, v in g) for g in groups)
    index = rule.extra.get("threat_index") or []
    tquery = str(rule.extra.get("threat_query") or "").strip()
    tlang = str(rule.extra.get("threat_language") or "kql")
    notes = [f"indicator index: {', '.join(map(str, index))}",
             f"indicator query ({tlang}): {tquery}", f"event matches an indicator when {mapping}"]
    if rule.extra.get("threat_indicator_path"):
        notes.append(f"indicator path: {rule.extra['threat_indicator_path']}")
    if rule.extra.get("threat_filters"):
        notes.append(f"{len(rule.extra['threat_filters'])} Kibana filter(s) on the indicator "
                     "index (kept in the rule's extra)")
    if tquery:
        for p in analyze_query(tlang, tquery).problems:
            problems.append(replace(p, message="threat query: " + p.message, location=None))
    text, span = _section(rule, "rule.threat_mapping", mapping)
    cond = M.Condition(_mapping_term(groups), f"threat_match: {mapping}", fields, stage=idx,
                       span=span)
    stage = M.Stage(idx, THREAT_MATCH_FUNCTION, text, M.StageKind.FILTER, condition=cond, by=fields,
                    notes=tuple(notes), span=span)
    info = {"index": list(map(str, index)), "query": tquery, "language": tlang,
            "mapping": [[{"field": f, "value": v} for f, v in g] for g in groups],
            "indicator_path": rule.extra.get("threat_indicator_path")}
    return replace(base, stages=(*base.stages, stage), condition=M.conjoin([base.condition, cond]),
                   problems=tuple(problems), extra={**base.extra, "threat_match": info})


# --------------------------------------------------------------------------------------------
# machine_learning
# --------------------------------------------------------------------------------------------


def machine_learning(rule: M.Rule) -> M.Analysis:
    """A machine-learning rule: one stage naming its jobs and anomaly threshold, no predicate."""
    jobs = [str(j) for j in rule.extra.get("machine_learning_job_id") or ()]
    score = rule.extra.get("anomaly_threshold")
    parts = [t for t in (key_text(rule.body, "machine_learning_job_id"),
                         key_text(rule.body, "anomaly_threshold")) if t is not None]
    text = "\n".join(t for t, _ in parts) or f"machine_learning_job_id = {jobs}"
    span = parts[0][1] if parts else None
    note = (f"alerts on anomaly records of {', '.join(jobs) or 'no job'} with an anomaly score "
            f">= {score}")
    stage = M.Stage(0, "machine_learning", text, M.StageKind.GENERATE, notes=(note,), span=span)
    problem = M.Problem(
        f"a machine-learning job has no query: the rule reads the anomaly results of "
        f"{', '.join(jobs) or 'its job'} (anomaly score >= {score})", "unsupported", span,
        "machine-learning")
    return M.Analysis(language=ML_LANGUAGE, stages=(stage,), problems=(problem,),
                      extra={"machine_learning": {"job_ids": jobs, "anomaly_threshold": score}})


RULE_TYPES: dict[str, TypeHandler] = {
    "threshold": threshold,
    "new_terms": new_terms,
    "threat_match": threat_match,
}
