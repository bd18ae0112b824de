"""Read-only queries the web catalog needs and the catalog API does not offer.

The web layer never imports ``sqlite3``: it asks :class:`ReadPool` for a per-thread read-only
connection (``mode=ro``, so a bug in a page can never write) and calls the functions here, which
return plain dicts/dataclasses that feed both the HTML templates and the JSON twins.

Everything is written against ``store/schema.sql`` so the pages work whatever state the other
layers are in (an empty ``attack_techniques`` table, no ``test_results`` yet, ...).
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import attrgetter
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# --------------------------------------------------------------------------------------------
# Connections
# --------------------------------------------------------------------------------------------


class BrowseError(ValueError):
    """A catalog that cannot be opened for browsing (missing file, not a catalog)."""


def connect_ro(path: str | Path) -> sqlite3.Connection:
    """A read-only connection: ``mode=ro`` makes writes fail inside SQLite itself."""
    p = Path(path).resolve()
    if not p.is_file():
        raise BrowseError(f"catalog not found: {p}")
    conn = sqlite3.connect(f"{p.as_uri()}?mode=ro", uri=True, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    # mode=ro still allows TEMP tables (store.indicators.similar_rules uses one).
    return conn


class QueryTimeout(BrowseError):
    """A page's queries ran past their time limit (SQLite interrupted them)."""


def catalog_stamp(path: str | Path) -> tuple[int, ...]:
    """What changes when the catalog does: size and mtime of the file and of its WAL (a writer
    in WAL mode, e.g. ``ruleatlas test`` recording results, touches only the ``-wal`` file
    until a checkpoint). Caches of whole-catalog facts are keyed on it."""
    out: list[int] = []
    for p in (Path(path), Path(f"{path}-wal")):
        try:
            st = p.stat()
        except OSError:
            out += [-1, -1]
        else:
            out += [st.st_size, st.st_mtime_ns]
    return tuple(out)


class ReadPool:
    """One read-only connection per thread (Starlette runs sync reads in a thread pool), with a
    time limit per call of :meth:`run` enforced inside SQLite by a progress handler."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        connect_ro(self.path).close()  # fail early, with a clear message
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def get(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect_ro(self.path)
            local = self._local
            local.deadline = None

            def over_time() -> int:
                d = local.deadline
                return 1 if d is not None and time.monotonic() > d else 0

            conn.set_progress_handler(over_time, 20_000)
            local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def run(self, fn: Callable[[sqlite3.Connection], T], timeout: float = 5.0) -> T:
        """``fn(conn)`` with every query it runs interrupted after ``timeout`` seconds."""
        conn = self.get()
        self._local.deadline = time.monotonic() + timeout
        try:
            return fn(conn)
        except sqlite3.OperationalError as e:
            if "interrupted" in str(e):
                raise QueryTimeout(f"query took longer than {timeout:g}s") from None
            raise
        finally:
            self._local.deadline = None

    def close(self) -> None:
        with self._lock:
            for c in self._all:
                c.close()
            self._all.clear()


def _table_exists(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type IN ('table','view') AND name = ?", (name,)
    ).fetchone()
    return row is not None


def _loads(text: str | None, default: Any) -> Any:
    if not text:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default


# --------------------------------------------------------------------------------------------
# ATT&CK reference: tactic order of the Enterprise matrix
# --------------------------------------------------------------------------------------------

TACTICS: tuple[tuple[str, str, str], ...] = (
    ("reconnaissance", "Reconnaissance", "TA0043"),
    ("resource-development", "Resource Development", "TA0042"),
    ("initial-access", "Initial Access", "TA0001"),
    ("execution", "Execution", "TA0002"),
    ("persistence", "Persistence", "TA0003"),
    ("privilege-escalation", "Privilege Escalation", "TA0004"),
    ("defense-evasion", "Defense Evasion", "TA0005"),
    ("credential-access", "Credential Access", "TA0006"),
    ("discovery", "Discovery", "TA0007"),
    ("lateral-movement", "Lateral Movement", "TA0008"),
    ("collection", "Collection", "TA0009"),
    ("command-and-control", "Command and Control", "TA0011"),
    ("exfiltration", "Exfiltration", "TA0010"),
    ("impact", "Impact", "TA0040"),
)
TACTIC_NAMES: dict[str, str] = {t[0]: t[1] for t in TACTICS}
TECHNIQUE_RE = re.compile(r"^T\d{4}(\.\d{3})?$")


def technique_names(conn: sqlite3.Connection, ids: Iterable[str]) -> dict[str, str]:
    ids = list(dict.fromkeys(ids))
    if not ids:
        return {}
    return {
        r[0]: r[1]
        for r in conn.execute(
            f"SELECT technique, name FROM attack_techniques WHERE technique IN "
            f"({','.join('?' * len(ids))})",
            ids,
        )
    }


def tactic_name(short: str) -> str:
    return TACTIC_NAMES.get(short, short.replace("-", " ").title())


# --------------------------------------------------------------------------------------------
# Overview
# --------------------------------------------------------------------------------------------


def overview(conn: sqlite3.Connection) -> dict[str, Any]:
    """Counts for the home page: rules per source, errors, techniques, indicators."""
    by_source = {
        r[0]: r[1]
        for r in conn.execute("SELECT source, count(*) FROM rules GROUP BY source ORDER BY 1")
    }
    one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
    return {
        "rules": sum(by_source.values()),
        "by_source": by_source,
        "techniques": one("SELECT count(DISTINCT technique) FROM rule_attack"),
        "indicators": one("SELECT count(*) FROM indicator_counts"),
        "macros": one("SELECT count(*) FROM macros"),
        "stories": one("SELECT count(*) FROM stories"),
        "load_errors": one("SELECT count(*) FROM load_errors"),
        "events": one("SELECT count(*) FROM (SELECT DISTINCT channel, event_id FROM rule_events)"),
    }


# --------------------------------------------------------------------------------------------
# Search with filters and facets
# --------------------------------------------------------------------------------------------

SORTS: tuple[str, ...] = (
    "relevance", "title", "-title", "modified", "-modified", "severity", "-severity", "source",
)
SEVERITY_RANK = {"informational": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
FILTERS: tuple[str, ...] = (
    "source", "status", "severity", "language", "type", "technique", "tactic", "data_source",
    "channel", "event_id", "story", "macro", "test",
)
FACETS: tuple[str, ...] = (
    "source", "status", "severity", "language", "type", "tactic", "technique", "data_source",
    "channel", "test",
)
SET_FACTS = frozenset(
    {"technique", "tactic", "data_source", "channel", "event_id", "story", "macro"}
)
FACET_LIMIT = {"technique": 25, "data_source": 25, "channel": 25}
MARK_START, MARK_END = "\x02", "\x03"


@dataclass(slots=True)
class _RuleFacts:
    """What the filters and facets of one rule are made of (all strings, all sets)."""

    source: str = ""
    status: str = ""
    severity: str = ""
    language: str = ""
    type: str = ""
    title: str = ""
    modified: str = ""
    technique: set[str] = field(default_factory=set)
    tactic: set[str] = field(default_factory=set)
    data_source: set[str] = field(default_factory=set)
    channel: set[str] = field(default_factory=set)
    event_id: set[str] = field(default_factory=set)
    story: set[str] = field(default_factory=set)
    macro: set[str] = field(default_factory=set)
    test: str = "none"


_FACTS: dict[tuple[str, tuple[int, ...]], dict[str, _RuleFacts]] = {}
_FACTS_LOCK = threading.Lock()
_ALL_FACETS: dict[str, tuple[Any, dict[str, tuple[tuple[str, int], ...]]]] = {}


def _facts(conn: sqlite3.Connection) -> dict[str, _RuleFacts]:
    """Per-rule facts, loaded once per catalog file (it is read-only while served; a rebuild
    changes its mtime and reloads). Filtering and counting facets over these in Python costs
    a few ms for the whole corpus, where the equivalent SQL joins cost tens of ms per facet."""
    path = conn.execute("PRAGMA database_list").fetchone()[2]
    key = (path, catalog_stamp(path) if path else ())
    got = _FACTS.get(key)
    if got is not None:
        return got
    with _FACTS_LOCK:
        if key in _FACTS:
            return _FACTS[key]
        facts: dict[str, _RuleFacts] = {}
        for r in conn.execute(
            "SELECT id, source, coalesce(status,''), lower(coalesce(severity,'')), language, "
            "coalesce(type,''), title, coalesce(modified, date, ''), "
            "instr(rule_json, '\"tests\": [{') + instr(rule_json, '\"tests\":[{') FROM rules"
        ):
            facts[r[0]] = _RuleFacts(r[1], r[2], r[3], r[4], r[5], r[6], r[7],
                                     test="untested" if r[8] else "none")
        tactics: dict[str, list[str]] = {
            t: _loads(ts, []) for t, ts in conn.execute(
                "SELECT technique, tactics FROM attack_techniques")
        }
        for rid, tech in conn.execute("SELECT rule_id, technique FROM rule_attack"):
            if rid in facts:
                facts[rid].technique.add(tech)
                facts[rid].tactic.update(tactics.get(tech, ()))
        for attr, sql in (
            ("data_source", "SELECT rule_id, data_source FROM rule_data_sources"),
            ("story", "SELECT rule_id, story FROM rule_stories"),
            ("macro", "SELECT rule_id, macro FROM rule_macros"),
        ):
            for rid, v in conn.execute(sql):
                if rid in facts:
                    getattr(facts[rid], attr).add(v)
        for rid, ch, ev in conn.execute("SELECT rule_id, channel, event_id FROM rule_events"):
            if rid in facts:
                facts[rid].channel.add(ch)
                if ev:
                    facts[rid].event_id.add(ev)
        if _table_exists(conn, "test_results"):
            for rid, st in conn.execute("SELECT rule_id, status FROM test_results"):
                if rid in facts:
                    facts[rid].test = st
        _FACTS.clear()
        _FACTS[key] = facts
        return facts


def _match(f: _RuleFacts, name: str, wanted: Sequence[str]) -> bool:
    v = getattr(f, name)
    if name == "technique":
        techs = v
        return any(t in techs or any(x.startswith(t + ".") for x in techs) for t in wanted)
    if name == "severity":
        return v in {w.lower() for w in wanted}
    if isinstance(v, set):
        return any(w in v for w in wanted)
    return v in wanted


def fts_query(text: str) -> str:
    """User text as a safe FTS5 query: every word quoted (no FTS syntax injection), the last
    one as a prefix so ``wmie`` already finds ``wmiexec``."""
    words = [w for w in re.split(r"\s+", text.strip()) if w]
    out = ['"' + w.replace('"', '""') + '"' for w in words]
    if out and len(words[-1]) >= 3:
        out[-1] += "*"
    return " ".join(out)


@dataclass(frozen=True, slots=True)
class SearchHit:
    id: str
    source: str
    title: str
    status: str | None
    severity: str | None
    type: str | None
    language: str
    modified: str | None
    techniques: tuple[str, ...]
    snippet: str | None  # with MARK_START/MARK_END markers around matches, unescaped

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__slots__}
        d["techniques"] = list(self.techniques)
        if self.snippet is not None:
            d["snippet"] = self.snippet.replace(MARK_START, "<<").replace(MARK_END, ">>")
        return d


@dataclass(frozen=True, slots=True)
class SearchResult:
    total: int
    hits: tuple[SearchHit, ...]
    facets: Mapping[str, tuple[tuple[str, int], ...]] = field(default_factory=dict)


def _sort_key(sort: str, ranks: Mapping[str, float]) -> Any:
    key = sort.lstrip("-")
    if key == "relevance":
        return lambda x: (ranks.get(x[0], 0.0), x[1].title.lower())
    if key == "title":
        return lambda x: (x[1].title.lower(), x[0])
    if key == "modified":
        return lambda x: (x[1].modified, x[0])
    if key == "severity":
        return lambda x: (SEVERITY_RANK.get(x[1].severity, -1), x[1].title.lower())
    return lambda x: (x[1].source, x[1].title.lower())


def search(
    conn: sqlite3.Connection,
    q: str | None,
    filters: Mapping[str, Sequence[str]],
    sort: str = "relevance",
    page: int = 1,
    per_page: int = 50,
    with_facets: bool = True,
) -> SearchResult:
    """Ranked full-text search with combinable filters (AND across filters, OR within one).

    FTS5 (bm25, title weighted most) narrows the rules; filters, facets and sorting then run
    over the cached per-rule facts, so a search costs one FTS query plus one snippet query.
    """
    facts = _facts(conn)
    use_fts = bool(q and q.strip())
    ranks: dict[str, float] = {}
    if use_fts:
        for rid, rank in conn.execute(
            "SELECT id, bm25(rules_fts, 0.0, 10.0, 4.0, 1.0) FROM rules_fts "
            "WHERE rules_fts MATCH ?",
            (fts_query(q or ""),),
        ):
            if rid in facts:
                ranks[rid] = rank
        pool: list[tuple[str, _RuleFacts]] = [(rid, facts[rid]) for rid in ranks]
    else:
        pool = list(facts.items())
    active = [(k, v) for k, v in filters.items() if v]
    hits = [x for x in pool if all(_match(x[1], k, v) for k, v in active)]
    if sort == "relevance" and not use_fts:
        sort = "title"
    hits.sort(key=_sort_key(sort, ranks), reverse=sort.startswith("-"))
    offset = (page - 1) * per_page
    page_rows = hits[offset: offset + per_page]
    snippets: dict[str, str] = {}
    if use_fts and page_rows:
        marks = "?, ?, '…'"
        snip_sql = (
            f"SELECT id, snippet(rules_fts, 1, {marks}, 8), snippet(rules_fts, 2, {marks}, 24), "
            f"snippet(rules_fts, 3, {marks}, 16) FROM rules_fts WHERE rules_fts MATCH ? "
            f"AND id IN ({','.join('?' * len(page_rows))})"
        )
        for s in conn.execute(
            snip_sql,
            [*[MARK_START, MARK_END] * 3, fts_query(q or ""), *[r[0] for r in page_rows]],
        ):
            parts = [x for x in (s[2], s[3], s[1]) if x and MARK_START in x]
            if parts:
                snippets[s[0]] = parts[0]
    out = tuple(
        SearchHit(
            id=rid,
            source=f.source,
            title=f.title,
            status=f.status or None,
            severity=f.severity or None,
            type=f.type or None,
            language=f.language,
            modified=f.modified or None,
            techniques=tuple(sorted(f.technique)),
            snippet=snippets.get(rid),
        )
        for rid, f in page_rows
    )
    facet_counts: dict[str, tuple[tuple[str, int], ...]] = {}
    everything = not use_fts and not active
    cached = _ALL_FACETS.get("all")
    if with_facets and everything and cached is not None and cached[0] is facts:
        facet_counts = cached[1]
    elif with_facets:
        fs = [f for _, f in hits]
        for name in FACETS:
            values = map(attrgetter(name), fs)
            if name in SET_FACTS:
                counter: Counter[str] = Counter(chain.from_iterable(values))
            else:
                counter = Counter(values)
                counter.pop("", None)
            rows = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
            facet_counts[name] = tuple(rows[: FACET_LIMIT.get(name, 100)])
        if everything:  # the landing page: the same counts until the catalog changes
            _ALL_FACETS["all"] = (facts, facet_counts)
    return SearchResult(total=len(hits), hits=out, facets=facet_counts)


# --------------------------------------------------------------------------------------------
# One rule (fallback for api.documents.rule_document, and web-only extras)
# --------------------------------------------------------------------------------------------


def rules_by_id_prefix(conn: sqlite3.Connection, text: str, limit: int = 5) -> list[dict[str, Any]]:
    """Rules whose id starts with ``text`` (a pasted UUID or its first 8+ characters)."""
    t = text.strip().lower()
    if not re.fullmatch(r"[0-9a-f][0-9a-f-]{7,35}", t):
        return []
    return [
        {"id": r[0], "title": r[1], "source": r[2]}
        for r in conn.execute(
            "SELECT id, title, source FROM rules WHERE id >= ? AND id < ? ORDER BY id LIMIT ?",
            (t, t + "\uffff", limit),
        )
    ]


def rule_exists(conn: sqlite3.Connection, rule_id: str) -> bool:
    return conn.execute("SELECT 1 FROM rules WHERE id = ?", (rule_id,)).fetchone() is not None


def test_result(conn: sqlite3.Connection, rule_id: str) -> dict[str, Any] | None:
    """The engine's last result for a rule, or None (also when the table is absent)."""
    if not _table_exists(conn, "test_results"):
        return None
    row = conn.execute(
        "SELECT status, matched, expected, reason, detail, ran_at FROM test_results "
        "WHERE rule_id = ?",
        (rule_id,),
    ).fetchone()
    if row is None:
        return None
    return {
        "status": row[0],
        "matched": row[1],
        "expected": row[2],
        "reason": row[3],
        "detail": _loads(row[4], None),
        "ran_at": row[5],
    }


def corpus_counts(
    conn: sqlite3.Connection, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """``{(field_key, key): {"total": n, "sigma": a, "splunk": b}}`` for the given keys."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for fk, k in set(keys):
        row = conn.execute(
            "SELECT total, by_source FROM indicator_counts WHERE field_key = ? AND key = ?",
            (fk, k),
        ).fetchone()
        if row is not None:
            out[(fk, k)] = {"total": row[0], **_loads(row[1], {})}
    return out


def _stage_predicates(cond: Any) -> list[dict[str, Any]]:
    """Flatten a stage's condition tree (JSON form) into predicate rows for display."""
    out: list[dict[str, Any]] = []

    def rec(n: Any, positive: bool) -> None:
        if not isinstance(n, dict):
            return
        t = n.get("type")
        if t == "predicate":
            out.append(
                {
                    "field": n.get("field"),
                    "op": n.get("op"),
                    "values": [_value_text(v) for v in n.get("values", [])],
                    "negated": bool(n.get("negated")) != (not positive),
                    "text": n.get("text"),
                }
            )
        elif t in ("and", "or"):
            for a in n.get("args", []):
                rec(a, positive)
        elif t == "not":
            rec(n.get("arg"), not positive)
        elif t in ("condition", "opaque"):
            out.append(
                {"field": None, "op": t, "values": [n.get("text", "")], "negated": not positive,
                 "text": n.get("text"), "reason": n.get("reason")}
            )

    rec(cond, True)
    return out


def _value_text(v: Any) -> str:
    if isinstance(v, dict):
        if "pattern" in v:
            return "".join(p["wild"] if isinstance(p, dict) else p for p in v["pattern"])
        if "regex" in v:
            return f"/{v['regex']}/{''.join(v.get('flags', []))}"
        if "fieldref" in v:
            return str(v["fieldref"])
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def rule_events(conn: sqlite3.Connection, rule_id: str) -> list[dict[str, Any]]:
    """A rule's events as ``{"channel", "event_id"}`` (the page links each to a search)."""
    return [
        {"channel": e[0], "event_id": e[1] or None}
        for e in conn.execute(
            "SELECT channel, event_id FROM rule_events WHERE rule_id = ? ORDER BY 1, 2", (rule_id,)
        )
    ]


def rule_data_sources(conn: sqlite3.Connection, rule_id: str) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT data_source FROM rule_data_sources WHERE rule_id = ? ORDER BY 1", (rule_id,)
        )
    ]


def rule_document(conn: sqlite3.Connection, rule_id: str) -> dict[str, Any] | None:
    """The rule page's data, with the keys of ``api.documents.rule_document`` (used when that
    module is not available)."""
    row = conn.execute("SELECT * FROM rules WHERE id = ?", (rule_id,)).fetchone()
    if row is None:
        return None
    rule = _loads(row["rule_json"], {})
    analysis = _loads(row["analysis_json"], {}) or {}
    attack = []
    for a in conn.execute(
        "SELECT a.technique, t.name, t.tactics FROM rule_attack a LEFT JOIN attack_techniques t "
        "ON t.technique = a.technique WHERE a.rule_id = ? ORDER BY a.technique",
        (rule_id,),
    ):
        attack.append({"technique": a[0], "name": a[1], "tactics": _loads(a[2], [])})
    events = rule_events(conn, rule_id)
    data_sources = rule_data_sources(conn, rule_id)
    rows: dict[int, dict[str, Any]] = {}
    ind = conn.execute(
        "SELECT row, field, op, negated, value, field_key, key FROM indicators WHERE rule_id = ? "
        "ORDER BY row, rowid",
        (rule_id,),
    ).fetchall()
    counts = corpus_counts(conn, ((r[5], r[6]) for r in ind))
    for r in ind:
        entry = rows.setdefault(
            r[0],
            {"field": r[1], "op": r[2], "negated": bool(r[3]), "field_key": r[5], "values": []},
        )
        c = counts.get((r[5], r[6]), {"total": 0})
        entry["values"].append(
            {
                "value": r[4],
                "key": r[6],
                "corpus": {"total": c.get("total", 0), "sigma": c.get("sigma", 0),
                           "splunk": c.get("splunk", 0)},
                "by_source": {k: v for k, v in c.items() if k != "total"},
            }
        )
    stages = []
    for s in analysis.get("stages", []):
        stages.append(
            {
                "index": s.get("index"),
                "command": s.get("command"),
                "text": s.get("text"),
                "expanded": s.get("expanded"),
                "kind": s.get("kind"),
                "name": s.get("name"),
                "by": s.get("by", []),
                "notes": s.get("notes", []),
                "predicates": _stage_predicates(s.get("condition")),
            }
        )
    stories = [
        r[0]
        for r in conn.execute(
            "SELECT story FROM rule_stories WHERE rule_id = ? ORDER BY 1", (rule_id,)
        )
    ]
    return {
        "id": row["id"],
        "source": row["source"],
        "title": row["title"],
        "status": row["status"],
        "severity": row["severity"],
        "author": row["author"],
        "date": row["date"],
        "modified": row["modified"],
        "type": row["type"],
        "language": row["language"],
        "path": row["path"],
        "source_url": row["source_url"],
        "description": row["description"],
        "attack": attack,
        "events": events,
        "data_sources": data_sources,
        "group_by": _loads(row["group_by_json"], []),
        "body": row["body"],
        "query": row["query"],
        "stages": stages,
        "indicators": list(rows.values()),
        "references": list(rule.get("references", [])),
        "falsepositives": list(rule.get("falsepositives", [])),
        "how_to_implement": row["how_to_implement"],
        "tests": list(rule.get("tests", [])),
        "test_result": test_result(conn, rule_id),
        "stories": stories,
        "problems": analysis.get("problems", []),
        "logsource": rule.get("logsource", {}),
        "tags": list(rule.get("tags", [])),
    }


_INDEXED: dict[tuple[str, tuple[int, ...]], int] = {}


def _indexed_rules(conn: sqlite3.Connection) -> int:
    """Rules with at least one indicator (the N of IDF), once per catalog file."""
    path = conn.execute("PRAGMA database_list").fetchone()[2]
    key = (path, catalog_stamp(path) if path else ())
    n = _INDEXED.get(key)
    if n is None:
        n = conn.execute("SELECT count(DISTINCT rule_id) FROM indicators").fetchone()[0]
        _INDEXED.clear()
        _INDEXED[key] = n
    return n


def similar_rules(conn: sqlite3.Connection, rule_id: str, limit: int = 10) -> list[dict[str, Any]]:
    """Rules of any source sharing indicators with this one, each shared indicator weighted by
    its IDF ``log(N / df)`` (a shared ``EventCode=4104`` says little, a shared
    ``*invoke-wmiexec*`` a lot). Same scoring and shape as ``store.indicators.similar_rules``,
    in one join (no temp table, N cached), because the rule page calls it on every view."""
    n = _indexed_rules(conn)
    rows = conn.execute(
        "SELECT i2.rule_id, m.field_key, m.key, m.total FROM ("
        " SELECT DISTINCT i.field_key, i.key, c.total FROM indicators i"
        " JOIN indicator_counts c ON c.field_key = i.field_key AND c.key = i.key"
        " WHERE i.rule_id = ?1 AND c.total > 1) m "
        "JOIN indicators i2 ON i2.field_key = m.field_key AND i2.key = m.key "
        "AND i2.rule_id <> ?1",
        (rule_id,),
    ).fetchall()
    own = conn.execute(
        "SELECT DISTINCT i.field_key, i.key, c.total FROM indicators i JOIN indicator_counts c "
        "ON c.field_key = i.field_key AND c.key = i.key WHERE i.rule_id = ?",
        (rule_id,),
    ).fetchall()
    weight = {(fk, k): (math.log(n / df) if n and df else 0.0, df) for fk, k, df in own}
    own_total = sum(w for w, _ in weight.values()) or 1.0
    per_rule: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for rid, fk, k, _ in rows:
        per_rule[rid].add((fk, k))
    scored = sorted(
        ((sum(weight[x][0] for x in sorted(keys)), rid, keys) for rid, keys in per_rule.items()),
        key=lambda t: (-round(t[0], 9), t[1]),  # ties by id, whatever the float summation order
    )[: max(limit, 0)]
    out = []
    for score, rid, keys in scored:
        meta = conn.execute("SELECT title, source, path FROM rules WHERE id = ?", (rid,)).fetchone()
        ordered = sorted(keys, key=lambda x: -weight[x][0])
        out.append(
            {
                "id": rid,
                "title": meta[0] if meta else None,
                "source": meta[1] if meta else None,
                "path": meta[2] if meta else None,
                "score": round(score, 4),
                "share": round(score / own_total, 4),
                "shared": [
                    {"field_key": fk, "key": k, "weight": round(weight[(fk, k)][0], 4),
                     "df": weight[(fk, k)][1]}
                    for fk, k in ordered
                ],
            }
        )
    return out


def titles(conn: sqlite3.Connection, ids: Iterable[str]) -> dict[str, tuple[str, str]]:
    """``{id: (title, source)}`` for ids that exist."""
    out = {}
    for i in set(ids):
        r = conn.execute("SELECT title, source FROM rules WHERE id = ?", (i,)).fetchone()
        if r:
            out[i] = (r[0], r[1])
    return out


# --------------------------------------------------------------------------------------------
# Indicators
# --------------------------------------------------------------------------------------------


def indicator_rules(conn: sqlite3.Connection, field_key: str, key: str) -> dict[str, Any]:
    """Every rule with the indicator ``(field_key, key)``, grouped by source."""
    rows = conn.execute(
        "SELECT DISTINCT i.rule_id, r.title, r.source, i.field, i.op, i.value, i.negated "
        "FROM indicators i JOIN rules r ON r.id = i.rule_id "
        "WHERE i.field_key = ? AND i.key = ? ORDER BY r.source, r.title COLLATE NOCASE",
        (field_key, key),
    ).fetchall()
    by_source: dict[str, list[dict[str, Any]]] = defaultdict(list)
    seen: set[tuple[str, str]] = set()
    written: set[str] = set()
    for r in rows:
        written.add(r[5])
        if (r[0], r[2]) in seen:
            continue
        seen.add((r[0], r[2]))
        by_source[r[2]].append(
            {"id": r[0], "title": r[1], "field": r[3], "op": r[4], "value": r[5],
             "negated": bool(r[6])}
        )
    c = corpus_counts(conn, [(field_key, key)]).get((field_key, key))
    return {
        "field": field_key,
        "key": key,
        "written": sorted(written),
        "total": len(seen),
        "corpus": c,
        "by_source": dict(sorted(by_source.items())),
    }


def indicator_fields(conn: sqlite3.Connection, limit: int = 60) -> list[tuple[str, int]]:
    """Fields by number of distinct indicator values."""
    return [
        (r[0], r[1])
        for r in conn.execute(
            "SELECT field_key, count(*) FROM indicator_counts GROUP BY 1 ORDER BY 2 DESC, 1 "
            "LIMIT ?",
            (limit,),
        )
    ]


def indicator_explorer(
    conn: sqlite3.Connection, field_key: str | None, per_field: int = 10, fields: int = 12
) -> list[dict[str, Any]]:
    """Most common and rarest indicators per field (one field, or the busiest fields)."""
    names = [field_key] if field_key else [f for f, _ in indicator_fields(conn, fields)]
    out = []
    for f in names:
        common = conn.execute(
            "SELECT key, total, by_source FROM indicator_counts WHERE field_key = ? "
            "ORDER BY total DESC, key LIMIT ?",
            (f, per_field),
        ).fetchall()
        rare = conn.execute(
            "SELECT key, total, by_source FROM indicator_counts WHERE field_key = ? "
            "ORDER BY total, key LIMIT ?",
            (f, per_field),
        ).fetchall()
        n = conn.execute(
            "SELECT count(*) FROM indicator_counts WHERE field_key = ?", (f,)
        ).fetchone()[0]
        row = lambda r: {"key": r[0], "total": r[1], "by_source": _loads(r[2], {})}  # noqa: E731
        out.append(
            {"field": f, "distinct": n, "common": [row(r) for r in common],
             "rare": [row(r) for r in rare]}
        )
    return out


# --------------------------------------------------------------------------------------------
# ATT&CK matrix
# --------------------------------------------------------------------------------------------


def attack_counts(conn: sqlite3.Connection, source: str | None) -> dict[str, int]:
    """Distinct rules per technique id; a parent counts the rules of its sub-techniques too.

    One scan of ``rule_attack`` aggregated in Python: the table is small (about two rows per
    rule) and this beats one ``LIKE`` query per parent technique by two orders of magnitude.
    """
    sql = "SELECT a.technique, a.rule_id FROM rule_attack a"
    params: tuple[Any, ...] = ()
    if source:
        sql += " JOIN rules r ON r.id = a.rule_id WHERE r.source = ?"
        params = (source,)
    rules: dict[str, set[str]] = defaultdict(set)
    for tech, rid in conn.execute(sql, params):
        rules[tech].add(rid)
        if "." in tech:
            rules[tech.split(".", 1)[0]].add(rid)
    return {t: len(ids) for t, ids in rules.items()}


def attack_matrix(conn: sqlite3.Connection, source: str | None) -> dict[str, Any]:
    """The Enterprise matrix: tactic columns of techniques (with sub-techniques), rule counts."""
    counts = attack_counts(conn, source)
    techs = conn.execute(
        "SELECT technique, name, tactics, parent FROM attack_techniques "
        "WHERE revoked = 0 AND deprecated = 0 ORDER BY name COLLATE NOCASE"
    ).fetchall()
    names = {t[0]: t[1] for t in techs}
    subs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    columns: dict[str, list[dict[str, Any]]] = {t[0]: [] for t in TACTICS}
    for t in techs:
        if t[3]:
            subs[t[3]].append({"id": t[0], "name": t[1], "count": counts.get(t[0], 0)})
    for t in techs:
        if t[3]:
            continue
        cell = {
            "id": t[0],
            "name": t[1],
            "count": counts.get(t[0], 0),
            "subs": sorted(subs.get(t[0], []), key=lambda s: s["id"]),
        }
        for tac in _loads(t[2], []):
            columns.setdefault(tac, []).append(cell)
    unknown = sorted(k for k in counts if k not in names)
    maxc = max(counts.values(), default=0)
    return {
        "source": source,
        "sources": [r[0] for r in conn.execute("SELECT DISTINCT source FROM rules ORDER BY 1")],
        "tactics": [
            {"id": tac, "name": tactic_name(tac), "techniques": cells,
             "covered": sum(1 for c in cells if c["count"])}
            for tac, cells in columns.items()
            if cells
        ],
        "unknown": [{"id": k, "count": counts[k]} for k in unknown],
        "max": maxc,
        "covered": sum(1 for k in counts if k in names),
        "reference": len(names),
        "counts": counts,
        "names": names,
    }


# --------------------------------------------------------------------------------------------
# Events, macros, stories
# --------------------------------------------------------------------------------------------


def event_coverage(conn: sqlite3.Connection) -> dict[str, Any]:
    """Events (channel + id) and data sources with rule counts per source."""
    events: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for r in conn.execute(
        "SELECT e.channel, e.event_id, r.source, count(DISTINCT e.rule_id) FROM rule_events e "
        "JOIN rules r ON r.id = e.rule_id GROUP BY 1, 2, 3"
    ):
        events[(r[0], r[1])][r[2]] = r[3]
    ds: dict[str, dict[str, int]] = defaultdict(dict)
    for r in conn.execute(
        "SELECT d.data_source, r.source, count(DISTINCT d.rule_id) FROM rule_data_sources d "
        "JOIN rules r ON r.id = d.rule_id GROUP BY 1, 2"
    ):
        ds[r[0]][r[1]] = r[2]
    sources = [r[0] for r in conn.execute("SELECT DISTINCT source FROM rules ORDER BY 1")]
    ev_rows: list[dict[str, Any]] = [
        {"channel": c, "event_id": e or None, "by_source": bs, "total": sum(bs.values())}
        for (c, e), bs in events.items()
    ]
    ev_rows.sort(key=lambda x: (-x["total"], x["channel"], x["event_id"] or ""))
    ds_rows: list[dict[str, Any]] = [
        {"name": n, "by_source": bs, "total": sum(bs.values())} for n, bs in ds.items()
    ]
    ds_rows.sort(key=lambda x: (-x["total"], x["name"]))
    return {"sources": sources, "events": ev_rows, "data_sources": ds_rows}


def macros(conn: sqlite3.Connection, name: str | None = None) -> list[dict[str, Any]]:
    """Macro definitions with the rules that use them."""
    usage: dict[str, int] = {
        r[0]: r[1] for r in conn.execute("SELECT macro, count(*) FROM rule_macros GROUP BY 1")
    }
    sql = "SELECT name, nargs, arguments, definition, description, path FROM macros"
    params: tuple[Any, ...] = ()
    if name:
        sql += " WHERE name = ?"
        params = (name,)
    out = []
    for r in conn.execute(sql + " ORDER BY name, nargs", params):
        key = f"{r[0]}({r[1]})" if r[1] else r[0]
        item = {
            "name": r[0],
            "key": key,
            "arguments": _loads(r[2], []),
            "definition": r[3],
            "description": r[4],
            "path": r[5],
            "used_by": usage.get(key, 0),
        }
        if name:
            item["rules"] = [
                {"id": x[0], "title": x[1], "source": x[2]}
                for x in conn.execute(
                    "SELECT r.id, r.title, r.source FROM rule_macros m JOIN rules r "
                    "ON r.id = m.rule_id WHERE m.macro = ? ORDER BY r.title COLLATE NOCASE",
                    (key,),
                )
            ]
        out.append(item)
    return out


def stories(conn: sqlite3.Connection, name: str | None = None) -> list[dict[str, Any]]:
    """Analytic stories with their rule counts (and rules, for one story)."""
    members: dict[str, int] = {
        r[0]: r[1] for r in conn.execute("SELECT story, count(*) FROM rule_stories GROUP BY 1")
    }
    names = {r[0]: (r[1], _loads(r[2], {})) for r in conn.execute(
        "SELECT name, source, doc FROM stories" + (" WHERE name = ?" if name else ""),
        (name,) if name else (),
    )}
    if name and name not in names and name in members:
        names[name] = ("", {})
    if not name:
        for s in members:
            names.setdefault(s, ("", {}))
    out = []
    for n in sorted(names, key=str.lower):
        src, doc = names[n]
        item: dict[str, Any] = {
            "name": n,
            "source": src,
            "description": str(doc.get("description", "") or ""),
            "rules_count": members.get(n, 0),
        }
        if name:
            item["narrative"] = str(doc.get("narrative", "") or "")
            item["references"] = [str(x) for x in doc.get("references", []) or []]
            item["rules"] = [
                {"id": x[0], "title": x[1], "source": x[2]}
                for x in conn.execute(
                    "SELECT r.id, r.title, r.source FROM rule_stories s JOIN rules r "
                    "ON r.id = s.rule_id WHERE s.story = ? ORDER BY r.title COLLATE NOCASE",
                    (n,),
                )
            ]
        out.append(item)
    return out


def all_rule_ids(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT id FROM rules ORDER BY id")]


def search_index(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Compact rows for the exported site's client-side search."""
    tactics: dict[str, list[str]] = {}
    for r in conn.execute(
        "SELECT DISTINCT a.rule_id, j.value FROM rule_attack a JOIN attack_techniques t "
        "ON t.technique = a.technique, json_each(t.tactics) j"
    ):
        tactics.setdefault(r[0], []).append(r[1])
    out = []
    for r in conn.execute(
        "SELECT r.id, r.title, r.source, r.status, r.severity, substr(r.description, 1, 300), "
        "(SELECT group_concat(technique, ' ') FROM rule_attack a WHERE a.rule_id = r.id) "
        "FROM rules r ORDER BY r.title COLLATE NOCASE"
    ):
        out.append(
            {"id": r[0], "t": r[1], "s": r[2], "st": r[3], "sv": r[4], "d": r[5],
             "a": sorted((r[6] or "").split()), "ta": sorted(tactics.get(r[0], []))}
        )
    return out


def indicator_keys(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in conn.execute("SELECT field_key, key FROM indicator_counts")]
