"""SPL-specific tree rewrites the engine applies before compiling a Splunk rule.

Splunk searches name their data by ``index``/``source``/``sourcetype``/``eventtype`` terms, most
of them from macros (`` `sysmon` `` -> ``source=XmlWinEventLog:Microsoft-Windows-Sysmon/...``).
Events read from EVTX, JSON or XML files carry no such fields: which log an event came from is
its ``Channel``, and the engine's routing (``coverage.routing``) already sends a Splunk rule only
the events of the data sources it names. So a *positive* channel term is decided by routing when
the event lacks the field (``sourcetype=X`` becomes ``sourcetype missing OR sourcetype=X``), and
is still checked when the event does carry it (a Splunk export). Negated terms are left as they
are: ``NOT sourcetype=X`` is true on an event without ``sourcetype``, as in Splunk.
"""

from __future__ import annotations

from ruleatlas.model import And, Node, Not, Op, Or, Predicate

CHANNEL_FIELDS = frozenset({"index", "source", "sourcetype", "eventtype"})


def route_channel_terms(node: Node | None, positive: bool = True) -> Node | None:
    """The tree with positive channel-field predicates made "missing or equal"."""
    if node is None:
        return None
    if isinstance(node, Predicate):
        if (positive and not node.negated and node.field is not None
                and node.field.lower() in CHANNEL_FIELDS and node.op is not Op.EXISTS):
            return Or((Predicate(node.field, Op.EXISTS, (False,)), node))
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
