"""Sigma detections into the shared predicate model (issue 5).

``analyze_sigma`` is registered as the ``sigma`` analyzer.
"""

from __future__ import annotations

from ruleatlas.languages import AnalysisContext, register
from ruleatlas.model import Analysis, Problem, Rule, Stage, StageKind


@register("sigma")
def analyze_sigma(rule: Rule, ctx: AnalysisContext) -> Analysis:
    """Placeholder until the Sigma lowering lands: one opaque stage, recorded as unsupported."""
    return Analysis(
        language="sigma",
        stages=(Stage(0, "detection", rule.query, kind=StageKind.OPAQUE),),
        problems=(Problem("Sigma lowering not available", "unsupported"),),
    )
