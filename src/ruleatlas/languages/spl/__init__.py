"""SPL (Splunk Search Processing Language): tokenizer, parser, generator and lowering.

Owned by the SPL work (issue 3). ``analyze_spl`` is registered as the ``spl`` analyzer.
"""

from __future__ import annotations

from ruleatlas.languages import AnalysisContext, register
from ruleatlas.model import Analysis, Problem, Rule, Stage, StageKind


@register("spl")
def analyze_spl(rule: Rule, ctx: AnalysisContext) -> Analysis:
    """Placeholder until the SPL parser lands: one opaque stage, recorded as unsupported."""
    return Analysis(
        language="spl",
        stages=(Stage(0, "search", rule.query, kind=StageKind.OPAQUE),),
        problems=(Problem("SPL parser not available", "unsupported"),),
    )
