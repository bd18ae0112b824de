"""The engine's side of the store: rule test results (``test_results``) and the rules it runs.

Results are upserted per rule, so a partial run (``ruleatlas test RULE``) updates just the rules
it ran. The table is part of ``schema.sql``; readers see it through ``Catalog.test_results`` and
the search's ``test`` filter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ruleatlas.store.catalog import Catalog, StoredRule
from ruleatlas.store.codec import dumps

_UPSERT = (
    "INSERT INTO test_results (rule_id, status, matched, expected, reason, detail, ran_at) "
    "VALUES (?,?,?,?,?,?,?) ON CONFLICT(rule_id) DO UPDATE SET status=excluded.status, "
    "matched=excluded.matched, expected=excluded.expected, reason=excluded.reason, "
    "detail=excluded.detail, ran_at=excluded.ran_at"
)


def write_results(db: str | Path, results: Iterable[Mapping[str, Any]]) -> int:
    """Upsert ``{"id","status","matched","expected","reason", "detail"?}`` rows; returns count."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    rows = [
        (r["id"], r["status"], int(r.get("matched") or 0), r.get("expected"), r.get("reason"),
         dumps(r["detail"]) if r.get("detail") is not None else None, now)
        for r in results
    ]
    with Catalog.open(db) as cat, cat.transaction() as conn:
        conn.executemany(_UPSERT, rows)
    return len(rows)


def read_results(db: str | Path, ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The stored results (all, or of ``ids``) as ``{"id", "status", ..., "ran_at"}`` dicts."""
    wanted = set(ids or ())
    with Catalog.open(db, readonly=True) as cat:
        return [{"id": r.rule_id, "status": r.status, "matched": r.matched,
                 "expected": r.expected, "reason": r.reason, "detail": r.detail,
                 "ran_at": r.ran_at}
                for r in cat.test_results() if not wanted or r.rule_id in wanted]


def load_rules(db: str | Path, ids: Sequence[str] | None = None) -> list[StoredRule]:
    """Rules with their stored analysis and tactics, in id order (all, or the given ids)."""
    with Catalog.open(db, readonly=True) as cat:
        return cat.stored_rules(ids or None)


__all__ = ["load_rules", "read_results", "write_results"]
