"""The engine's side of the store: rule test results (``test_results``) and reading rules back
for the engine (``rules.rule_json`` / ``analysis_json``).

Only ``store/`` imports sqlite3 (house rule). Results are upserted per rule, so a partial run
(``ruleatlas test RULE``) updates just the rules it ran; the web reads the table through
``store/browse.py``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

TEST_RESULTS_DDL = """
CREATE TABLE IF NOT EXISTS test_results (
    rule_id  TEXT PRIMARY KEY,
    status   TEXT NOT NULL,
    matched  INTEGER NOT NULL DEFAULT 0,
    expected INTEGER,
    reason   TEXT,
    detail   TEXT,
    ran_at   TEXT NOT NULL
)
"""


class ResultsError(ValueError):
    """The catalog file is missing or is not a Rule Atlas catalog."""


@dataclass(frozen=True, slots=True)
class StoredRule:
    """A rule row as the engine needs it: the Rule and Analysis JSON, the repository root (to
    resolve test data paths) and the ATT&CK tactics of its techniques."""

    id: str
    source: str
    root: str
    rule: Mapping[str, Any]
    analysis: Mapping[str, Any] | None
    tactics: tuple[str, ...] = ()


def _connect(db: str | Path, create: bool = False) -> sqlite3.Connection:
    p = Path(db)
    if not create and not p.exists():
        raise ResultsError(f"no catalog at {p} (run `ruleatlas build` first)")
    conn = sqlite3.connect(str(p))
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)
    ).fetchone() is not None


def write_results(db: str | Path, results: Iterable[Mapping[str, Any]]) -> int:
    """Upsert ``{"id","status","matched","expected","reason", "detail"?}`` rows; returns count."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    rows = [
        (r["id"], r["status"], int(r.get("matched") or 0), r.get("expected"), r.get("reason"),
         json.dumps(r.get("detail")) if r.get("detail") is not None else None, now)
        for r in results
    ]
    conn = _connect(db, create=True)
    try:
        with conn:
            conn.execute(TEST_RESULTS_DDL)
            conn.executemany(
                "INSERT INTO test_results (rule_id, status, matched, expected, reason, detail,"
                " ran_at) VALUES (?,?,?,?,?,?,?) ON CONFLICT(rule_id) DO UPDATE SET"
                " status=excluded.status, matched=excluded.matched, expected=excluded.expected,"
                " reason=excluded.reason, detail=excluded.detail, ran_at=excluded.ran_at",
                rows,
            )
    finally:
        conn.close()
    return len(rows)


def read_results(db: str | Path, ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
    conn = _connect(db)
    try:
        if not _has_table(conn, "test_results"):
            return []
        sql = ("SELECT rule_id, status, matched, expected, reason, detail, ran_at"
               " FROM test_results")
        args: list[Any] = []
        if ids:
            sql += f" WHERE rule_id IN ({','.join('?' * len(ids))})"
            args = list(ids)
        out = []
        for row in conn.execute(sql + " ORDER BY rule_id", args):
            out.append({"id": row[0], "status": row[1], "matched": row[2], "expected": row[3],
                        "reason": row[4], "detail": json.loads(row[5]) if row[5] else None,
                        "ran_at": row[6]})
        return out
    finally:
        conn.close()


def load_rules(db: str | Path, ids: Sequence[str] | None = None) -> list[StoredRule]:
    """Rules with their stored analysis, in id order (all of them, or the given ids)."""
    conn = _connect(db)
    try:
        if not _has_table(conn, "rules"):
            raise ResultsError(f"{db} is not a Rule Atlas catalog (no rules table)")
        tactics: dict[str, set[str]] = {}
        if _has_table(conn, "rule_attack") and _has_table(conn, "attack_techniques"):
            for rid, tj in conn.execute(
                "SELECT ra.rule_id, t.tactics FROM rule_attack ra"
                " JOIN attack_techniques t ON t.technique = ra.technique"
            ):
                try:
                    tactics.setdefault(rid, set()).update(json.loads(tj or "[]"))
                except ValueError:
                    continue
        sql = "SELECT id, source, root, rule_json, analysis_json FROM rules"
        args: list[Any] = []
        if ids:
            sql += f" WHERE id IN ({','.join('?' * len(ids))})"
            args = list(ids)
        out = []
        for rid, source, root, rj, aj in conn.execute(sql + " ORDER BY id", args):
            out.append(StoredRule(
                rid, source, root, json.loads(rj), json.loads(aj) if aj else None,
                tuple(sorted(tactics.get(rid, ()))),
            ))
        return out
    finally:
        conn.close()
