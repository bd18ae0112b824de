"""Indicators: the (field, operator, value) rows a rule matches, normalised for counting.

``extract(rule, analysis)`` is the only entry point the build uses. Counting across the catalog
happens in the store (a GROUP BY over the stored keys), so a rebuild recounts for free.
"""

from __future__ import annotations

from ruleatlas.model import Analysis, Indicator, Rule


def extract(rule: Rule, analysis: Analysis) -> tuple[Indicator, ...]:
    """Indicator rows of one rule. Placeholder until the indicators work (issue 5) lands."""
    return ()
