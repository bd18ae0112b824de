"""One Elastic rule into an :class:`Analysis`: its query in its language, plus what its rule type
means (docs/elastic.md).

:func:`analyze_elastic_rule` dispatches on the rule:

* hunting files (``type == "hunt"``): :func:`.hunting.analyze_hunt`, each query in its language;
* machine-learning rules: :func:`.rule_types.machine_learning` (no query);
* every other rule: the query through ``analyze_query(language, text)`` (Lucene through
  :func:`analyze_lucene`; ES|QL with its ``kql()`` calls lowered, :func:`.embed.embed_kql`), then
  the Kibana ``filters`` stage (:mod:`.filters`), then the stage of its rule type
  (:data:`.rule_types.RULE_TYPES`: threshold, new_terms, threat_match; ``query``, ``eql`` and
  ``esql`` rules add nothing).

``analyze_query`` is the registry's "analyze this text in this language" (``languages.analyze``
passes ``analyze_text``; tests pass a dict of the three analyzers). Never raises for bad input.
"""

from __future__ import annotations

from dataclasses import replace

from ruleatlas.languages import AnalysisContext, QueryAnalyzer
from ruleatlas.languages.elastic.embed import embed_kql
from ruleatlas.languages.elastic.filters import filters_stage
from ruleatlas.languages.elastic.hunting import analyze_hunt
from ruleatlas.languages.elastic.lucene import kql_incompatibility
from ruleatlas.languages.elastic.rule_types import RULE_TYPES, machine_learning
from ruleatlas.model import (
    Analysis,
    Opaque,
    Problem,
    Rule,
    Stage,
    StageKind,
    conjoin,
    walk,
)

HUNT_TYPE = "hunt"
ML_TYPE = "machine_learning"
LUCENE = "lucene"
KQL = "kql"
ESQL = "esql"
LUCENE_NOTE = "Lucene query read by the KQL analyzer: it uses only syntax both read the same way"


def analyze_lucene(text: str, analyze_query: QueryAnalyzer) -> Analysis:
    """A Lucene query: the KQL analysis when compatible, else one opaque stage with the reason."""
    reason = kql_incompatibility(text)
    if reason is None:
        a = analyze_query(KQL, text)
        stages = tuple(replace(st, command=LUCENE, notes=(LUCENE_NOTE, *st.notes))
                       for st in a.stages)
        return replace(a, language=LUCENE, stages=stages)
    why = f"Lucene query not read: {reason}"
    node = Opaque(text.strip(), why, stage=0)
    return Analysis(
        language=LUCENE,
        stages=(Stage(0, LUCENE, text.strip(), StageKind.OPAQUE, condition=node),),
        condition=node,
        problems=(Problem(why, "unsupported", code="lucene"),),
    )


def analyze_text(language: str, text: str, analyze_query: QueryAnalyzer) -> Analysis:
    """One query text: Lucene through the KQL analyzer when it can, ES|QL with ``kql()`` lowered,
    everything else as ``analyze_query`` says."""
    if language == LUCENE:
        return analyze_lucene(text, analyze_query)
    a = analyze_query(language, text)
    return embed_kql(a, text) if language == ESQL else a


def _with_filters(rule: Rule, a: Analysis) -> Analysis:
    got = filters_stage(rule.extra.get("filters"), len(a.stages))
    if got is None:
        return a
    stage, problems = got
    return replace(a, stages=(*a.stages, stage), condition=conjoin([a.condition, stage.condition]),
                   problems=a.problems + tuple(problems))


def analyze_elastic_rule(rule: Rule, ctx: AnalysisContext | None,
                         analyze_query: QueryAnalyzer) -> Analysis:
    """The analysis of one Elastic rule or hunting file (see module doc). ``ctx`` is the
    registry's :class:`~ruleatlas.languages.AnalysisContext` (unused: Elastic rules need no side
    table)."""

    def one(language: str, text: str) -> Analysis:
        return analyze_text(language, text, analyze_query)

    if rule.type == HUNT_TYPE:
        return analyze_hunt(rule, one)
    if rule.type == ML_TYPE:
        return machine_learning(rule)
    a = _with_filters(rule, one(rule.language, rule.query))
    handler = RULE_TYPES.get(rule.type or "")
    return handler(rule, a, one) if handler is not None else a


def has_opaque(a: Analysis) -> bool:
    """True when an analysis keeps part of a query opaque (an opaque stage or node)."""
    return any(st.kind is StageKind.OPAQUE
               or any(isinstance(n, Opaque) for n in walk(st.condition))
               for st in a.stages)
