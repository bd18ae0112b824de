"""The catalog: one SQLite file holding every rule, its analysis, and what was derived from it.

``Catalog.open(path)`` creates or migrates the schema (``schema.sql``, version in
``PRAGMA user_version``); ``Catalog.open(path, readonly=True)`` opens it with the ``mode=ro``
URI (``store.connection.connect``), so a front end can never write by mistake. Read methods
return frozen dataclasses; the other store modules take ``.conn``. Rule references go through
the one resolver (``store.resolve``), searches through the one search (``store.search``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruleatlas.model import Rule
from ruleatlas.store import search as _search
from ruleatlas.store.codec import loads, rule_from_json
from ruleatlas.store.connection import (
    CatalogError,
    bump_generation,
    connect,
    wal_checkpoint,
)
from ruleatlas.store.resolve import RuleNotFound, resolve_rule

SCHEMA_PATH = Path(__file__).with_name("schema.sql")
SCHEMA_VERSION = 4  # 3: engine_plans, engine_plans_state (new tables); 4: indicators.phase
WAL_SIZE_LIMIT = 64 << 20  # bytes a writer leaves of the WAL file after a checkpoint reset it


# Migrations: version reached -> columns to add to existing tables (table, column, decl).
# Tables and indexes that are new are created by re-running schema.sql (IF NOT EXISTS).
_MIGRATIONS: dict[int, tuple[tuple[str, str, str], ...]] = {
    2: (
        ("files", "size", "INTEGER NOT NULL DEFAULT -1"),
        ("files", "mtime_ns", "INTEGER NOT NULL DEFAULT -1"),
        ("load_errors", "side", "INTEGER NOT NULL DEFAULT 0"),
    ),
    4: (("indicators", "phase", "TEXT NOT NULL DEFAULT 'event'"),),
}


@dataclass(frozen=True, slots=True)
class StoredRule:
    """A rule as the catalog holds it: the Rule record, its analysis (JSON form), where its
    repository is on disk (the engine resolves test data paths from it) and the ATT&CK tactics
    of its techniques."""

    rule: Rule
    root: str
    analysis: dict[str, Any] | None
    group_by: tuple[str, ...] = ()
    problems: int = 0
    tactics: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return self.rule.id


@dataclass(frozen=True, slots=True)
class ErrorRow:
    source: str
    root: str
    path: str
    line: int | None
    col: int | None
    kind: str
    reason: str
    side: bool = False

    def __str__(self) -> str:
        where = self.path + (f":{self.line}" if self.line else "") + (
            f":{self.col}" if self.line and self.col else "")
        return f"{where}: {self.reason}"


@dataclass(frozen=True, slots=True)
class TechniqueCoverage:
    technique: str
    name: str
    tactics: tuple[str, ...]
    parent: str | None
    total: int
    by_source: dict[str, int]
    known: bool = True
    revoked: bool = False
    deprecated: bool = False


@dataclass(frozen=True, slots=True)
class EventCoverage:
    channel: str
    event_id: str | None
    total: int
    by_source: dict[str, int]

    def __str__(self) -> str:
        return f"{self.channel} {self.event_id}" if self.event_id else self.channel


@dataclass(frozen=True, slots=True)
class MacroRow:
    name: str
    arguments: tuple[str, ...]
    definition: str
    description: str
    path: str | None
    rules: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.name}({len(self.arguments)})" if self.arguments else self.name


@dataclass(frozen=True, slots=True)
class DocRow:
    """A row of a table of named documents (``stories``, ``data_sources``); ``source`` "" and
    ``doc`` {} for a name the rules give that has no file of its own."""

    name: str
    source: str
    doc: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StoryRow(DocRow):
    rules: tuple[str, ...] = ()  # the member rules' ids


@dataclass(frozen=True, slots=True)
class DataSourceRow(DocRow):
    rules: int = 0  # how many rules name it


@dataclass(frozen=True, slots=True)
class TestResultRow:
    rule_id: str
    status: str
    matched: int
    expected: int | None
    reason: str | None
    detail: Any
    ran_at: str


@dataclass
class Catalog:
    """An open catalog file. Use as a context manager or call ``close()``."""

    conn: sqlite3.Connection
    path: Path
    readonly: bool = False
    last_checkpoint: tuple[int, int, int] | None = None  # (busy, frames, done) after a write

    # ------------------------------------------------------------------ opening and schema

    @classmethod
    def open(cls, path: str | Path, readonly: bool = False,
             check_same_thread: bool = True) -> Catalog:
        p = Path(path)
        conn = connect(p, readonly, check_same_thread)
        cat = cls(conn, p, readonly)
        try:
            cat._check_schema()
        except sqlite3.DatabaseError as e:
            conn.close()
            raise CatalogError(f"{p} is not a Rule Atlas catalog: {e}") from e
        return cat

    def _check_schema(self) -> None:
        conn = self.conn
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise CatalogError(
                f"{self.path} has schema version {version}; this Rule Atlas knows up to "
                f"{SCHEMA_VERSION} (upgrade ruleatlas)")
        if self.readonly:
            if version < SCHEMA_VERSION:
                has = conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE name = 'rules'").fetchone()
                if not has:
                    raise CatalogError(f"{self.path} is not a Rule Atlas catalog (no rules table)")
            return
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        if version == SCHEMA_VERSION:
            return
        has_tables = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'rules'").fetchone() is not None
        with self.transaction():
            if has_tables:
                for v in range(max(version, 1) + 1, SCHEMA_VERSION + 1):
                    for table, col, decl in _MIGRATIONS.get(v, ()):
                        cols = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
                        if cols and col not in cols:  # no table: schema.sql creates it
                            conn.execute(f"ALTER TABLE {table} ADD COLUMN {col} {decl}")
            for stmt in _statements(SCHEMA_PATH.read_text()):
                conn.execute(stmt)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error). Its last
        statement increments the catalog generation (``store.connection.bump_generation``), so
        readers see a new generation exactly when it commits; after the COMMIT the WAL is
        checkpointed and cut to 0 bytes (``wal_checkpoint``; the result is kept in
        ``last_checkpoint``)."""
        if self.readonly:
            raise CatalogError(f"{self.path} is open read-only")
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise CatalogError(f"{self.path}: cannot start writing ({e}); is another build "
                               "running?") from e
        try:
            yield self.conn
            bump_generation(self.conn)
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        self.last_checkpoint = wal_checkpoint(self.conn)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def has_table(self, name: str) -> bool:
        return self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone() is not None

    # ------------------------------------------------------------------ rules

    def resolve(self, ref: str) -> str:
        """The id of the rule ``ref`` names: an id, a unique title or a unique id prefix
        (``store.resolve.resolve_rule``: ``RuleNotFound``, ``AmbiguousRule``,
        ``BadRuleReference``)."""
        return resolve_rule(self.conn, ref)

    def get_rule(self, ref: str) -> StoredRule:
        """The stored rule ``ref`` names (see ``resolve``)."""
        rules = self.stored_rules([self.resolve(ref)])
        if not rules:  # removed between the two reads
            raise RuleNotFound(f"no rule with id {ref!r}")
        return rules[0]

    def stored_rules(self, ids: Sequence[str] | None = None) -> list[StoredRule]:
        """Stored rules in id order: all of them, or those of ``ids`` that exist."""
        only = " WHERE {} IN (SELECT value FROM json_each(?))" if ids is not None else ""
        params = (json.dumps(list(ids)),) if ids is not None else ()
        tactics: dict[str, set[str]] = {}
        for rid, tj in self.conn.execute(
                "SELECT ra.rule_id, t.tactics FROM rule_attack ra JOIN attack_techniques t "
                "ON t.technique = ra.technique" + only.format("ra.rule_id"), params):
            tactics.setdefault(rid, set()).update(loads(tj, []))
        sql = ("SELECT id, rule_json, root, analysis_json, group_by_json, problems FROM rules"
               + only.format("id") + " ORDER BY id")
        return [StoredRule(rule_from_json(rj), root, loads(aj), tuple(loads(gb, [])),
                           int(problems), tuple(sorted(tactics.get(rid, ()))))
                for rid, rj, root, aj, gb, problems in self.conn.execute(sql, params)]

    def search_rules(self, q: _search.RuleQuery) -> _search.RulePage:
        """The one search (``store.search.search_rules``)."""
        return _search.search_rules(self.conn, q)

    def rule_attack(self, rule_id: str) -> list[dict[str, Any]]:
        """``[{"technique", "name", "tactics", "known", "revoked", ...}]`` of one rule; ids the
        ATT&CK data does not know are kept and flagged (``known: false``)."""
        out = []
        for tech, name, tactics, parent, url, revoked, deprecated in self.conn.execute(
            "SELECT a.technique, t.name, t.tactics, t.parent, t.url, t.revoked, t.deprecated "
            "FROM rule_attack a LEFT JOIN attack_techniques t ON t.technique = a.technique "
            "WHERE a.rule_id = ? ORDER BY a.technique", (rule_id,)):
            known = name is not None
            out.append({
                "technique": tech,
                "name": name if known else "unknown technique",
                "tactics": loads(tactics, []),
                "parent": parent if known else (tech.split(".")[0] if "." in tech else None),
                "url": url,
                "known": known,
                "revoked": bool(revoked),
                "deprecated": bool(deprecated),
            })
        return out

    def rule_event_pairs(self, rule_id: str) -> list[tuple[str, str | None]]:
        """A rule's events as ``(channel, event id or None)``, in the order they were found."""
        return [(c, e or None) for c, e in self.conn.execute(
            "SELECT channel, event_id FROM rule_events WHERE rule_id = ? ORDER BY rowid",
            (rule_id,))]

    def rule_events(self, rule_id: str) -> list[str]:
        """A rule's events as text: ``"Channel EventID"`` or the channel alone."""
        return [f"{c} {e}" if e else c for c, e in self.rule_event_pairs(rule_id)]

    def rule_column(self, rule_id: str, table: str, column: str) -> list[str]:
        """Values of a per-rule side table (``rule_data_sources``, ``rule_stories``, ...)."""
        if table not in _RULE_TABLES or column != _RULE_TABLES[table]:
            raise ValueError(f"not a rule table: {table}.{column}")
        return [r[0] for r in self.conn.execute(
            f"SELECT {column} FROM {table} WHERE rule_id = ? ORDER BY rowid", (rule_id,))]

    # ------------------------------------------------------------------ catalog-wide reads

    def stats(self) -> dict[str, Any]:
        """Per-source accounting and catalog figures (``ruleatlas stats --format json``).

        ``files`` counts the rule files read; each file's rules + errors is at least 1, and
        ``rules + errors`` equals the sum over files of (rules + errors) (a multi-document
        file may hold several)."""
        c = self.conn
        sources: dict[str, dict[str, Any]] = {}
        for src, files, frules, ferrors, multi, both in c.execute(
            "SELECT source, count(*), sum(rules), sum(errors), sum(rules + errors > 1), "
            "sum(rules > 0 AND errors > 0) FROM files GROUP BY source ORDER BY source"):
            sources[src] = {"files": files, "rules": 0, "errors": 0,
                            "file_rules": frules or 0, "file_errors": ferrors or 0,
                            "multi_entry_files": multi or 0, "files_with_both": both or 0}
        for src, n in c.execute("SELECT source, count(*) FROM rules GROUP BY source"):
            sources.setdefault(src, {"files": 0})["rules"] = n
        for src, n in c.execute(
                "SELECT source, count(*) FROM load_errors WHERE side = 0 GROUP BY source"):
            sources.setdefault(src, {"files": 0})["errors"] = n
        for src, d in sources.items():
            d.setdefault("rules", 0)
            d.setdefault("errors", 0)
            d["accounted"] = (d.get("file_rules", 0) == d["rules"]
                              and d.get("file_errors", 0) == d["errors"])
            (d["side_errors"],) = c.execute(
                "SELECT count(*) FROM load_errors WHERE side = 1 AND source = ?",
                (src,)).fetchone()
        folders: dict[str, dict[str, int]] = {}
        for src, top, n in c.execute(
            "SELECT source, CASE WHEN instr(path, '/') > 0 THEN substr(path, 1, instr(path, '/')"
            " - 1) ELSE path END AS top, count(*) FROM rules GROUP BY source, top"):
            folders.setdefault(src, {})[top] = n
        one = lambda sql: c.execute(sql).fetchone()[0]  # noqa: E731
        return {
            "sources": sources,
            "rules": one("SELECT count(*) FROM rules"),
            "errors": one("SELECT count(*) FROM load_errors WHERE side = 0"),
            "rules_by_folder": folders,
            "rules_with_problems": one("SELECT count(*) FROM rules WHERE problems > 0"),
            "techniques": one("SELECT count(DISTINCT technique) FROM rule_attack"),
            "attack_techniques_known": one("SELECT count(*) FROM attack_techniques"),
            "indicator_values": one("SELECT count(*) FROM indicators"),
            "events": one("SELECT count(DISTINCT channel || ' ' || event_id) FROM rule_events"),
            "macros": one("SELECT count(*) FROM macros"),
            "stories": one("SELECT count(*) FROM stories"),
            "data_sources": one("SELECT count(*) FROM data_sources"),
            "schema_version": one("PRAGMA user_version"),
            "last_build": self.meta("last_build"),
        }

    def meta(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone() \
            if self.has_table("meta") else None
        return loads(row[0], default) if row else default

    def errors(self, source: str | None = None, side: bool | None = None) -> list[ErrorRow]:
        """Load errors (rule files and, with ``side=None``, side-table files), by path."""
        sql = "SELECT source, root, path, line, col, kind, reason, side FROM load_errors"
        cl: list[str] = []
        ps: list[Any] = []
        if source:
            cl.append("source = ?")
            ps.append(source)
        if side is not None:
            cl.append("side = ?")
            ps.append(int(side))
        if cl:
            sql += " WHERE " + " AND ".join(cl)
        sql += " ORDER BY source, path, line"
        return [ErrorRow(a, b, p, ln, col, k, r, bool(s))
                for a, b, p, ln, col, k, r, s in self.conn.execute(sql, ps)]

    def counts_by_source(self, keys: str, table: str, source: str | None) -> list[Any]:
        """Rows ``(*keys, source, count)`` of a per-rule ``table`` joined to its rules,
        grouped by ``keys`` and source (one source only when ``source`` is given)."""
        n = keys.count(",") + 1
        where = " WHERE r.source = ?" if source else ""
        groups = ", ".join(str(i) for i in range(1, n + 2))
        return self.conn.execute(
            f"SELECT {keys}, r.source, count(*) FROM {table} JOIN rules r "
            f"ON r.id = {table.split()[-1]}.rule_id{where} GROUP BY {groups}",
            (source,) if source else ()).fetchall()

    def attack_coverage(self, source: str | None = None,
                        include_empty: bool = False) -> list[TechniqueCoverage]:
        """Rule counts per technique id (by source). Ids the ATT&CK data does not know are
        listed with ``known=False``; with ``include_empty``, every known technique appears."""
        counts: dict[str, dict[str, int]] = {}
        for tech, src, n in self.counts_by_source("ra.technique", "rule_attack ra", source):
            counts.setdefault(tech, {})[src] = n
        info = {r[0]: r for r in self.conn.execute(
            "SELECT technique, name, tactics, parent, revoked, deprecated "
            "FROM attack_techniques")}
        ids = set(counts) | (set(info) if include_empty else set())
        out = []
        for tid in sorted(ids):
            i = info.get(tid)
            by = counts.get(tid, {})
            out.append(TechniqueCoverage(
                tid, i[1] if i else "unknown technique", tuple(loads(i[2], [])) if i else (),
                i[3] if i else (tid.split(".")[0] if "." in tid else None), sum(by.values()),
                by, known=i is not None, revoked=bool(i[4]) if i else False,
                deprecated=bool(i[5]) if i else False))
        return out

    def event_coverage(self, source: str | None = None) -> list[EventCoverage]:
        acc: dict[tuple[str, str], dict[str, int]] = {}
        for ch, eid, src, n in self.counts_by_source("e.channel, e.event_id", "rule_events e",
                                                      source):
            acc.setdefault((ch, eid), {})[src] = n
        rows = [EventCoverage(ch, eid or None, sum(by.values()), by)
                for (ch, eid), by in acc.items()]
        rows.sort(key=lambda e: (-e.total, e.channel, e.event_id or ""))
        return rows

    def macros(self) -> list[MacroRow]:
        """Every Splunk macro with the ids of the rules that use it."""
        users: dict[str, list[str]] = {}
        for rid, m in self.conn.execute("SELECT rule_id, macro FROM rule_macros ORDER BY 1"):
            users.setdefault(m, []).append(rid)
        out = []
        for name, args, definition, desc, path in self.conn.execute(
                "SELECT name, arguments, definition, description, path FROM macros "
                "ORDER BY name, nargs"):
            a = tuple(loads(args, []))
            key = f"{name}({len(a)})" if a else name
            out.append(MacroRow(name, a, definition, desc, path, tuple(users.get(key, ()))))
        return out

    def macro(self, key: str) -> MacroRow:
        for m in self.macros():
            if key in (m.key, m.name):
                return m
        raise KeyError(f"no macro {key!r}")

    def stories(self) -> list[StoryRow]:
        """Analytic stories with their member rule ids."""
        members: dict[str, list[str]] = {}
        for rid, s in self.conn.execute("SELECT rule_id, story FROM rule_stories ORDER BY 1"):
            members.setdefault(s, []).append(rid)
        return [StoryRow(d.name, d.source, d.doc, tuple(members.pop(d.name, ())))
                for d in self._docs("stories", members)]

    def story(self, name: str) -> StoryRow:
        for s in self.stories():
            if s.name == name:
                return s
        raise KeyError(f"no story {name!r}")

    def data_sources(self) -> list[DataSourceRow]:
        counts = dict(self.conn.execute(
            "SELECT data_source, count(*) FROM rule_data_sources GROUP BY 1").fetchall())
        return [DataSourceRow(d.name, d.source, d.doc, counts.pop(d.name, 0))
                for d in self._docs("data_sources", counts)]

    def _docs(self, table: str, named: Mapping[str, object]) -> list[DocRow]:
        """The documents of ``table`` by name, then the names in ``named`` (what the rules
        give) that have no document of their own."""
        out = [DocRow(n, s, loads(d, {})) for n, s, d in self.conn.execute(
            f"SELECT name, source, doc FROM {table} ORDER BY name")]
        have = {d.name for d in out}
        out.extend(DocRow(n, "", {}) for n in sorted(named) if n not in have)
        return out

    def test_results(self, rule_id: str | None = None) -> list[TestResultRow]:
        if not self.has_table("test_results"):
            return []
        sql = ("SELECT rule_id, status, matched, expected, reason, detail, ran_at "
               "FROM test_results")
        ps: tuple[Any, ...] = ()
        if rule_id is not None:
            sql += " WHERE rule_id = ?"
            ps = (rule_id,)
        return [TestResultRow(a, b, c, d, e, loads(f), g)
                for a, b, c, d, e, f, g in self.conn.execute(sql + " ORDER BY rule_id", ps)]


_RULE_TABLES = {
    "rule_data_sources": "data_source",
    "rule_stories": "story",
    "rule_macros": "macro",
    "rule_attack": "technique",
}


def _statements(script: str) -> list[str]:
    """schema.sql split into statements (sqlite3.complete_statement keeps triggers whole)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out
