"""Event coverage: which concrete events (channel + event id, or a sourcetype) a rule looks at.

One vocabulary for every source, kept as a readable data table in this package, and shared with
the engine's logsource routing.
"""

from __future__ import annotations

from ruleatlas.model import Analysis, EventRef, Rule


def events_for(rule: Rule, analysis: Analysis) -> tuple[EventRef, ...]:
    """Events a rule covers. Placeholder until the coverage table lands."""
    return ()
