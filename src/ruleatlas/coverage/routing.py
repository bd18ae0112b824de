"""Logsource routing for the engine: which events a rule may look at, and under which names.

The engine computes :func:`event_key` once per event and sends the event only to the rules whose
:class:`Route` accepts that key; the keys come from the same table and the same
:func:`ruleatlas.coverage.events_for` as the catalog's event coverage, so "covers Sysmon 1" on a
rule page and "runs on Sysmon 1" in ``ruleatlas hunt`` cannot disagree.

Keys are ``(canonical channel, event id as str or None)``: ``("Sysmon", "1")``,
``("Security", "4688")``, ``("aws:cloudtrail", "ConsoleLogin")``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ruleatlas.caching import CHANNEL_NAMES, BoundedCache
from ruleatlas.coverage import declared_events, events_for
from ruleatlas.coverage.table import Table, load_table
from ruleatlas.languages import language
from ruleatlas.model import Analysis, EventRef, Rule

Key = tuple[str | None, str | None]

__all__ = ["Key", "Route", "channel_value_matches", "event_key", "ref_key", "route_for"]


@dataclass(frozen=True, slots=True)
class Route:
    """Where a rule runs.

    ``keys``: the event kinds it accepts (a key with id None accepts every id of that channel);
    None means any event (the rule names nothing the table can narrow on). ``field_maps``: per
    key, rule field -> event field to read instead (``Image`` -> ``NewProcessName`` on Security
    4688 for a Sigma ``process_creation`` rule); ``common_map`` applies to every event (the
    Splunk TA names for SPL rules: ``EventCode`` -> ``EventID``).
    """

    keys: frozenset[Key] | None
    field_maps: Mapping[Key, Mapping[str, str]] = field(default_factory=dict)
    common_map: Mapping[str, str] = field(default_factory=dict)
    events: tuple[EventRef, ...] = ()

    @property
    def any(self) -> bool:
        return self.keys is None

    def accepts(self, key: Key) -> bool:
        if self.keys is None:
            return True
        return key in self.keys or (key[0], None) in self.keys

    def field_map(self, key: Key) -> Mapping[str, str]:
        """Rule field -> event field for events of ``key`` (empty when names are the same)."""
        specific = self.field_maps.get(key) or self.field_maps.get((key[0], None))
        if not specific:
            return self.common_map
        if not self.common_map:
            return specific
        return {**self.common_map, **specific}

    def event_field(self, key: Key, rule_field: str) -> str:
        return self.field_map(key).get(rule_field, rule_field)


def ref_key(ref: EventRef) -> Key:
    return (ref.channel, ref.event_id)


def route_for(rule: Rule, analysis: Analysis | None) -> Route:
    """The route of one rule (its covered events as keys, plus field maps)."""
    t = load_table()
    refs = events_for(rule, analysis)
    keys = frozenset(ref_key(r) for r in refs) if refs and not _generic(refs, rule) else None
    maps: dict[Key, Mapping[str, str]] = {}
    if rule.logsource and rule.logsource.get("category"):
        # Category rules are written in Sysmon's field names; other event kinds of the same
        # category are read through their field map.
        for r in declared_events(rule, analysis, t):
            m = t.field_maps.get(str(r))
            if m:
                maps[ref_key(r)] = m
    lang = language(rule.language)
    common: Mapping[str, str] = {}
    if lang is not None and lang.field_map:
        common = t.field_maps.get(lang.field_map, {})
    return Route(keys, maps, common, refs)


def _generic(refs: tuple[EventRef, ...], rule: Rule) -> bool:
    """True when the only kind is the generic ``product:service`` fallback of an unknown
    Sigma logsource: routing on a name no reader produces would hide every event."""
    if not rule.logsource or len(refs) != 1 or refs[0].event_id is not None:
        return False
    t = load_table()
    ls = rule.logsource
    known = set(t.sigma_categories) | set(t.sigma_services)
    product = str(ls.get("product") or "").lower()
    return not any(
        f"{product}/{str(ls.get(k) or '').lower()}" in known
        or f"/{str(ls.get(k) or '').lower()}" in known
        for k in ("category", "service")
        if ls.get(k)
    )


# --------------------------------------------------------------------------------------------
# Event side
# --------------------------------------------------------------------------------------------


def event_key(fields: Mapping[str, Any], table: Table | None = None) -> Key:
    """``(canonical channel, event id)`` of a flattened event.

    The channel comes from ``Channel`` (``security`` and ``Security`` meet), else ``source`` /
    ``sourcetype``, else the record's shape (the table's ``shapes``: CloudTrail, O365, ...);
    the id from the channel's id field (``EventID``, then ``EventCode``; ``eventName`` for
    CloudTrail), as a decimal string.
    """
    t = table or load_table()
    channel = _channel(fields, t)
    if channel is None:
        return (None, _id(fields.get("EventID", fields.get("EventCode"))))
    for f in t.id_fields_for(channel):
        v = fields.get(f)
        if v is None and "." in f:  # a nested JSON value: operationName.localizedValue
            head, _, rest = f.partition(".")
            inner = fields.get(head)
            v = inner.get(rest) if isinstance(inner, dict) else None
        if v is not None and not isinstance(v, (dict, list)):
            return (channel, _id(v))
    return (channel, None)


def channel_value_matches(
    field: str | None, value: Any, key: Key, table: Table | None = None
) -> bool | None:
    """Whether ``field = value`` holds for events of ``key`` when ``field`` names the channel.

    Splunk rules filter on ``source=XmlWinEventLog:Security`` or ``sourcetype=...`` (macros
    expand to them) and Sigma rules may test ``Channel``; an event read from an EVTX file has
    no ``source`` field, so the engine should decide such predicates from the event's key:
    True when the value names the key's channel (any spelling), False when it names another,
    True for a generic sourcetype (``xmlwineventlog``) on any known channel, and None when this
    is not a channel predicate (a wildcard value, another field): evaluate it normally.
    """
    t = table or load_table()
    if field is None or field.lower() not in t.channel_fields:
        return None
    lit = _literal_value(value)
    if lit is None:
        return None
    if lit.strip().strip('"').lower() in t.generic_sourcetypes:
        return key[0] is not None
    c = t.canonical_channel(lit)
    if c is None:
        return None
    return key[0] is not None and c.lower() == key[0].lower()


def _literal_value(v: Any) -> str | None:
    from ruleatlas.model import Pattern

    if isinstance(v, Pattern):
        return v.literal()
    if isinstance(v, str):
        return v
    return None


def _channel(fields: Mapping[str, Any], t: Table) -> str | None:
    ch = fields.get("Channel")
    if isinstance(ch, str):
        return _canon(t, ch)
    for f in ("source", "sourcetype"):
        v = fields.get(f)
        if isinstance(v, str):
            c = _canon(t, v)
            if c is not None:
                return c
    for channel, needed in t.shapes:
        if all(f in fields for f in needed):
            return channel
    return None


_CANON_CACHE: BoundedCache[str, str | None] = BoundedCache(CHANNEL_NAMES)


def _canon(t: Table, value: Any) -> str | None:
    s = str(value)
    try:
        return _CANON_CACHE[s]
    except KeyError:
        return _CANON_CACHE.put(s, t.canonical_channel(s))


def _id(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    s = str(v).strip()
    if s.isdigit():
        return str(int(s))
    return s or None
