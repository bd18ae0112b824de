"""Finding rules: full text (FTS5, bm25) combined with metadata filters, and facet counts.

Why SQL built from a filter table (``_FILTERS``): every front end (CLI ``list``/``search``, the
web's browse page, the JSON API) asks the same question with a different subset of filters, so
each filter is one entry producing one ``WHERE`` clause; facets re-run the same clauses and
group by one column, so counts always describe the current result set.

User text never reaches FTS5 syntax: each word becomes a quoted phrase (``"`` doubled), so
``"``, ``*``, ``NEAR(`` or unbalanced parentheses are searched for as text, never parsed.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ruleatlas.store.codec import loads

# Markers around matched words in snippets; front ends replace them (after escaping the rest).
HL_START = "\x02"
HL_END = "\x03"

SORTS = ("relevance", "title", "severity", "modified")
SEVERITY_ORDER = {"critical": 5, "high": 4, "medium": 3, "low": 2, "informational": 1}
TEST_STATUSES = ("pass", "fail", "no-data", "not-runnable", "untested", "none")


class SearchError(ValueError):
    """A query the catalog cannot answer (unknown sort, bad page)."""


@dataclass(frozen=True, slots=True)
class RuleQuery:
    """One browse/search request. Empty fields do not filter. ``technique`` also matches the
    sub-techniques of a parent (``T1059`` finds ``T1059.001``); ``event`` is ``"Channel ID"`` or
    a channel alone; ``tactic`` a short name (``execution``) or display name."""

    text: str | None = None
    source: str | None = None
    status: str | None = None
    severity: str | None = None
    tactic: str | None = None
    technique: str | None = None
    data_source: str | None = None
    event: str | None = None
    language: str | None = None
    type: str | None = None
    test_status: str | None = None
    sort: str = "relevance"
    page: int = 1
    per_page: int = 50
    facets: bool = True


@dataclass(frozen=True, slots=True)
class RuleSummary:
    id: str
    source: str
    title: str
    status: str | None
    severity: str | None
    type: str | None
    language: str
    snippet: str | None
    techniques: tuple[str, ...] = ()
    path: str = ""


@dataclass(frozen=True, slots=True)
class RulePage:
    total: int
    rows: list[RuleSummary]
    facets: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    page: int = 1
    per_page: int = 50


_WORD = re.compile(r"\w", re.UNICODE)


def fts_query(text: str) -> str | None:
    """User text as a safe FTS5 query: every word a quoted phrase, all required (AND).

    A word ending in ``*`` stays a prefix search (``wmi*``); words without any letter or digit
    are dropped (they would be empty phrases). None when nothing searchable is left."""
    parts: list[str] = []
    for tok in text.split():
        prefix = tok.endswith("*") and len(tok.rstrip("*")) > 0
        core = tok.rstrip("*") if prefix else tok
        if not _WORD.search(core):
            continue
        phrase = '"' + core.replace('"', '""') + '"'
        parts.append(phrase + ("*" if prefix else ""))
    return " ".join(parts) if parts else None


def _split_event(ev: str) -> tuple[str, str | None]:
    ev = ev.strip()
    head, _, tail = ev.rpartition(" ")
    if head and tail and (tail.isdigit() or re.fullmatch(r"\d+(\.\d+)?", tail)):
        return head.strip(), tail
    return ev, None


def _tactic_name(t: str) -> str:
    return t.strip().lower().replace(" ", "-").replace("_", "-")


# Each filter: RuleQuery field -> (value -> (sql, params)). Clauses refer to the alias ``r``.
_Filter = Callable[[str], tuple[str, list[Any]]]

_FILTERS: dict[str, _Filter] = {
    "source": lambda v: ("r.source = ?", [v]),
    "status": lambda v: ("r.status = ?", [v]),
    "severity": lambda v: ("lower(r.severity) = lower(?)", [v]),
    "language": lambda v: ("r.language = ?", [v]),
    "type": lambda v: ("r.type = ? COLLATE NOCASE", [v]),
    "technique": lambda v: (
        "EXISTS (SELECT 1 FROM rule_attack ra WHERE ra.rule_id = r.id AND "
        "(ra.technique = ? OR ra.technique LIKE ?))",
        [v.strip().upper(), v.strip().upper() + ".%"],
    ),
    "tactic": lambda v: (
        "EXISTS (SELECT 1 FROM rule_attack ra JOIN attack_techniques t "
        "ON t.technique = ra.technique, json_each(t.tactics) j "
        "WHERE ra.rule_id = r.id AND j.value = ?)",
        [_tactic_name(v)],
    ),
    "data_source": lambda v: (
        "EXISTS (SELECT 1 FROM rule_data_sources d WHERE d.rule_id = r.id AND "
        "d.data_source = ? COLLATE NOCASE)",
        [v],
    ),
    "event": lambda v: _event_filter(v),
    "test_status": lambda v: _test_filter(v),
}


def _event_filter(v: str) -> tuple[str, list[Any]]:
    ch, eid = _split_event(v)
    if eid is None:
        return ("EXISTS (SELECT 1 FROM rule_events e WHERE e.rule_id = r.id AND "
                "e.channel = ? COLLATE NOCASE)", [ch])
    return ("EXISTS (SELECT 1 FROM rule_events e WHERE e.rule_id = r.id AND "
            "e.channel = ? COLLATE NOCASE AND e.event_id = ?)", [ch, eid])


_HAS_TESTS = ("(instr(r.rule_json, '\"tests\": [{') > 0 OR "
              "instr(r.rule_json, '\"tests\":[{') > 0)")


def _test_filter(v: str) -> tuple[str, list[Any]]:
    if v not in TEST_STATUSES:
        raise SearchError(f"unknown test status {v!r}; one of {', '.join(TEST_STATUSES)}")
    if v == "none":
        return (f"NOT {_HAS_TESTS}", [])
    if v == "untested":
        return (f"{_HAS_TESTS} AND NOT EXISTS (SELECT 1 FROM test_results tr "
                "WHERE tr.rule_id = r.id)", [])
    return ("EXISTS (SELECT 1 FROM test_results tr WHERE tr.rule_id = r.id AND tr.status = ?)",
            [v])


# Facet name -> SQL listing (rule id, value) rows over the whole catalog.
_FACETS: dict[str, str] = {
    "source": "SELECT id, source FROM rules",
    "status": "SELECT id, coalesce(status, '') FROM rules",
    "severity": "SELECT id, lower(coalesce(severity, '')) FROM rules",
    "language": "SELECT id, language FROM rules",
    "type": "SELECT id, coalesce(type, '') FROM rules",
    "tactic": (
        "SELECT DISTINCT ra.rule_id, j.value FROM rule_attack ra "
        "JOIN attack_techniques t ON t.technique = ra.technique, json_each(t.tactics) j"
    ),
    "technique": "SELECT rule_id, technique FROM rule_attack",
    "data_source": "SELECT rule_id, data_source FROM rule_data_sources",
    "event": (
        "SELECT rule_id, channel || CASE WHEN event_id = '' THEN '' ELSE ' ' || event_id END "
        "FROM rule_events"
    ),
}
FACET_LIMIT = 50


def _where(q: RuleQuery) -> tuple[list[str], list[Any], str | None]:
    clauses: list[str] = []
    params: list[Any] = []
    for name, fn in _FILTERS.items():
        v = getattr(q, name)
        if v is None or (isinstance(v, str) and not v.strip()):
            continue
        sql, ps = fn(v)
        clauses.append(sql)
        params.extend(ps)
    match = fts_query(q.text) if q.text else None
    return clauses, params, match


def _facet_index(conn: sqlite3.Connection,
                 cache: dict[str, Any] | None) -> dict[str, dict[str, list[str]]]:
    """Facet name -> rule id -> values, for the whole catalog; kept in ``cache`` (the Catalog's)
    until another connection commits (``PRAGMA data_version`` changes)."""
    # data_version moves on other connections' commits, total_changes on this one's.
    version = (conn.execute("PRAGMA data_version").fetchone()[0], conn.total_changes)
    if cache is not None:
        got = cache.get("facets")
        if got is not None and got[0] == version:
            return got[1]  # type: ignore[no-any-return]
    index: dict[str, dict[str, list[str]]] = {}
    for name, sql in _FACETS.items():
        per: dict[str, list[str]] = {}
        for rid, v in conn.execute(sql):
            per.setdefault(rid, []).append(str(v))
        index[name] = per
    if cache is not None:
        cache["facets"] = (version, index)
    return index


def _facets(conn: sqlite3.Connection, ids: list[str],
            cache: dict[str, Any] | None) -> dict[str, list[tuple[str, int]]]:
    index = _facet_index(conn, cache)
    out: dict[str, list[tuple[str, int]]] = {}
    for name, per in index.items():
        counts: dict[str, int] = {}
        for rid in ids:
            for v in per.get(rid, ()):
                counts[v] = counts.get(v, 0) + 1
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        out[name] = ranked[:FACET_LIMIT]
    return out


def search_rules(conn: sqlite3.Connection, q: RuleQuery,
                 cache: dict[str, Any] | None = None) -> RulePage:
    """One page of rules matching ``q``, ranked (bm25 when there is text), with facets.

    ``cache`` (a dict the caller keeps, e.g. ``Catalog._cache``) holds the per-rule facet
    values between calls, so facets cost a pass over the matched ids, not one SQL per facet."""
    if q.sort not in SORTS:
        raise SearchError(f"unknown sort {q.sort!r}; one of {', '.join(SORTS)}")
    if q.page < 1 or q.per_page < 1:
        raise SearchError("page and per_page start at 1")
    clauses, params, match = _where(q)
    if q.text and match is None:  # only punctuation: nothing can match
        return RulePage(0, [], {}, q.page, q.per_page)
    frm = "rules r"
    rank = "0"
    snippet = "NULL"
    if match is not None:
        frm = "rules_fts f CROSS JOIN rules r ON r.rowid = f.rowid"  # FTS drives
        clauses.insert(0, "rules_fts MATCH ?")
        params.insert(0, match)
        rank = "bm25(rules_fts, 0.0, 10.0, 3.0, 1.0)"
        snippet = f"snippet(rules_fts, -1, '{HL_START}', '{HL_END}', '…', 16)"
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    order = {
        "relevance": f"{rank}, r.title COLLATE NOCASE" if match else "r.title COLLATE NOCASE",
        "title": "r.title COLLATE NOCASE, r.id",
        "severity": ("CASE lower(r.severity) WHEN 'critical' THEN 5 WHEN 'high' THEN 4 "
                     "WHEN 'medium' THEN 3 WHEN 'low' THEN 2 WHEN 'informational' THEN 1 "
                     "ELSE 0 END DESC, r.title COLLATE NOCASE"),
        "modified": "coalesce(r.modified, r.date, '') DESC, r.title COLLATE NOCASE",
    }[q.sort]
    (total,) = conn.execute(f"SELECT count(*) FROM {frm}{where}", params).fetchone()
    # The page first (cheap columns only: SQLite computes every selected column of every
    # matching row before sorting), then snippets and techniques for the page's rows alone.
    page_rows = conn.execute(
        f"SELECT r.rowid, r.id, r.source, r.title, r.status, r.severity, r.type, r.language, "
        f"r.path FROM {frm}{where} ORDER BY {order} LIMIT ? OFFSET ?",
        [*params, q.per_page, (q.page - 1) * q.per_page],
    ).fetchall()
    snippets: dict[int, str] = {}
    techniques: dict[str, list[str]] = {}
    for i in range(0, len(page_rows), 500):  # bounded number of SQL variables
        chunk = page_rows[i:i + 500]
        marks = ", ".join("?" * len(chunk))
        if match is not None:
            snippets.update(conn.execute(
                f"SELECT rowid, {snippet} FROM rules_fts WHERE rules_fts MATCH ? "
                f"AND rowid IN ({marks})", [match, *(r[0] for r in chunk)]))
        for rid, tech in conn.execute(
                f"SELECT rule_id, technique FROM rule_attack WHERE rule_id IN ({marks}) "
                f"ORDER BY technique", [r[1] for r in chunk]):
            techniques.setdefault(rid, []).append(tech)
    rows = [
        RuleSummary(rid, src, title, status, sev, typ, lang, snippets.get(rowid),
                    tuple(techniques.get(rid, ())), path)
        for rowid, rid, src, title, status, sev, typ, lang, path in page_rows
    ]
    facets: dict[str, list[tuple[str, int]]] = {}
    if q.facets and total:
        ids = [r[0] for r in conn.execute(f"SELECT r.id FROM {frm}{where}", params)]
        facets = _facets(conn, ids, cache)
    return RulePage(int(total), rows, facets, q.page, q.per_page)


def facet_values(conn: sqlite3.Connection, name: str) -> list[tuple[str, int]]:
    """Counts of one facet over the whole catalog (for CLI completion and web menus)."""
    return search_rules(conn, RuleQuery(per_page=1)).facets.get(name, [])


def summary_to_dict(s: RuleSummary) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v)
            for k, v in ((n, getattr(s, n)) for n in RuleSummary.__slots__)}


__all__ = ["HL_END", "HL_START", "RulePage", "RuleQuery", "RuleSummary", "SearchError",
           "fts_query", "loads", "search_rules", "summary_to_dict"]
