"""SQL for indicators: rows per rule, corpus counts, lookups by key, similar rules.

Why counts are a table rebuilt by one statement: a build writes ~40k indicator rows, and every
rule page shows a count per value; one ``GROUP BY`` after the build is cheaper than counting on
each page view, and a rebuild recounts for free (``recount``).
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

from ruleatlas.model import Indicator
from ruleatlas.sources import SOURCES
from ruleatlas.store.connection import connection_stamp, with_connection

COUNT_CACHE_SIZE = 2  # catalog states whose indexed-rule count is kept

_INSERT = (
    "INSERT INTO indicators (rule_id, source, row, field, op, negated, value, field_key, key, "
    "phase) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def write_indicators(
    conn: sqlite3.Connection, rule_id: str, source: str, indicators: Sequence[Indicator]
) -> int:
    """Replace the indicator rows of one rule; returns the number of value rows written.

    Rows keep their order (``row``; values by rowid), which is the order the page shows.
    """
    conn.execute("DELETE FROM indicators WHERE rule_id = ?", (rule_id,))
    rows = [
        (rule_id, source, i, ind.field, ind.op, int(ind.negated), v.value, ind.field_key, v.key,
         ind.phase.value)
        for i, ind in enumerate(indicators)
        for v in ind.values
    ]
    conn.executemany(_INSERT, rows)
    return len(rows)


def recount(conn: sqlite3.Connection) -> int:
    """Recompute ``indicator_counts``: distinct rules per (field_key, key), total and by source.

    Returns the number of distinct indicators counted.
    """
    conn.execute("DELETE FROM indicator_counts")
    conn.execute(
        """
        INSERT INTO indicator_counts (field_key, key, total, by_source)
        SELECT field_key, key, SUM(n), json_group_object(source, n)
        FROM (
            SELECT field_key, key, source, COUNT(DISTINCT rule_id) AS n
            FROM indicators GROUP BY field_key, key, source
        )
        GROUP BY field_key, key
        """
    )
    (n,) = conn.execute("SELECT COUNT(*) FROM indicator_counts").fetchone()
    return int(n)


def catalog_sources(conn: sqlite3.Connection) -> list[str]:
    """Every registered source (``ruleatlas.sources.SOURCES``) and any other source present in
    the catalog, sorted: the keys every ``corpus`` dict carries, so a front end reads
    ``corpus["elastic"]`` whether or not the catalog holds Elastic rules."""
    present = {r[0] for r in conn.execute("SELECT DISTINCT source FROM rules")}
    return sorted(present | set(SOURCES))


def _corpus(total: int | None, by_source: str | None, sources: Iterable[str]) -> dict[str, int]:
    counts = json.loads(by_source) if by_source else {}
    out: dict[str, int] = {"total": int(total or 0)}
    for s in sources:
        out[s] = int(counts.get(s, 0))
    for s, n in counts.items():  # a source with indicators but no rules row: still shown
        out.setdefault(s, int(n))
    return out


def rule_indicators(conn: sqlite3.Connection, rule_id: str) -> list[dict[str, Any]]:
    """The document shape of a rule's indicators, with corpus counts per value:

    ``[{"field", "op", "negated", "field_key", "phase", "values": [{"value", "key",
    "corpus": {"total": N, "elastic": n1, "sigma": n2, "splunk": n3}}]}]`` (every source,
    :func:`catalog_sources`; ``phase``: ``event``, or ``result`` for a test made after an
    aggregation)
    """
    sources = catalog_sources(conn)
    cur = conn.execute(
        """
        SELECT i.row, i.field, i.op, i.negated, i.field_key, i.phase, i.value, i.key, c.total,
               c.by_source
        FROM indicators i
        LEFT JOIN indicator_counts c ON c.field_key = i.field_key AND c.key = i.key
        WHERE i.rule_id = ?
        ORDER BY i.row, i.rowid
        """,
        (rule_id,),
    )
    out: list[dict[str, Any]] = []
    last: int | None = None
    for row, field, op, negated, field_key, phase, value, key, total, by_source in cur:
        if row != last:
            out.append(
                {"field": field, "op": op, "negated": bool(negated), "field_key": field_key,
                 "phase": phase, "values": []}
            )
            last = row
        out[-1]["values"].append(
            {"value": value, "key": key, "corpus": _corpus(total, by_source, sources)}
        )
    return out


def rules_with_indicator(
    conn: sqlite3.Connection, field_key: str, key: str
) -> dict[str, list[dict[str, Any]]]:
    """Every rule holding (field_key, key), grouped by source (sources sorted, rules by title),
    each with how it writes the indicator (field, op, value)."""
    cur = conn.execute(
        """
        SELECT r.source, r.id, r.title, r.path, i.field, i.op, i.value, i.negated
        FROM indicators i JOIN rules r ON r.id = i.rule_id
        WHERE i.field_key = ? AND i.key = ?
        GROUP BY r.id
        ORDER BY r.source, r.title COLLATE NOCASE, r.id
        """,
        (field_key, key),
    )
    out: dict[str, list[dict[str, Any]]] = {}
    for source, rid, title, path, field, op, value, negated in cur:
        out.setdefault(source, []).append(
            {"id": rid, "title": title, "path": path, "field": field, "op": op, "value": value,
             "negated": bool(negated)}
        )
    return out


def indicator_page(conn: sqlite3.Connection, field_key: str, key: str) -> dict[str, Any]:
    """The indicator page: every rule holding ``(field_key, key)`` by source, the spellings it
    is written with, and its corpus counts (None when no rule holds it)."""
    by_source = rules_with_indicator(conn, field_key, key)
    written = [r[0] for r in conn.execute(
        "SELECT DISTINCT value FROM indicators WHERE field_key = ? AND key = ? ORDER BY 1",
        (field_key, key))]
    row = conn.execute("SELECT total, by_source FROM indicator_counts WHERE field_key = ? "
                       "AND key = ?", (field_key, key)).fetchone()
    return {
        "field": field_key,
        "key": key,
        "written": written,
        "total": sum(len(v) for v in by_source.values()),
        "corpus": _corpus(row[0], row[1], catalog_sources(conn)) if row else None,
        "by_source": by_source,
    }


def indicator_fields(conn: sqlite3.Connection, limit: int = 60) -> list[tuple[str, int]]:
    """Canonical fields by number of distinct indicator values."""
    return [(r[0], r[1]) for r in conn.execute(
        "SELECT field_key, count(*) FROM indicator_counts GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?",
        (limit,))]


def indicator_explorer(conn: sqlite3.Connection, field_key: str | None, per_field: int = 10,
                       fields: int = 12) -> list[dict[str, Any]]:
    """Most common and rarest indicators per field (one field, or the busiest fields)."""
    names = [field_key] if field_key else [f for f, _ in indicator_fields(conn, fields)]
    out = []
    for f in names:
        ends = {}
        for end, order in (("common", "total DESC"), ("rare", "total")):
            ends[end] = [
                {"key": k, "total": total, "by_source": json.loads(bs) if bs else {}}
                for k, total, bs in conn.execute(
                    "SELECT key, total, by_source FROM indicator_counts WHERE field_key = ? "
                    f"ORDER BY {order}, key LIMIT ?", (f, per_field))]
        (n,) = conn.execute(
            "SELECT count(*) FROM indicator_counts WHERE field_key = ?", (f,)).fetchone()
        out.append({"field": f, "distinct": n, **ends})
    return out


def indicator_keys(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    """Every distinct ``(field_key, key)`` of the catalog (export-site writes one page each)."""
    return [(r[0], r[1]) for r in conn.execute("SELECT field_key, key FROM indicator_counts")]


def indexed_rule_count(conn: sqlite3.Connection) -> int:
    """Number of rules with at least one indicator (the N of the IDF weights), counted once
    per catalog state (the rule page asks on every view)."""
    path, stamp = connection_stamp(conn)
    return _indexed_rules(path, stamp) if path else _count_indexed(conn)


def _count_indexed(conn: sqlite3.Connection) -> int:
    (n,) = conn.execute("SELECT COUNT(DISTINCT rule_id) FROM indicators").fetchone()
    return int(n)


@lru_cache(maxsize=COUNT_CACHE_SIZE)
def _indexed_rules(path: str, stamp: tuple[int, ...]) -> int:
    return with_connection(path, _count_indexed)


def idf(total_rules: int, df: int) -> float:
    """Weight of an indicator held by ``df`` of ``total_rules`` rules: ``log(N / df)``, so an
    indicator every rule has weighs 0 and one held by two rules weighs the most."""
    if df <= 0 or total_rules <= 0:
        return 0.0
    return math.log(total_rules / df)


def similar_rules(
    conn: sqlite3.Connection, rule_id: str, limit: int = 10
) -> list[dict[str, Any]]:
    """Rules of any source sharing the most indicators with ``rule_id``, weighted by IDF.

    Each result: ``{"id", "title", "source", "path", "score", "share", "shared": [{"field_key",
    "key", "weight", "df"}]}``; ``share`` is the score over the rule's own total weight (1.0 =
    the other rule holds every indicator of this one). Indicators only this rule holds cannot
    be shared and are left out of the join. One join, no temp table, so it runs on read-only
    connections; ties are broken by id.
    """
    n = indexed_rule_count(conn)
    mine = conn.execute(
        "SELECT DISTINCT i.field_key, i.key, c.total FROM indicators i JOIN indicator_counts c "
        "ON c.field_key = i.field_key AND c.key = i.key WHERE i.rule_id = ?", (rule_id,),
    ).fetchall()
    weights = {(fk, k): (idf(n, df), df) for fk, k, df in mine}
    own = sum(w for w, _ in weights.values()) or 1.0
    per_rule: dict[str, set[tuple[str, str]]] = {}
    for rid, fk, k in conn.execute(
        "SELECT i2.rule_id, m.field_key, m.key FROM ("
        " SELECT DISTINCT i.field_key, i.key FROM indicators i"
        " JOIN indicator_counts c ON c.field_key = i.field_key AND c.key = i.key"
        " WHERE i.rule_id = ?1 AND c.total > 1) m "
        "JOIN indicators i2 ON i2.field_key = m.field_key AND i2.key = m.key "
        "AND i2.rule_id <> ?1", (rule_id,),
    ):
        per_rule.setdefault(rid, set()).add((fk, k))
    scored = sorted(
        ((sum(weights[x][0] for x in sorted(keys)), rid, keys) for rid, keys in per_rule.items()),
        key=lambda t: (-round(t[0], 9), t[1]),  # ties by id, whatever the summation order
    )[: max(limit, 0)]
    out: list[dict[str, Any]] = []
    for score, rid, keys in scored:
        meta = conn.execute(
            "SELECT title, source, path FROM rules WHERE id = ?", (rid,)
        ).fetchone() or (None, None, None)
        ordered = sorted(sorted(keys), key=lambda x: -weights[x][0])
        out.append({
            "id": rid, "title": meta[0], "source": meta[1], "path": meta[2],
            "score": round(score, 4), "share": round(score / own, 4),
            "shared": [{"field_key": fk, "key": k, "weight": round(weights[(fk, k)][0], 4),
                        "df": weights[(fk, k)][1]} for fk, k in ordered],
        })
    return out


def _top(
    conn: sqlite3.Connection, field: str | None, limit: int, order: str, min_total: int
) -> list[dict[str, Any]]:
    sources = catalog_sources(conn)
    where = ["c.total >= ?"]
    args: list[Any] = [min_total]
    if field is not None:
        where.append("c.field_key = ? COLLATE NOCASE")
        args.append(field)
    args.append(limit)
    cur = conn.execute(
        f"""
        SELECT c.field_key, c.key, c.total, c.by_source,
               (SELECT i.value FROM indicators i
                 WHERE i.field_key = c.field_key AND i.key = c.key LIMIT 1)
        FROM indicator_counts c
        WHERE {" AND ".join(where)}
        ORDER BY c.total {order}, c.field_key, c.key
        LIMIT ?
        """,
        args,
    )
    return [
        {"field_key": fk, "key": k, "example": ex, "corpus": _corpus(total, bs, sources)}
        for fk, k, total, bs, ex in cur
    ]


def top_indicators(
    conn: sqlite3.Connection, field: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """The most widely used indicators (optionally of one canonical field)."""
    return _top(conn, field, limit, "DESC", 1)


def rarest_indicators(
    conn: sqlite3.Connection, field: str | None = None, limit: int = 50, min_total: int = 2
) -> list[dict[str, Any]]:
    """The least used indicators that are still shared (``min_total`` rules or more)."""
    return _top(conn, field, limit, "ASC", min_total)
