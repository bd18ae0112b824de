"""EQL (Elastic Event Query Language): tokenizer, parser, generator, lowering, analyzer.

``parse(text) -> Query`` (raises :class:`ParseError` with position and caret line),
``generate(query) -> str`` (``parse(generate(t)) == t``), ``analyze_eql_query(text)`` and the
registered ``eql`` analyzer that turns a rule's query into stages, predicate trees and, for
``sequence``/``sample`` queries, a :class:`ruleatlas.model.Sequence`.
"""

from __future__ import annotations

from ruleatlas.languages import AnalysisContext, register
from ruleatlas.languages.ecs import ROUTING_FIELDS
from ruleatlas.languages.eql.analyze import analyze_eql_query
from ruleatlas.languages.eql.generator import generate
from ruleatlas.languages.eql.parser import parse
from ruleatlas.languages.parsing import ParseError
from ruleatlas.model import Analysis, Rule


@register("eql", "EQL", fold_case=True, routing_fields=ROUTING_FIELDS,
          view="ecs", semantics="elastic")
def analyze_eql(rule: Rule, ctx: AnalysisContext) -> Analysis:
    """The rule's EQL query as stages and predicates (a sequence also as ``Analysis.sequence``)."""
    return analyze_eql_query(rule.query)


__all__ = ["ParseError", "analyze_eql", "analyze_eql_query", "generate", "parse"]
