"""Cross-check: the engine and pySigma's SQLite backend agree rule by rule on the regression
EVTX events.

Every regression event (all 162 files) goes into one SQLite table the way Zircolite builds it
(one ``TEXT COLLATE NOCASE`` column per field, a ``_fulltext`` column for keywords, a Python
``REGEXP``); each Sigma rule that names regression data is converted with
``pysigma-backend-sqlite`` and run, and the engine runs the same rule on the same events with
routing off (SQL has no notion of logsource, the comparison is about value semantics). The sets
of matching events must be equal, or the rule is listed in ``DIFFERENCES`` with the reason.
"""

from __future__ import annotations

import re
import sqlite3

import pytest
from sigma.backends.sqlite import sqliteBackend
from sigma.collection import SigmaCollection

from conftest import SIGMA
from ruleatlas.engine.catalog import from_repos
from ruleatlas.engine.events import Event
from ruleatlas.engine.readers import read_events
from ruleatlas.engine.runner import Engine, prepare
from ruleatlas.engine.sigma_semantics import to_text

# rule id -> why the two disagree (none today; docs/engine.md keeps the same list)
DIFFERENCES: dict[str, str] = {}


def _sql_value(v):
    if v is None:
        return None
    if isinstance(v, list):
        return "\n".join(to_text(x) for x in v if x is not None)
    if isinstance(v, bool):
        return to_text(v)
    return v


@pytest.fixture(scope="module")
def setup():
    files = sorted(str(p) for p in (SIGMA / "regression_data").rglob("*.evtx"))
    raw = list(read_events(files, []))
    rows = []
    for e in raw:
        f = dict(e.fields)
        for k in list(f):  # the engine reads "Threat Name" as ThreatName; give SQL the same
            if " " in k:
                f.setdefault(k.replace(" ", ""), f[k])
        rows.append(f)
    cols: dict[str, str] = {}
    for f in rows:
        for k in f:
            cols.setdefault(k.lower(), k)
    conn = sqlite3.connect(":memory:")
    conn.create_function(
        "REGEXP", 2, lambda p, s: s is not None and re.search(p, str(s)) is not None)
    conn.execute("CREATE TABLE logs (" + ",".join(f'"{c}" TEXT COLLATE NOCASE'
                                                   for c in cols.values())
                 + ", _fulltext TEXT COLLATE NOCASE)")
    for i, f in enumerate(rows, 1):
        names = [cols[k.lower()] for k in f]
        ft = "\n".join(to_text(v) for v in f.values() if v is not None)
        conn.execute(
            "INSERT INTO logs (rowid," + ",".join(f'"{c}"' for c in names) + ",_fulltext) "
            "VALUES (?," + ",".join("?" * len(names)) + ",?)",
            [i, *(_sql_value(v) for v in f.values()), ft])
    events = [Event(f, e.file, i) for i, (e, f) in enumerate(zip(raw, rows, strict=True), 1)]
    rules = from_repos([SIGMA], with_tests_only=True)
    return conn, events, rules


def _sql_rows(conn: sqlite3.Connection, queries: list[str]) -> set[int]:
    out: set[int] = set()
    for q in queries:
        q = q.replace("SELECT *", "SELECT rowid", 1)
        for _ in range(20):
            try:
                out |= {r[0] for r in conn.execute(q)}
                break
            except sqlite3.OperationalError as exc:
                m = re.match(r"no such column: (.+)", str(exc))
                if not m:
                    raise
                # a field no event has: an all-NULL column, as Zircolite's table would hold
                conn.execute(f'ALTER TABLE logs ADD COLUMN "{m.group(1)}" TEXT COLLATE NOCASE')
    return out


def test_engine_and_pysigma_sqlite_agree(setup):
    conn, events, rules = setup
    backend = sqliteBackend(fulltext_field="_fulltext")
    agree, differ, skipped = 0, {}, {}
    for lr in rules:
        er = prepare(lr.rule, lr.analysis)
        try:
            queries = backend.convert(SigmaCollection.from_yaml(lr.rule.body))
        except Exception as exc:  # pySigma cannot convert it: nothing to compare
            skipped[lr.rule.id] = f"pySigma: {exc}"
            continue
        assert er.runnable, (lr.rule.id, er.reason)
        sql = _sql_rows(conn, list(queries))
        eng = {f.event.position for f in Engine([er], route=False).run(events)}
        if sql == eng:
            agree += 1
        elif lr.rule.id not in DIFFERENCES:
            differ[lr.rule.id] = (lr.rule.title, sorted(eng - sql)[:5], sorted(sql - eng)[:5])
    assert differ == {}
    assert skipped == {}
    assert agree == len(rules) == 202


def test_crosscheck_sees_matches(setup):
    """Not a vacuous agreement: the rules match events on both sides."""
    conn, _events, rules = setup
    backend = sqliteBackend(fulltext_field="_fulltext")
    total = 0
    for lr in rules[:40]:
        total += len(_sql_rows(conn, list(backend.convert(
            SigmaCollection.from_yaml(lr.rule.body)))))
    assert total >= 30
