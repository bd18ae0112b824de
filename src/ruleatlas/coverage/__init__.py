"""Event coverage: which concrete events (channel + event id, or a sourcetype) a rule looks at.

One vocabulary for every source, kept as a readable data table in this package
(``logsources.yaml``, compiled by :mod:`.table`), and shared with the engine's logsource
routing (:mod:`.routing`).

How a rule's events are found (:func:`events_for`):

1. *declared*: the Sigma ``logsource`` (category, then service, then a generic
   ``product:service`` name), the ECS index patterns, categories and fields of a rule that
   reads Elastic data streams (:mod:`.ecs`), or the Splunk ``data_source`` names (patterns,
   then the ``data_sources`` side table when :func:`configure` was given it), or, for a Splunk
   rule with none, the CIM datamodel its predicates use;
2. *the condition tree*: ``source``/``sourcetype``/``Channel`` predicates name channels (a
   macro such as `` `powershell` `` expands to them) and ``EventID``/``EventCode`` predicates
   (``eventName`` for CloudTrail, ...) name ids. Only constraints every matching event must
   meet are used (an ``OR`` with an unconstrained branch constrains nothing), so routing on
   them never hides an event a rule could match;
3. declared kinds are narrowed by the tree (a ``service: security`` rule with ``EventID: 4624``
   covers ``Security 4624``); a tree that contradicts the declaration leaves the declaration.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ruleatlas.coverage.ecs import ecs_events
from ruleatlas.coverage.table import Table, load_table, parse_ref
from ruleatlas.languages import language
from ruleatlas.model import (
    Analysis,
    And,
    EventRef,
    Node,
    Not,
    Op,
    Or,
    Pattern,
    Predicate,
    Rule,
)

__all__ = [
    "configure",
    "declared_events",
    "ecs_events",
    "events_for",
    "load_data_sources",
    "sigma_events",
    "splunk_events",
    "tree_channels",
    "tree_ids",
]

_DATA_SOURCES: dict[str, Mapping[str, Any]] = {}
_TRAILING_NUMBER = re.compile(r"(\d+)\s*$")


def configure(data_sources: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """Give coverage the Splunk ``data_sources`` side table (name -> dict with ``source``,
    ``sourcetype``, ``separator``), used for names no pattern in the table knows."""
    _DATA_SOURCES.clear()
    if data_sources:
        _DATA_SOURCES.update({k.lower(): v for k, v in data_sources.items()})


def load_data_sources(root: str | Path) -> dict[str, dict[str, Any]]:
    """Read ``ROOT/data_sources/*.yml`` of a security_content clone and :func:`configure` it."""
    import yaml

    out: dict[str, dict[str, Any]] = {}
    for p in sorted(Path(root, "data_sources").glob("*.yml")):
        try:
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            d = yaml.load(p.read_text("utf-8"), Loader=loader)
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(d, dict) and d.get("name"):
            out[str(d["name"])] = d
    configure(out)
    return out


# --------------------------------------------------------------------------------------------
# Declared events
# --------------------------------------------------------------------------------------------


def sigma_events(logsource: Mapping[str, Any], table: Table | None = None) -> tuple[EventRef, ...]:
    """Events of a Sigma logsource: category entry, else service entry, else a generic name."""
    t = table or load_table()
    product = str(logsource.get("product") or "").lower()
    category = str(logsource.get("category") or "").lower()
    service = str(logsource.get("service") or "").lower()
    if category:
        hit = t.sigma_categories.get(f"{product}/{category}") or t.sigma_categories.get(
            f"/{category}"
        )
        if hit:
            return hit
    if service:
        hit = t.sigma_services.get(f"{product}/{service}") or t.sigma_services.get(f"/{service}")
        if hit:
            return hit
    parts = [p for p in (product, service or category) if p]
    return (EventRef(":".join(parts)),) if parts else ()


def _ids(text: str | None) -> list[str | None]:
    if not text:
        return [None]
    parts = [p.strip() for p in text.split(",")] if re.fullmatch(r"[\d,\s]+", text) else [text]
    return [p for p in parts if p] or [None]


def splunk_events(names: Iterable[str], table: Table | None = None) -> tuple[EventRef, ...]:
    """Events of Splunk ``data_source`` names (``"Sysmon EventID 1 AND Sysmon EventID 11"``
    is two names)."""
    t = table or load_table()
    out: list[EventRef] = []
    for full in names:
        for name in re.split(r"\s+AND\s+", str(full).strip()):
            out.extend(_one_data_source(name.strip(), t))
    return tuple(dict.fromkeys(out))


def _one_data_source(name: str, t: Table) -> list[EventRef]:
    for p in t.splunk_patterns:
        m = p.regex.fullmatch(name)
        if m:
            channel = p.channel.format(**m.groupdict(default=""))
            ref = parse_ref(channel, t.aliases)
            ids = _ids(m.groupdict().get("ids"))
            if ref.event_id is not None:
                return [ref]
            return [EventRef(ref.channel, i) for i in ids]
    d = _DATA_SOURCES.get(name.lower())
    if d is None:
        return []
    src, st = d.get("source"), d.get("sourcetype")
    chan: str | None = None
    if isinstance(src, str) and any(src.lower().startswith(p) for p in t.source_prefixes):
        chan = t.canonical_channel(src)
    chan = chan or t.canonical_channel(st) or t.canonical_channel(src)
    if chan is None:
        return []
    m = _TRAILING_NUMBER.search(name)
    sep = str(d.get("separator") or "")
    if m and sep in ("EventCode", "EventID"):
        return [EventRef(chan, m.group(1))]
    return [EventRef(chan)]


def _datamodels(node: Node | None) -> list[str]:
    from ruleatlas.model import predicates

    return list(dict.fromkeys(p.datamodel for p, _ in predicates(node) if p.datamodel))


def declared_events(
    rule: Rule, analysis: Analysis | None = None, table: Table | None = None
) -> tuple[EventRef, ...]:
    """What the rule says it reads, before its condition narrows it."""
    t = table or load_table()
    if rule.logsource:
        return sigma_events(rule.logsource, t)
    ecs = ecs_events(rule, analysis, t)
    if ecs:
        return ecs
    refs: list[EventRef] = []
    names = [n for n in rule.data_sources if "/" not in n or " " in n]
    if names:
        refs.extend(splunk_events(names, t))
    if not refs and analysis is not None:
        for st in analysis.stages:
            for dm in _datamodels(st.condition):
                for key, kinds in t.datamodels.items():
                    if dm == key or dm.endswith("." + key) or key.endswith("." + dm):
                        refs.extend(kinds)
        extra_dm = analysis.extra.get("datamodel")
        if isinstance(extra_dm, str) and extra_dm in t.datamodels:
            refs.extend(t.datamodels[extra_dm])
    return tuple(dict.fromkeys(refs))


# --------------------------------------------------------------------------------------------
# Constraints from the condition tree
# --------------------------------------------------------------------------------------------

_POSITIVE_OPS = (Op.EQ, Op.IN, Op.WILDCARD)


def _literal(v: Any) -> str | None:
    if isinstance(v, Pattern):
        return v.literal()
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (str, int)):
        return str(v)
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return None


def _constraint(
    node: Node | None, fields: frozenset[str], norm: Any
) -> frozenset[str] | None:
    """The set of values field(s) must take for ``node`` to be true, or None (no constraint).

    ``norm`` maps a literal value to its canonical form (None: the value constrains nothing).
    """
    if node is None:
        return None
    if isinstance(node, Predicate):
        if node.negated or node.op not in _POSITIVE_OPS or node.match_all or node.transforms:
            return None
        if node.field is None or node.field.lower() not in fields:
            return None
        out: set[str] = set()
        for v in node.values:
            lit = _literal(v)
            c = norm(lit) if lit is not None else None
            if c is None:
                return None
            out.add(c)
        return frozenset(out) if out else None
    if isinstance(node, And):
        acc: frozenset[str] | None = None
        for a in node.args:
            c = _constraint(a, fields, norm)
            if c is not None:
                acc = c if acc is None else acc & c
        return acc
    if isinstance(node, Or):
        acc2: set[str] = set()
        for a in node.args:
            c = _constraint(a, fields, norm)
            if c is None:
                return None
            acc2 |= c
        return frozenset(acc2)
    if isinstance(node, Not):
        return None
    return None


def tree_channels(node: Node | None, table: Table | None = None) -> frozenset[str] | None:
    """Canonical channels every event matching ``node`` must come from (None: any)."""
    t = table or load_table()
    return _constraint(node, t.channel_fields, t.canonical_channel)


def _norm_id(v: str) -> str | None:
    s = v.strip()
    if s.isdigit():
        return str(int(s))
    return s or None


def tree_ids(
    node: Node | None, fields: Iterable[str] = ("EventID", "EventCode")
) -> frozenset[str] | None:
    """Event ids every event matching ``node`` must have, by the given id fields (None: any)."""
    return _constraint(node, frozenset(f.lower() for f in fields), _norm_id)


def narrow(
    declared: tuple[EventRef, ...], condition: Node | None, table: Table | None = None,
    by_ids: bool = False,
) -> tuple[EventRef, ...]:
    """Narrow declared event kinds by the channel and id constraints of ``condition``.

    A condition whose ids name none of the declared kinds keeps them (a Sigma category is part
    of the rule's meaning), unless ``by_ids``: then it covers those ids on the declared channels
    (an ECS category is broad: EQL ``process where event.code == "10"`` is Sysmon 10, though
    ``process`` declares Sysmon 1 and Security 4688)."""
    t = table or load_table()
    refs = list(declared)
    if condition is None:
        return tuple(dict.fromkeys(refs))
    chans = tree_channels(condition, t)
    if chans:
        if not refs:
            refs = [EventRef(c) for c in sorted(chans)]
        else:
            kept = [r for r in refs if r.channel in chans]
            refs = kept or refs
    out: list[EventRef] = []
    named: list[EventRef] = []  # the condition's ids on the declared channels (by_ids)
    cache: dict[tuple[str, ...], frozenset[str] | None] = {}
    for r in refs:
        fields = t.id_fields_for(r.channel)
        if fields not in cache:
            cache[fields] = tree_ids(condition, fields)
        ids = cache[fields]
        if ids is None:
            out.append(r)
        elif r.event_id is None:
            out.extend(EventRef(r.channel, i) for i in sorted(ids, key=_id_sort))
        elif r.event_id in ids:
            out.append(r)
        elif by_ids:
            named.extend(EventRef(r.channel, i) for i in sorted(ids, key=_id_sort))
    return tuple(dict.fromkeys(out or named or refs))


def _id_sort(i: str) -> tuple[int, int | str]:
    return (0, int(i)) if i.isdigit() else (1, i)


def events_for(rule: Rule, analysis: Analysis | None) -> tuple[EventRef, ...]:
    """Events a rule covers, in the table's vocabulary (``Sysmon 1``, ``Security 4688``,
    ``Microsoft-Windows-PowerShell/Operational 4104``, ``aws:cloudtrail``)."""
    t = load_table()
    declared = declared_events(rule, analysis, t)
    condition = analysis.condition if analysis is not None else None
    lang = language(rule.language)
    return narrow(declared, condition, t, by_ids=lang is not None and lang.view == "ecs")
