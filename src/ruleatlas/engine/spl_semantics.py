"""SPL-specific tree rewrites the engine applies before compiling a Splunk rule.

Splunk searches name their data by ``index``/``source``/``sourcetype``/``eventtype`` terms, most
of them from macros (`` `sysmon` `` -> ``source=XmlWinEventLog:Microsoft-Windows-Sysmon/...``).
Events read from EVTX, JSON or XML files carry no such fields: which log an event came from is
its ``Channel``, and the engine's routing (``coverage.routing``) already sends a Splunk rule only
the events of the data sources it names. So a *positive* channel term is decided by routing when
the event lacks the field (``sourcetype=X`` becomes ``sourcetype missing OR sourcetype=X``), and
is still checked when the event does carry it (a Splunk export). Negated terms are left as they
are: ``NOT sourcetype=X`` is true on an event without ``sourcetype``, as in Splunk.

A ``source`` with a wildcard (``source="XmlWinEventLog:Microsoft-Windows-AppLocker/*"``) names
no single channel, so routing cannot decide it: when the event lacks ``source`` it is checked
against the event's ``Channel`` (``Microsoft-Windows-AppLocker/*``) instead of passing.
"""

from __future__ import annotations

from ruleatlas.model import And, Node, Not, Op, Or, Pattern, Predicate

CHANNEL_FIELDS = frozenset({"index", "source", "sourcetype", "eventtype"})
_WINLOG_PREFIXES = ("xmlwineventlog:", "wineventlog:")


def _channel_pattern(node: Predicate) -> Predicate | None:
    """``source="[Xml]WinEventLog:Prefix/*"`` -> ``Channel`` matching ``Prefix/*``."""
    if (node.field or "").lower() != "source" or node.op not in (Op.EQ, Op.WILDCARD):
        return None
    out = []
    for v in node.values:
        if not isinstance(v, Pattern) or not v.has_wildcards or not v.parts:
            return None
        first = v.parts[0]
        if not isinstance(first, str):
            return None
        low = first.lower()
        pre = next((p for p in _WINLOG_PREFIXES if low.startswith(p)), None)
        if pre is None:
            return None
        out.append(Pattern((first[len(pre):], *v.parts[1:])))
    return Predicate("Channel", Op.WILDCARD, tuple(out), stage=node.stage, text=node.text,
                     span=node.span)


def route_channel_terms(node: Node | None, positive: bool = True) -> Node | None:
    """The tree with positive channel-field predicates made "missing or equal"."""
    if node is None:
        return None
    if isinstance(node, Predicate):
        if (positive and not node.negated and node.field is not None
                and node.field.lower() in CHANNEL_FIELDS and node.op is not Op.EXISTS):
            missing = Predicate(node.field, Op.EXISTS, (False,))
            by_channel = _channel_pattern(node)
            if by_channel is not None:
                return Or((And((missing, by_channel)), node))
            return Or((missing, node))
        return node
    if isinstance(node, And):
        return And(tuple(route_channel_terms(a, positive) for a in node.args))  # type: ignore[misc]
    if isinstance(node, Or):
        return Or(tuple(route_channel_terms(a, positive) for a in node.args))  # type: ignore[misc]
    if isinstance(node, Not):
        inner = route_channel_terms(node.arg, not positive)
        assert inner is not None
        return Not(inner)
    return node
