"""Indicators: the (field, operator, value) rows a rule matches, normalised for counting.

``extract(rule, analysis)`` is the only entry point the build uses. Counting across the catalog
happens in the store (a GROUP BY over the stored keys, ``store.indicators.recount``), so a
rebuild recounts for free.

What is an indicator (docs/indicators.md says the same for users):

* every event-phase predicate of the rule, with its effective polarity (negated XOR an odd
  number of ``Not`` above it), one row per (field as written, operator as written, negated),
  values as written in first-seen order, each with a normalised key (``normalize.py``);
* NOT an indicator, and reported by :func:`explain` with the reason instead of being dropped:
  a language's routing fields (its plugin's ``routing_fields``: Splunk's ``index source
  sourcetype channel eventtype tag host splunk_server`` and time bounds, Elastic's
  ``event.category`` or ``data_stream.dataset``) that macros expand to (``wineventlog_security`` is
  ``eventtype=... OR Channel=security OR source=...``) -- they say where to look, not what
  to look for; ``EventCode`` stays an indicator; result-phase predicates
  (``| where count > 10`` after ``stats``): they test aggregates, not events; expressions
  (:class:`~ruleatlas.model.Condition`) and :class:`~ruleatlas.model.Opaque` nodes, which
  have no field/op/value; predicates of a named selection that the condition never uses
  (languages with ``selections``: Sigma).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ruleatlas.indicators.normalize import display_op, field_key_of, predicate_keys
from ruleatlas.languages import language as plugin
from ruleatlas.model import (
    Analysis,
    Condition,
    Indicator,
    IndicatorValue,
    Node,
    Opaque,
    Phase,
    Predicate,
    Rule,
    Stage,
    predicates,
    sub_analyses,
    walk,
)


@dataclass(frozen=True, slots=True)
class Skipped:
    """A part of a rule's filter that is not an indicator, and why (nothing is dropped
    silently: ``ruleatlas indicators --explain`` and the bench list these)."""

    reason: str
    field: str | None
    op: str
    text: str | None = None
    stage: int | None = None


def _is_routing(pred: Predicate, language: str) -> bool:
    lang = plugin(language)
    fields = lang.routing_fields if lang is not None else frozenset()
    if not fields or pred.field is None:
        return False
    low = pred.field.lower()
    return low in fields or low.startswith("tag::")


def _has_selections(language: str) -> bool:
    lang = plugin(language)
    return lang is not None and lang.selections


def _skip_expr(n: Node, stage: int | None) -> Skipped | None:
    if isinstance(n, Condition):
        return Skipped("expression", None, "condition", n.text, stage)
    if isinstance(n, Opaque):
        return Skipped(f"opaque: {n.reason}", None, "opaque", n.text, stage)
    return None


@dataclass(frozen=True, slots=True)
class _Taken:
    """A predicate taken as an indicator: its effective polarity and its phase."""

    pred: Predicate
    positive: bool
    phase: Phase = Phase.EVENT


def _result_predicate(p: Predicate, pos: bool, st: Stage, out: list[_Taken],
                      skipped: list[Skipped]) -> None:
    """A result-phase predicate is an indicator when its field is carried unchanged from events
    to this stage (``Stage.carried``); a test of a computed aggregate is not."""
    if p.field is not None and p.field in st.carried:
        out.append(_Taken(p, pos, Phase.RESULT))
    else:
        skipped.append(Skipped("result phase", p.field, p.op.value, p.text, st.index))


def _taken_predicates(analysis: Analysis, skipped: list[Skipped]) -> list[_Taken]:
    """Predicates with polarity and phase: the whole-rule condition first (it carries the
    true polarity of Sigma filters), then any stage predicate it does not already hold, then
    the predicates of the nested searches (``model.sub_analyses``), at their command's stage."""
    out: list[_Taken] = []
    seen: set[Predicate] = set()
    for p, pos in predicates(analysis.condition):
        if p.phase is Phase.RESULT:
            skipped.append(Skipped("result phase", p.field, p.op.value, p.text, p.stage))
            continue
        out.append(_Taken(p, pos))
        seen.add(p)
    for n in walk(analysis.condition):
        s = _skip_expr(n, getattr(n, "stage", None))
        if s is not None:
            skipped.append(s)
    has_condition = analysis.condition is not None
    for st in analysis.stages:
        for p, pos in predicates(st.condition):
            if p in seen:
                continue
            if p.phase is Phase.RESULT or st.phase is Phase.RESULT:
                _result_predicate(p, pos, st, out, skipped)
            elif has_condition and st.name is not None and _has_selections(analysis.language):
                skipped.append(
                    Skipped(f"selection {st.name} not used by the condition", p.field,
                            p.op.value, p.text, st.index)
                )
            else:
                out.append(_Taken(p, pos))
                seen.add(p)
        if not has_condition or st.phase is Phase.RESULT:
            for n in walk(st.condition):
                s = _skip_expr(n, st.index)
                if s is not None:
                    skipped.append(s)
    for sub in sub_analyses(analysis):
        inner: list[Skipped] = []
        for t in _taken_predicates(sub.analysis, inner):
            out.append(_Taken(replace(t.pred, stage=sub.stage), t.positive, t.phase))
        skipped.extend(replace(k, stage=sub.stage) for k in inner)
    return out


def explain(rule: Rule, analysis: Analysis) -> tuple[tuple[Indicator, ...], tuple[Skipped, ...]]:
    """Indicator rows of one rule, and what was not taken as an indicator (with reasons)."""
    language = analysis.language or rule.language
    skipped: list[Skipped] = []
    rows: dict[tuple[str, str, bool, Phase],
               tuple[str, list[IndicatorValue], set[tuple[str, str]]]] = {}
    for taken in _taken_predicates(analysis, skipped):
        pred, positive = taken.pred, taken.positive
        if _is_routing(pred, language):
            skipped.append(Skipped("routing field", pred.field, pred.op.value, pred.text,
                                   pred.stage))
            continue
        negated = pred.negated != (not positive)
        field, info = field_key_of(pred)
        pairs = predicate_keys(pred, language, negated)
        if not pairs:
            skipped.append(Skipped("no values", pred.field, pred.op.value, pred.text, pred.stage))
            continue
        row_id = (field, display_op(pred, language), negated, taken.phase)
        row = rows.setdefault(row_id, (info.key, [], set()))
        for shown, key in pairs:
            if (shown, key) in row[2]:
                continue
            row[2].add((shown, key))
            row[1].append(IndicatorValue(shown, key))
    inds = tuple(
        Indicator(field=f, op=op, values=tuple(vals), field_key=fk, negated=neg, phase=ph)
        for (f, op, neg, ph), (fk, vals, _) in rows.items()
    )
    return inds, tuple(skipped)


def extract(rule: Rule, analysis: Analysis) -> tuple[Indicator, ...]:
    """Indicator rows of one rule (see the module docstring for what counts)."""
    return explain(rule, analysis)[0]


__all__ = ["Skipped", "explain", "extract"]
