"""SPL (Splunk Search Processing Language): tokenizer, parser, generator, macros, lowering.

``parse(text) -> Pipeline`` (raises :class:`ParseError` with position and caret line),
``generate(pipeline) -> str`` (``parse(generate(t)) == t``), ``expand(text, macros)``, and the
registered ``spl`` analyzer that turns a rule's search into stages and predicate trees.
"""

from __future__ import annotations

from ruleatlas.languages import AnalysisContext, register
from ruleatlas.languages.parsing import ParseError
from ruleatlas.languages.spl.analyze import analyze_query
from ruleatlas.languages.spl.display import display_value
from ruleatlas.languages.spl.generator import generate
from ruleatlas.languages.spl.macros import expand, macro_calls
from ruleatlas.languages.spl.parser import parse
from ruleatlas.model import Analysis, Rule

# Fields that send a search to data rather than describe what it detects (lower case).
ROUTING_FIELDS = frozenset({
    "index", "source", "channel", "sourcetype", "eventtype", "tag", "host", "splunk_server",
    "earliest", "latest", "_index_earliest", "_index_latest",
})


@register("spl", "SPL", fold_case=True, exists_text="*", display_value=display_value,
          routing_fields=ROUTING_FIELDS, macro_calls=macro_calls, pipeline=True, field_map="Splunk")
def analyze_spl(rule: Rule, ctx: AnalysisContext) -> Analysis:
    """The rule's search as stages, predicates and group-by; drilldown searches too."""
    drilldowns = rule.extra.get("drilldown_searches") if rule.extra else None
    return analyze_query(rule.query, ctx.macros,
                         with_drilldowns=drilldowns if isinstance(drilldowns, list) else None)


__all__ = ["ParseError", "analyze_query", "analyze_spl", "expand", "generate", "parse"]
