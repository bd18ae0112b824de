"""Declared events of a rule that reads ECS data streams (Elastic's rules): index patterns, ECS
categories and fields -> EventRefs.

A rule is one of these when one of its index patterns matches a row of the ``elastic:`` section
of ``logsources.yaml`` (read its comment); nothing here names a source or a language. Steps:

1. index patterns: ``rule.extra["index"]`` and the ``FROM`` of each ES|QL query; each
   ``event.dataset`` / ``data_stream.dataset`` value the condition requires replaces them
   (``windows.sysmon_operational`` is the index ``logs-windows.sysmon_operational-*``);
2. the OS: the condition's ``host.os.type``, else the rule's ``OS: ...`` tag, else the row's;
3. per matched row: its events (a channel-only event is refined by the category or field events
   of the same channel: ``Sysmon`` + ``process where`` is ``Sysmon 1``), or the events of its
   category (skipped when the rule requires another category), or for an ``any`` row the events
   of the rule's own categories; events named by a field the rule requires
   (``powershell.file.script_block_text``) win over categories on Windows.

:func:`ecs_events` is () for any other rule. The caller (:func:`ruleatlas.coverage.events_for`)
then narrows the result by the condition's
``winlog.channel`` and ``event.code`` constraints, as for every source.
"""

from __future__ import annotations

import re
from fnmatch import fnmatchcase

from ruleatlas.coverage.table import ElasticIndex, Table
from ruleatlas.model import Analysis, EventRef, Node, Rule, predicates

DEFAULT_OS = "windows"
_FROM = re.compile(r"^\s*from\s+(.*?)(?:\s+metadata\b.*)?$", re.I | re.S)
_OS_TAG = re.compile(r"^os:\s*(\w+)$", re.I)
OS_NAMES = {"windows": "windows", "linux": "linux", "macos": "macos", "macOS": "macos"}


def _values_required(node: Node | None, field: str) -> set[str] | None:
    """Lower-cased values ``field`` must take for ``node`` to hold (None: no constraint)."""
    from ruleatlas.coverage import _constraint

    def norm(v: str) -> str | None:
        return v.strip().lower() or None

    got = _constraint(node, frozenset({field.lower()}), norm)
    return set(got) if got is not None else None


def index_patterns(rule: Rule, analysis: Analysis | None) -> list[str]:
    """The index patterns a rule reads, as written: ``extra["index"]`` and each ES|QL
    ``FROM``."""
    pats = [str(i) for i in rule.extra.get("index") or () if isinstance(i, str)]
    for st in analysis.stages if analysis is not None else ():
        if st.command.lower() == "from":
            m = _FROM.match(st.text)
            if m:
                pats.extend(p.strip().strip('"') for p in m.group(1).split(",") if p.strip())
    return list(dict.fromkeys(pats))


def _row(pattern: str, t: Table) -> ElasticIndex | None:
    low = pattern.lower()
    return next((r for r in t.elastic_indexes if fnmatchcase(low, r.glob)), None)


def _rule_os(rule: Rule, condition: Node | None) -> str | None:
    required = _values_required(condition, "host.os.type")
    if required and len(required) == 1:
        return OS_NAMES.get(next(iter(required)))
    for tag in rule.tags:
        m = _OS_TAG.match(tag.strip())
        if m and m.group(1).lower() in OS_NAMES:
            return OS_NAMES[m.group(1).lower()]
    return None


def _category_refs(os: str, cats: set[str], types: set[str] | None, t: Table) -> list[EventRef]:
    out: list[EventRef] = []
    for cat in sorted(cats):
        hits = [t.elastic_categories.get(f"{os}/{cat}/{ty}") for ty in sorted(types or ())]
        found = [r for h in hits if h for r in h]
        out.extend(found or t.elastic_categories.get(f"{os}/{cat}", ()))
    return out


def _field_refs(condition: Node | None, t: Table) -> list[EventRef]:
    out: list[EventRef] = []
    for p, positive in predicates(condition):
        if positive and not p.negated and p.field is not None and p.field in t.elastic_fields:
            out.extend(t.elastic_fields[p.field])
    return list(dict.fromkeys(out))


def _refine(ref: EventRef, specific: list[EventRef]) -> list[EventRef]:
    if ref.event_id is not None:
        return [ref]
    same = [r for r in specific if r.channel == ref.channel]
    return same or [ref]


def _dataset_patterns(condition: Node | None) -> list[str]:
    datasets = (_values_required(condition, "event.dataset")
                or _values_required(condition, "data_stream.dataset"))
    return [f"logs-{d}-*" for d in sorted(datasets or ()) if "*" not in d]


def ecs_events(rule: Rule, analysis: Analysis | None, t: Table) -> tuple[EventRef, ...]:
    """What a rule reading ECS data streams says it reads, before its condition narrows it;
    () when none of its index patterns is in the table."""
    condition = analysis.condition if analysis is not None else None
    patterns = _dataset_patterns(condition)
    if not any(_row(p, t) for p in patterns):
        patterns = index_patterns(rule, analysis)
    cats = _values_required(condition, "event.category")
    types = _values_required(condition, "event.type")
    rule_os = _rule_os(rule, condition)
    fields = _field_refs(condition, t)
    out: list[EventRef] = []
    for pattern in patterns:
        row = _row(pattern, t)
        if row is None:
            continue
        os = rule_os or row.os or DEFAULT_OS
        by_field = fields if os == DEFAULT_OS else []
        if row.events:
            specific = by_field + _category_refs(os, cats or set(), types, t)
            out.extend(r for ev in row.events for r in _refine(ev, specific))
        elif by_field:
            out.extend(by_field)
        elif row.category is not None:
            if cats is None or row.category in cats:
                out.extend(_category_refs(os, {row.category}, types, t))
        elif cats:
            out.extend(_category_refs(os, cats, types, t))
    refs = list(dict.fromkeys(out))
    specific_channels = {r.channel for r in refs if r.event_id is not None}
    return tuple(r for r in refs if r.event_id is not None or r.channel not in specific_channels)

