"""The ATT&CK pages' queries: rule counts per technique and the Enterprise matrix.

Tactic columns come in the Enterprise order of ``attack.ENTERPRISE_TACTICS`` (the one tactic
table); technique names, tactics and parents come from the catalog's ``attack_techniques``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from ruleatlas.attack import ENTERPRISE_TACTICS, tactic_name
from ruleatlas.store.codec import loads
from ruleatlas.store.listings import sources


def technique_names(conn: sqlite3.Connection, ids: Iterable[str]) -> dict[str, str]:
    """``{technique id: name}`` for the ids the ATT&CK data knows."""
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return {}
    return dict(conn.execute(
        f"SELECT technique, name FROM attack_techniques WHERE technique IN "
        f"({','.join('?' * len(wanted))})", wanted).fetchall())


def attack_counts(conn: sqlite3.Connection, source: str | None) -> dict[str, int]:
    """Distinct rules per technique id; a parent counts the rules of its sub-techniques too.

    One scan of ``rule_attack`` aggregated in Python: the table is small (about two rows per
    rule) and this beats one ``LIKE`` query per parent technique by two orders of magnitude.
    """
    sql = "SELECT a.technique, a.rule_id FROM rule_attack a"
    params: tuple[str, ...] = ()
    if source:
        sql += " JOIN rules r ON r.id = a.rule_id WHERE r.source = ?"
        params = (source,)
    rules: dict[str, set[str]] = {}
    for tech, rid in conn.execute(sql, params):
        rules.setdefault(tech, set()).add(rid)
        if "." in tech:
            rules.setdefault(tech.split(".", 1)[0], set()).add(rid)
    return {t: len(ids) for t, ids in rules.items()}


def attack_matrix(conn: sqlite3.Connection, source: str | None) -> dict[str, Any]:
    """The Enterprise matrix: tactic columns of techniques (with sub-techniques), rule counts.

    ``counts`` and ``names`` (all technique ids) feed the Navigator layer; the matrix page
    drops them."""
    counts = attack_counts(conn, source)
    techs = conn.execute(
        "SELECT technique, name, tactics, parent FROM attack_techniques "
        "WHERE revoked = 0 AND deprecated = 0 ORDER BY name COLLATE NOCASE").fetchall()
    names = {t[0]: t[1] for t in techs}
    subs: dict[str, list[dict[str, Any]]] = {}
    for tid, name, _, parent in techs:
        if parent:
            subs.setdefault(parent, []).append(
                {"id": tid, "name": name, "count": counts.get(tid, 0)})
    columns: dict[str, list[dict[str, Any]]] = {t[0]: [] for t in ENTERPRISE_TACTICS}
    for tid, name, tactics, parent in techs:
        if parent:
            continue
        cell = {"id": tid, "name": name, "count": counts.get(tid, 0),
                "subs": sorted(subs.get(tid, []), key=lambda s: s["id"])}
        for tac in loads(tactics, []):
            columns.setdefault(tac, []).append(cell)
    return {
        "source": source,
        "sources": sources(conn),
        "tactics": [{"id": tac, "name": tactic_name(tac), "techniques": cells,
                     "covered": sum(1 for c in cells if c["count"])}
                    for tac, cells in columns.items() if cells],
        "unknown": [{"id": k, "count": counts[k]} for k in sorted(counts) if k not in names],
        "max": max(counts.values(), default=0),
        "covered": sum(1 for k in counts if k in names),
        "reference": len(names),
        "counts": counts,
        "names": names,
    }


__all__ = ["attack_counts", "attack_matrix", "technique_names"]
