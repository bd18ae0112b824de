"""KQL (Kibana Query Language, Elastic's ``language = "kuery"``): tokenizer, parser, generator,
lowering, analyzer.

``parse(text) -> Expr`` (raises :class:`ParseError` with line/col), ``generate(tree) -> str``
(``parse(generate(t)) == t``), ``lower(tree, source) -> Node`` (the shared model; ES|QL's
``kql("...")`` can call it with its own ``cased`` and ``locate``), and the registered ``kql``
analyzer. Semantics and sources: docs/kql.md.
"""

from __future__ import annotations

from ruleatlas.languages import AnalysisContext, register
from ruleatlas.languages.ecs import ROUTING_FIELDS
from ruleatlas.languages.kql.analyze import analyze_kql_query
from ruleatlas.languages.kql.generator import generate
from ruleatlas.languages.kql.lower import lower
from ruleatlas.languages.kql.parser import parse
from ruleatlas.languages.parsing import ParseError
from ruleatlas.model import Analysis, Rule


@register("kql", "KQL", fold_case=True, routing_fields=ROUTING_FIELDS,
          view="ecs", semantics="elastic")
def analyze_kql(rule: Rule, ctx: AnalysisContext) -> Analysis:
    """The rule's KQL query as one filter stage."""
    return analyze_kql_query(rule.query)


__all__ = ["ParseError", "analyze_kql", "analyze_kql_query", "generate", "lower", "parse"]
