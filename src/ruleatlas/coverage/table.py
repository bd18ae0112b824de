"""The coverage table (``logsources.yaml``) loaded once and compiled into lookup dicts.

The YAML is the single source of truth for event coverage (catalog) and logsource routing
(engine); this module only parses it. Loading is cached: ``events_for`` runs for every rule of a
build and must cost a few dict lookups.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from ruleatlas.model import AtlasError, EventRef

TABLE_FILE = "logsources.yaml"


class CoverageTableError(AtlasError):
    """The coverage table is malformed (names the entry)."""


@dataclass(frozen=True, slots=True)
class DataSourcePattern:
    regex: re.Pattern[str]
    channel: str
    text: str


@dataclass(frozen=True, slots=True)
class ElasticIndex:
    """One ``elastic.indexes`` row: an index glob and what its events are: concrete ``events``,
    one ECS ``category`` (resolved with ``elastic.categories``), or ``any`` (resolved with the
    rule's own ``event.category``); ``os`` the OS its events come from, when fixed."""

    glob: str  # lower-cased fnmatch pattern
    events: tuple[EventRef, ...] = ()
    category: str | None = None
    any: bool = False
    os: str | None = None


@dataclass(frozen=True, slots=True)
class Table:
    """Compiled ``logsources.yaml``; see that file for the meaning of each part."""

    aliases: Mapping[str, str]  # lower-cased spelling -> canonical channel
    source_prefixes: tuple[str, ...]  # lower-cased
    generic_sourcetypes: frozenset[str]  # lower-cased
    channel_fields: frozenset[str]  # lower-cased
    id_fields: Mapping[str, tuple[str, ...]]  # canonical channel or "*" -> fields
    field_maps: Mapping[str, Mapping[str, str]]  # "Security 4688" / "Splunk" -> rule -> event
    sigma_categories: Mapping[str, tuple[EventRef, ...]]
    sigma_services: Mapping[str, tuple[EventRef, ...]]
    splunk_patterns: tuple[DataSourcePattern, ...]
    datamodels: Mapping[str, tuple[EventRef, ...]]
    shapes: tuple[tuple[str, tuple[str, ...]], ...] = ()
    elastic_indexes: tuple[ElasticIndex, ...] = ()
    elastic_categories: Mapping[str, tuple[EventRef, ...]] = field(default_factory=dict)
    elastic_fields: Mapping[str, tuple[EventRef, ...]] = field(default_factory=dict)

    def canonical_channel(self, value: Any) -> str | None:
        """A channel spelling (``XmlWinEventLog:Security``, ``security``,
        ``Microsoft-Windows-Sysmon/Operational``) -> its canonical name; None when the value
        names no channel (``xmlwineventlog``, empty). Unknown names are returned trimmed."""
        if value is None:
            return None
        s = str(value).strip().strip('"').strip()
        if not s:
            return None
        low = s.lower()
        if low in self.generic_sourcetypes:
            return None
        hit = self.aliases.get(low)
        if hit is not None:
            return hit
        for p in self.source_prefixes:
            if low.startswith(p):
                s = s[len(p):]
                low = s.lower()
                break
        if not s or low in self.generic_sourcetypes:
            return None
        return self.aliases.get(low, s)

    def id_fields_for(self, channel: str) -> tuple[str, ...]:
        return self.id_fields.get(channel) or self.id_fields.get("*", ())


def parse_ref(text: str, aliases: Mapping[str, str] | None = None) -> EventRef:
    """``"Sysmon 1"`` -> EventRef("Sysmon", "1"); ``"aws:cloudtrail ConsoleLogin"`` ->
    EventRef("aws:cloudtrail", "ConsoleLogin"); ``"DNS Server"`` -> EventRef("DNS Server")."""
    s = " ".join(str(text).split())
    head, _, tail = s.rpartition(" ")
    if head and (tail.isdigit() or (":" in head and "/" not in head)):
        channel, event_id = head, tail
    else:
        channel, event_id = s, None
    if aliases:
        channel = aliases.get(channel.lower(), channel)
    return EventRef(channel, event_id)


def _refs(v: Any, where: str, aliases: Mapping[str, str]) -> tuple[EventRef, ...]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, (str, int)) for x in v):
        raise CoverageTableError(f"{TABLE_FILE}: {where}: expected a list of event kinds")
    return tuple(parse_ref(str(x), aliases) for x in v)


def _ref_table(doc: Mapping[str, Any], section: str, name: str, aliases: Mapping[str, str],
               lower: bool = False) -> dict[str, tuple[EventRef, ...]]:
    """The ``section.name`` mapping of the table: key (lower-cased when ``lower``) -> its
    event kinds."""
    rows = (doc.get(section) or {}).get(name) or {}
    return {str(k).lower() if lower else str(k): _refs(v, f"{section}.{name}.{k}", aliases)
            for k, v in rows.items()}


def _elastic_indexes(rows: Any, aliases: Mapping[str, str]) -> tuple[ElasticIndex, ...]:
    out: list[ElasticIndex] = []
    for i, row in enumerate(rows or ()):
        where = f"elastic.indexes[{i}]"
        if not isinstance(row, Mapping) or not isinstance(row.get("index"), str):
            raise CoverageTableError(f"{TABLE_FILE}: {where}: needs an 'index' glob")
        kinds = [k for k in ("events", "category", "any") if row.get(k)]
        if len(kinds) != 1:
            raise CoverageTableError(f"{TABLE_FILE}: {where}: needs one of events/category/any")
        out.append(ElasticIndex(
            glob=row["index"].lower(),
            events=_refs(row["events"], where, aliases) if "events" in row else (),
            category=str(row["category"]).lower() if row.get("category") else None,
            any=bool(row.get("any")),
            os=str(row["os"]).lower() if row.get("os") else None,
        ))
    return tuple(out)


def compile_table(doc: Mapping[str, Any]) -> Table:
    """Compile a parsed ``logsources.yaml`` document (tests feed their own)."""
    aliases: dict[str, str] = {}
    for canon, spellings in (doc.get("channels") or {}).items():
        aliases[str(canon).lower()] = str(canon)
        for sp in spellings or ():
            aliases[str(sp).lower()] = str(canon)
    splunk = doc.get("splunk") or {}
    patterns = []
    for i, entry in enumerate(splunk.get("data_sources") or ()):
        try:
            rx = re.compile(entry["pattern"], re.IGNORECASE)
            patterns.append(DataSourcePattern(rx, str(entry["channel"]), entry["pattern"]))
        except (KeyError, TypeError, re.error) as e:
            raise CoverageTableError(f"{TABLE_FILE}: splunk.data_sources[{i}]: {e}") from e
    field_maps = {
        str(k): {str(a): str(b) for a, b in (v or {}).items()}
        for k, v in (doc.get("field_maps") or {}).items()
    }
    sigma_categories = _ref_table(doc, "sigma", "categories", aliases, lower=True)
    sigma_services = _ref_table(doc, "sigma", "services", aliases, lower=True)
    datamodels = _ref_table(doc, "splunk", "datamodels", aliases)
    # Every channel the table names is also its own spelling, in any letter case, so that an
    # event's "microsoft-windows-windows defender/operational" meets the table's spelling.
    for refs in (*sigma_categories.values(), *sigma_services.values(), *datamodels.values()):
        for r in refs:
            aliases.setdefault(r.channel.lower(), r.channel)
    elastic = doc.get("elastic") or {}
    elastic_indexes = _elastic_indexes(elastic.get("indexes"), aliases)
    elastic_categories = _ref_table(doc, "elastic", "categories", aliases, lower=True)
    elastic_fields = _ref_table(doc, "elastic", "fields", aliases)
    for refs in (*elastic_categories.values(), *elastic_fields.values(),
                 *(e.events for e in elastic_indexes)):
        for r in refs:
            aliases.setdefault(r.channel.lower(), r.channel)
    for p in patterns:
        if "{" not in p.channel:
            ch = parse_ref(p.channel).channel
            aliases.setdefault(ch.lower(), ch)
    return Table(
        aliases=aliases,
        source_prefixes=tuple(p.lower() for p in doc.get("source_prefixes") or ()),
        generic_sourcetypes=frozenset(s.lower() for s in doc.get("generic_sourcetypes") or ()),
        channel_fields=frozenset(f.lower() for f in doc.get("channel_fields") or ()),
        id_fields={str(k): tuple(v) for k, v in (doc.get("id_fields") or {}).items()},
        field_maps=field_maps,
        sigma_categories=sigma_categories,
        sigma_services=sigma_services,
        splunk_patterns=tuple(patterns),
        datamodels=datamodels,
        shapes=tuple(
            (str(k), tuple(str(f) for f in v)) for k, v in (doc.get("shapes") or {}).items()
        ),
        elastic_indexes=elastic_indexes,
        elastic_categories=elastic_categories,
        elastic_fields=elastic_fields,
    )


@lru_cache(maxsize=1)
def load_table() -> Table:
    """The packaged table (parsed once per process)."""
    text = resources.files("ruleatlas.coverage").joinpath(TABLE_FILE).read_text("utf-8")
    try:
        doc = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as e:
        raise CoverageTableError(f"{TABLE_FILE}: {e}") from e
    return compile_table(doc or {})
