"""Elastic detection rules: what a rule's TYPE adds to the analysis of its query.

``analyze_elastic_rule(rule, ctx, analyze_query) -> Analysis``: ``analyze_query(language, text)``
analyzes one query text in one language (EQL, KQL, ES|QL: the registry's analyzers); this
package adds what Elastic itself does with the query: threshold and new-terms aggregation,
threat-match indicator joins, Kibana filters, machine-learning jobs (no query), Lucene queries
(read as KQL when compatible), ES|QL's embedded ``kql()``, and hunting files with several
queries. See docs/elastic.md.

Registered for the source ``elastic`` (:func:`ruleatlas.languages.register_source`):
``languages.analyze(rule)`` sends every Elastic rule here, with the registry's analyzer of one
query text as ``analyze_query``.
"""

from __future__ import annotations

from ruleatlas.languages import AnalysisContext, register_source
from ruleatlas.languages.elastic.analyze import (
    QueryAnalyzer,
    analyze_elastic_rule,
    analyze_lucene,
    analyze_text,
    has_opaque,
)
from ruleatlas.languages.elastic.embed import embed_kql
from ruleatlas.languages.elastic.hunting import SQL_REASON, analyze_hunt
from ruleatlas.languages.elastic.lucene import kql_incompatibilities, kql_incompatibility
from ruleatlas.languages.elastic.rule_types import COUNT_FIELD, RULE_TYPES, cardinality_field
from ruleatlas.model import Analysis, Rule

SOURCE = "elastic"


@register_source(SOURCE)
def analyze_elastic(rule: Rule, ctx: AnalysisContext, analyze_query: QueryAnalyzer) -> Analysis:
    """Every Elastic rule: its queries in their languages plus what its rule type means."""
    return analyze_elastic_rule(rule, ctx, analyze_query)


__all__ = [
    "COUNT_FIELD",
    "RULE_TYPES",
    "SOURCE",
    "SQL_REASON",
    "QueryAnalyzer",
    "analyze_elastic",
    "analyze_elastic_rule",
    "analyze_hunt",
    "analyze_lucene",
    "analyze_text",
    "cardinality_field",
    "embed_kql",
    "has_opaque",
    "kql_incompatibilities",
    "kql_incompatibility",
]
