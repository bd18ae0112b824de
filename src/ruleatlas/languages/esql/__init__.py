"""ES|QL (Elasticsearch Query Language): tokenizer, parser, generator, lowering.

``parse(text) -> Query`` (raises :class:`ParseError` with line/col and a caret line),
``generate(query) -> str`` (``parse(generate(t)) == t``), ``analyze_esql_query(text)`` and the
registered ``esql`` analyzer that turns a rule's query into stages and predicate trees.
"""

from __future__ import annotations

from ruleatlas.languages import AnalysisContext, register
from ruleatlas.languages.ecs import ROUTING_FIELDS
from ruleatlas.languages.esql.analyze import analyze_esql_query, query_language, strip_fence_tag
from ruleatlas.languages.esql.generator import generate
from ruleatlas.languages.esql.parser import parse, parse_expression
from ruleatlas.languages.parsing import ParseError
from ruleatlas.model import Analysis, Rule


@register("esql", "ES|QL", fold_case=True, routing_fields=ROUTING_FIELDS,
          view="ecs")
def analyze_esql(rule: Rule, ctx: AnalysisContext) -> Analysis:
    """The rule's ES|QL query as stages, predicates and group-by."""
    return analyze_esql_query(rule.query)


__all__ = ["ParseError", "analyze_esql", "analyze_esql_query", "generate", "parse",
           "parse_expression", "query_language", "strip_fence_tag"]
