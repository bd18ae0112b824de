"""The engine's plan cache in the catalog: table ``engine_plans`` (see ``engine/plans.py``).

One row per rule: the serialised prepared rule (``plan``), the digest of the rule's stored
content it was computed from (``digest``: rule JSON, analysis JSON, tactics) and the engine key
(``engine``: ``ENGINE_VERSION`` plus a hash of the engine's code). ``engine_plans_state`` holds
the catalog stamp (``meta.last_build`` as written by the build) the rows were last checked
against: when it still matches, a hunt reads the rows without reading the rules themselves.

Only SQLite access lives here (house rule: ``store/`` alone imports sqlite3); what a plan is,
and when one is stale, is the engine's business.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PLANS_DDL = (
    """CREATE TABLE IF NOT EXISTS engine_plans (
    rule_id TEXT PRIMARY KEY,
    digest  BLOB NOT NULL,
    engine  TEXT NOT NULL,
    plan    BLOB NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS engine_plans_state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
)""",
)

_CHUNK = 500  # ids per IN (...) query (under SQLite's variable limit)


class PlanStoreError(ValueError):
    """The catalog file is missing or is not a Rule Atlas catalog."""


@dataclass(frozen=True, slots=True)
class RuleText:
    """A rule row as stored (JSON text, not decoded) and the tactics of its techniques."""

    id: str
    root: str
    rule_json: str
    analysis_json: str | None
    tactics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PlanRow:
    rule_id: str
    digest: bytes
    plan: bytes


@dataclass(frozen=True, slots=True)
class PlanState:
    """What a hunt needs to decide whether the stored plans can be used as they are."""

    stamp: str | None  # meta.last_build now (None: never built)
    checked: str | None  # the stamp the plans were last checked against
    engine: str | None  # the engine key they were written with
    rules: int  # rows in rules
    plans: int  # rows in engine_plans for the engine key asked


def connect(db: str | Path, write: bool = False) -> sqlite3.Connection:
    p = Path(db)
    if not p.is_file():
        raise PlanStoreError(f"no catalog at {p} (run `ruleatlas build` first)")
    conn = sqlite3.connect(str(p))
    conn.execute("PRAGMA busy_timeout = 5000")
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='rules'"
                    ).fetchone() is None:
        conn.close()
        raise PlanStoreError(f"{p} is not a Rule Atlas catalog (no rules table)")
    if write:
        ensure(conn)
    return conn


def snapshot(conn: sqlite3.Connection) -> None:
    """Start a read transaction: the state, the rules and the plans a hunt reads are then of
    one catalog generation even when a build commits meanwhile (storing plans back then fails
    with SQLITE_BUSY, which :func:`save` reports)."""
    conn.execute("BEGIN")


def ensure(conn: sqlite3.Connection) -> None:
    for ddl in PLANS_DDL:
        conn.execute(ddl)


def _has(conn: sqlite3.Connection, table: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?",
                        (table,)).fetchone() is not None


def state(conn: sqlite3.Connection, engine: str) -> PlanState:
    stamp = None
    if _has(conn, "meta"):
        row = conn.execute("SELECT value FROM meta WHERE key='last_build'").fetchone()
        stamp = row[0] if row else None
    (rules,) = conn.execute("SELECT count(*) FROM rules").fetchone()
    if not _has(conn, "engine_plans"):
        return PlanState(stamp, None, None, rules, 0)
    got = dict(conn.execute("SELECT key, value FROM engine_plans_state").fetchall())
    (plans,) = conn.execute("SELECT count(*) FROM engine_plans WHERE engine=?",
                            (engine,)).fetchone()
    return PlanState(stamp, got.get("checked"), got.get("engine"), rules, plans)


def _chunks(ids: Sequence[str]) -> Iterator[Sequence[str]]:
    for i in range(0, len(ids), _CHUNK):
        yield ids[i:i + _CHUNK]


def plan_rows(conn: sqlite3.Connection, engine: str,
              ids: Sequence[str] | None = None) -> list[PlanRow]:
    """Stored plans written with ``engine`` (all, or the given rule ids)."""
    if not _has(conn, "engine_plans"):
        return []
    sql = "SELECT rule_id, digest, plan FROM engine_plans WHERE engine=?"
    if ids is None:
        return [PlanRow(*r) for r in conn.execute(sql, (engine,))]
    out: list[PlanRow] = []
    for part in _chunks(ids):
        q = sql + f" AND rule_id IN ({','.join('?' * len(part))})"
        out.extend(PlanRow(*r) for r in conn.execute(q, (engine, *part)))
    return out


def _tactics(conn: sqlite3.Connection) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    if not (_has(conn, "rule_attack") and _has(conn, "attack_techniques")):
        return out
    for rid, tj in conn.execute(
            "SELECT ra.rule_id, t.tactics FROM rule_attack ra"
            " JOIN attack_techniques t ON t.technique = ra.technique"):
        try:
            got = json.loads(tj or "[]")
        except ValueError:
            continue  # an unreadable tactics cell: the rule shows no tactic for it
        out.setdefault(rid, set()).update(str(x) for x in got)
    return out


def rule_texts(conn: sqlite3.Connection, ids: Sequence[str] | None = None) -> list[RuleText]:
    """The stored rules (JSON text as written), in id order."""
    tactics = _tactics(conn)
    sql = "SELECT id, root, rule_json, analysis_json FROM rules"
    rows: list[Any] = []
    if ids is None:
        rows = conn.execute(sql + " ORDER BY id").fetchall()
    else:
        for part in _chunks(ids):
            rows.extend(conn.execute(sql + f" WHERE id IN ({','.join('?' * len(part))})",
                                     tuple(part)))
        rows.sort(key=lambda r: r[0])
    return [RuleText(rid, root, rj, aj, tuple(sorted(tactics.get(rid, ()))))
            for rid, root, rj, aj in rows]


def write(conn: sqlite3.Connection, engine: str, rows: Iterable[PlanRow],
          keep: Iterable[str] | None = None, checked: str | None = None) -> None:
    """Upsert ``rows``; with ``keep``, delete the plans of every other rule (and of other engine
    keys); with ``checked``, record the catalog stamp the plans now match. The caller holds the
    transaction (the build's own, or :func:`transaction`)."""
    ensure(conn)
    conn.executemany(
        "INSERT INTO engine_plans (rule_id, digest, engine, plan) VALUES (?,?,?,?)"
        " ON CONFLICT(rule_id) DO UPDATE SET digest=excluded.digest, engine=excluded.engine,"
        " plan=excluded.plan",
        ((r.rule_id, r.digest, engine, r.plan) for r in rows))
    if keep is not None:
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS _plan_keep (id TEXT PRIMARY KEY)")
        conn.execute("DELETE FROM _plan_keep")
        conn.executemany("INSERT OR IGNORE INTO _plan_keep VALUES (?)", ((i,) for i in keep))
        conn.execute("DELETE FROM engine_plans WHERE engine != ?"
                     " OR rule_id NOT IN (SELECT id FROM _plan_keep)", (engine,))
        conn.execute("DROP TABLE _plan_keep")
    if checked is not None:
        conn.executemany("INSERT OR REPLACE INTO engine_plans_state (key, value) VALUES (?,?)",
                         (("checked", checked), ("engine", engine)))


def delete(conn: sqlite3.Connection, ids: Iterable[str]) -> None:
    conn.executemany("DELETE FROM engine_plans WHERE rule_id=?", ((i,) for i in ids))


def save(conn: sqlite3.Connection, engine: str, rows: Iterable[PlanRow],
         keep: Iterable[str] | None = None, checked: str | None = None) -> str | None:
    """:func:`write`, committed (the hunt's read transaction, upgraded to a write); the SQLite
    error's text when the catalog cannot be written (read-only file, a build holding the lock
    or committed since the hunt read it), None when stored."""
    try:
        with conn:
            write(conn, engine, rows, keep, checked)
    except sqlite3.Error as exc:
        return str(exc)
    return None
