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
from typing import Any

from ruleatlas.model import Indicator

_INSERT = (
    "INSERT INTO indicators (rule_id, source, row, field, op, negated, value, field_key, key) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def write_indicators(
    conn: sqlite3.Connection, rule_id: str, source: str, indicators: Sequence[Indicator]
) -> int:
    """Replace the indicator rows of one rule; returns the number of value rows written.

    Rows keep their order (``row``; values by rowid), which is the order the page shows.
    """
    conn.execute("DELETE FROM indicators WHERE rule_id = ?", (rule_id,))
    rows = [
        (rule_id, source, i, ind.field, ind.op, int(ind.negated), v.value, ind.field_key, v.key)
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
    """Sources present in the catalog, sorted (the keys every ``corpus`` dict carries)."""
    return [r[0] for r in conn.execute("SELECT DISTINCT source FROM rules ORDER BY source")]


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

    ``[{"field", "op", "negated", "field_key", "values": [{"value", "key",
    "corpus": {"total": N, "sigma": n1, "splunk": n2}}]}]``
    """
    sources = catalog_sources(conn)
    cur = conn.execute(
        """
        SELECT i.row, i.field, i.op, i.negated, i.field_key, i.value, i.key, c.total, c.by_source
        FROM indicators i
        LEFT JOIN indicator_counts c ON c.field_key = i.field_key AND c.key = i.key
        WHERE i.rule_id = ?
        ORDER BY i.row, i.rowid
        """,
        (rule_id,),
    )
    out: list[dict[str, Any]] = []
    last: int | None = None
    for row, field, op, negated, field_key, value, key, total, by_source in cur:
        if row != last:
            out.append(
                {"field": field, "op": op, "negated": bool(negated), "field_key": field_key,
                 "values": []}
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
        SELECT r.source, r.id, r.title, r.path, i.field, i.op, i.value
        FROM indicators i JOIN rules r ON r.id = i.rule_id
        WHERE i.field_key = ? AND i.key = ?
        GROUP BY r.id
        ORDER BY r.source, r.title, r.id
        """,
        (field_key, key),
    )
    out: dict[str, list[dict[str, Any]]] = {}
    for source, rid, title, path, field, op, value in cur:
        out.setdefault(source, []).append(
            {"id": rid, "title": title, "path": path, "field": field, "op": op, "value": value}
        )
    return out


def indexed_rule_count(conn: sqlite3.Connection) -> int:
    """Number of rules with at least one indicator (the N of the IDF weights)."""
    (n,) = conn.execute("SELECT COUNT(DISTINCT rule_id) FROM indicators").fetchone()
    return int(n)


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
    be shared and are left out of the join.
    """
    n = indexed_rule_count(conn)
    mine = conn.execute(
        """
        SELECT DISTINCT i.field_key, i.key, c.total
        FROM indicators i JOIN indicator_counts c ON c.field_key = i.field_key AND c.key = i.key
        WHERE i.rule_id = ?
        """,
        (rule_id,),
    ).fetchall()
    weights = {(fk, k): (idf(n, df), df) for fk, k, df in mine}
    own = sum(w for w, _ in weights.values()) or 1.0
    shared_keys = [(fk, k) for (fk, k), (_, df) in weights.items() if df > 1]
    if not shared_keys:
        return []
    # The keys travel as one JSON parameter: no temp table, so this works on the web's
    # read-only (query_only) connections too.
    cur = conn.execute(
        """
        WITH k(field_key, key) AS (
            SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?)
        )
        SELECT DISTINCT i.rule_id, i.field_key, i.key
        FROM k JOIN indicators i ON i.field_key = k.field_key AND i.key = k.key
        WHERE i.rule_id != ?
        """,
        (json.dumps(shared_keys), rule_id),
    )
    per_rule: dict[str, list[tuple[str, str]]] = {}
    for rid, fk, k in cur:
        per_rule.setdefault(rid, []).append((fk, k))
    scored = sorted(
        ((sum(weights[x][0] for x in keys), rid, keys) for rid, keys in per_rule.items()),
        key=lambda t: (-t[0], t[1]),
    )[: max(limit, 0)]
    out: list[dict[str, Any]] = []
    for score, rid, keys in scored:
        meta = conn.execute(
            "SELECT title, source, path FROM rules WHERE id = ?", (rid,)
        ).fetchone() or (None, None, None)
        keys.sort(key=lambda x: -weights[x][0])
        out.append(
            {
                "id": rid,
                "title": meta[0],
                "source": meta[1],
                "path": meta[2],
                "score": round(score, 4),
                "share": round(score / own, 4),
                "shared": [
                    {"field_key": fk, "key": k, "weight": round(weights[(fk, k)][0], 4),
                     "df": weights[(fk, k)][1]}
                    for fk, k in keys
                ],
            }
        )
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


def resolve_rule(conn: sqlite3.Connection, ref: str) -> tuple[str | None, list[str]]:
    """A rule id from an id or a title (exact, case-insensitive); (None, candidates) when the
    title is ambiguous or unknown."""
    row = conn.execute("SELECT id FROM rules WHERE id = ?", (ref,)).fetchone()
    if row:
        return row[0], [row[0]]
    ids = [r[0] for r in conn.execute(
        "SELECT id FROM rules WHERE title = ? COLLATE NOCASE ORDER BY id", (ref,)
    )]
    return (ids[0] if len(ids) == 1 else None), ids


def open_catalog(path: str) -> sqlite3.Connection:
    """Open an existing catalog read-only (the indicator commands never write); raises
    FileNotFoundError naming the path when there is none."""
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no catalog at {p} (run `ruleatlas build` first, or pass --db)")
    return sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True)
