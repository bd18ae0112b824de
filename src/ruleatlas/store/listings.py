"""Catalog-wide listings the web pages show: the overview, event coverage, macros, stories.

Each is built on the :class:`Catalog` read methods (``event_coverage``, ``macros``,
``stories``) and shaped as the plain dicts the templates and their JSON twins share; member
rules come with their titles (:func:`rule_titles`), sorted by title.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any

from ruleatlas.store.catalog import Catalog


def overview(conn: sqlite3.Connection) -> dict[str, Any]:
    """Counts for the home page: rules per source, techniques, indicators, macros, ..."""
    by_source = {r[0]: r[1] for r in conn.execute(
        "SELECT source, count(*) FROM rules GROUP BY source ORDER BY 1")}

    def one(sql: str) -> int:
        return int(conn.execute(sql).fetchone()[0])

    return {
        "rules": sum(by_source.values()),
        "by_source": by_source,
        "techniques": one("SELECT count(DISTINCT technique) FROM rule_attack"),
        "indicators": one("SELECT count(*) FROM indicator_counts"),
        "macros": one("SELECT count(*) FROM macros"),
        "stories": one("SELECT count(*) FROM stories"),
        "load_errors": one("SELECT count(*) FROM load_errors"),
        "events": one("SELECT count(*) FROM (SELECT DISTINCT channel, event_id FROM rule_events)"),
    }


def sources(conn: sqlite3.Connection) -> list[str]:
    """The sources of the catalog's rules, sorted."""
    return [r[0] for r in conn.execute("SELECT DISTINCT source FROM rules ORDER BY 1")]


def rule_titles(conn: sqlite3.Connection, ids: Iterable[str]) -> list[dict[str, str]]:
    """``[{"id", "title", "source"}]`` of the rules of ``ids`` that exist, by title."""
    return [{"id": r[0], "title": r[1], "source": r[2]} for r in conn.execute(
        "SELECT id, title, source FROM rules WHERE id IN (SELECT value FROM json_each(?)) "
        "ORDER BY title COLLATE NOCASE, id", (json.dumps(sorted(set(ids))),))]


def event_coverage(cat: Catalog) -> dict[str, Any]:
    """Events (channel + id) and data sources with rule counts per source."""
    events = [{"channel": e.channel, "event_id": e.event_id, "by_source": e.by_source,
               "total": e.total} for e in cat.event_coverage()]
    ds: dict[str, dict[str, int]] = {}
    for name, src, n in cat.counts_by_source("d.data_source", "rule_data_sources d", None):
        ds.setdefault(name, {})[src] = n
    data_sources: list[dict[str, Any]] = [
        {"name": n, "by_source": bs, "total": sum(bs.values())}
        for n, bs in sorted(ds.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))]
    return {"sources": sources(cat.conn), "events": events, "data_sources": data_sources}


def macros(cat: Catalog, name: str | None = None) -> list[dict[str, Any]]:
    """Macro definitions with how many rules use each; for one ``name`` (every arity), the
    rules too."""
    out = []
    for m in cat.macros():
        if name is not None and m.name != name:
            continue
        item: dict[str, Any] = {
            "name": m.name, "key": m.key, "arguments": list(m.arguments),
            "definition": m.definition, "description": m.description, "path": m.path,
            "used_by": len(m.rules),
        }
        if name is not None:
            item["rules"] = rule_titles(cat.conn, m.rules)
        out.append(item)
    return out


def stories(cat: Catalog, name: str | None = None) -> list[dict[str, Any]]:
    """Analytic stories with their rule counts, by name; for one ``name``, its narrative,
    references and rules too."""
    out = []
    for s in sorted(cat.stories(), key=lambda s: s.name.lower()):
        if name is not None and s.name != name:
            continue
        item: dict[str, Any] = {
            "name": s.name, "source": s.source,
            "description": str(s.doc.get("description", "") or ""),
            "rules_count": len(s.rules),
        }
        if name is not None:
            item["narrative"] = str(s.doc.get("narrative", "") or "")
            item["references"] = [str(x) for x in s.doc.get("references", []) or []]
            item["rules"] = rule_titles(cat.conn, s.rules)
        out.append(item)
    return out


__all__ = ["event_coverage", "macros", "overview", "rule_titles", "sources", "stories"]
