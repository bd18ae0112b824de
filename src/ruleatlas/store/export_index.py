"""What ``export-site`` needs beyond the pages: the rule ids to write, and the compact index the
exported site's client-side search filters (``search-index.json``)."""

from __future__ import annotations

import sqlite3
from typing import Any

DESCRIPTION_CHARS = 300  # start of the description kept in the search index


def all_rule_ids(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT id FROM rules ORDER BY id")]


def search_index(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """One compact row per rule, by title: ``{"id", "t" (title), "s" (source), "st" (status),
    "sv" (severity), "d" (start of the description), "a" (techniques), "ta" (tactics)}``."""
    tactics: dict[str, list[str]] = {}
    for rid, tactic in conn.execute(
            "SELECT DISTINCT a.rule_id, j.value FROM rule_attack a JOIN attack_techniques t "
            "ON t.technique = a.technique, json_each(t.tactics) j"):
        tactics.setdefault(rid, []).append(tactic)
    return [
        {"id": r[0], "t": r[1], "s": r[2], "st": r[3], "sv": r[4], "d": r[5],
         "a": sorted((r[6] or "").split()), "ta": sorted(tactics.get(r[0], []))}
        for r in conn.execute(
            "SELECT r.id, r.title, r.source, r.status, r.severity, substr(r.description, 1, ?), "
            "(SELECT group_concat(technique, ' ') FROM rule_attack a WHERE a.rule_id = r.id) "
            "FROM rules r ORDER BY r.title COLLATE NOCASE", (DESCRIPTION_CHARS,))
    ]


__all__ = ["all_rule_ids", "search_index"]
