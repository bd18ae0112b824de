"""The one rule search: full text (FTS5, bm25) with combinable filters, sorts, pages and facets.

The web page ``/rules``, its JSON twin ``/api/rules``, ``ruleatlas search`` and ``ruleatlas
list`` all call :func:`search_rules` with a :class:`RuleQuery`, so one query gives the same
rules in the same order everywhere.

**Text** (:func:`fts_query`): the user's text is never FTS5 syntax. Words are separated by
spaces and all required (AND); text between double quotes is one phrase (its words in that
order); a quote left open runs to the end of the text. Every word and phrase is quoted for FTS5
(``"`` doubled), so ``*``, ``(``, ``NEAR(``, ``OR``, ``-``, ``^`` or ``:`` are searched as text,
never parsed. The last word, when it is not inside quotes, is a prefix (``wmiex`` finds
``wmiexec``), and so is any word written with a trailing ``*``. Words with no letter or digit
are left out (FTS5 could match nothing in them); a text left with no word, like the empty text,
does not filter: every rule is listed.

**Filters** are AND across filters and OR within one (``source=("sigma", "splunk")``), compared
without case. ``technique`` also matches sub-techniques (``T1059`` finds ``T1059.001``);
``tactic`` takes a short name (``execution``) or a display name (``Execution``); ``event`` is
``"Channel EventID"`` or a channel alone; ``test`` one of :data:`TEST_STATUSES`.

Why filters run in Python: FTS5 narrows the rules, then filters, facets and sorting run over
per-rule facts loaded once per catalog state (:func:`connection_stamp`: a rebuild, or
``ruleatlas test`` storing results, loads them again). Counting ten facets in Python costs a few
milliseconds for the whole corpus, where SQL joins cost tens of milliseconds per facet.
"""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import lru_cache
from itertools import chain
from operator import itemgetter
from typing import Any

from ruleatlas.limits import Limits
from ruleatlas.store.codec import loads
from ruleatlas.store.connection import connection_stamp, table_exists, with_connection

# Markers around matched words in snippets; front ends replace them (after escaping the rest).
HL_START = "\x02"
HL_END = "\x03"

SORTS = ("relevance", "title", "-title", "modified", "-modified", "severity", "-severity",
         "source")
SEVERITY_RANK = {"informational": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
TEST_STATUSES = ("pass", "fail", "no-data", "not-runnable", "untested", "none")
FILTERS = ("source", "status", "severity", "language", "type", "technique", "tactic",
           "data_source", "channel", "event_id", "event", "story", "macro", "test")
FACETS = ("source", "status", "severity", "language", "type", "tactic", "technique",
          "data_source", "channel", "test")
FACET_LIMITS = {"technique": 25, "data_source": 25, "channel": 25}
FACET_LIMIT = 100  # values per facet, unless FACET_LIMITS says otherwise
BM25_WEIGHTS = (0.0, 10.0, 4.0, 1.0)  # rules_fts columns: id, title, description, query
SNIPPET_COLUMNS = (("description", 2, 24), ("query", 3, 16), ("title", 1, 8))  # col, i, words
FACTS_CACHE_SIZE = 2  # catalog states kept (the served one, and the one a rebuild brings)


class SearchError(ValueError):
    """A query the catalog cannot answer (unknown sort or test status, bad page)."""


@dataclass(frozen=True, slots=True)
class RuleQuery:
    """One search. Empty text and empty filters do not filter; see the module doc."""

    text: str | None = None
    source: tuple[str, ...] = ()
    status: tuple[str, ...] = ()
    severity: tuple[str, ...] = ()
    language: tuple[str, ...] = ()
    type: tuple[str, ...] = ()
    technique: tuple[str, ...] = ()
    tactic: tuple[str, ...] = ()
    data_source: tuple[str, ...] = ()
    channel: tuple[str, ...] = ()
    event_id: tuple[str, ...] = ()
    event: tuple[str, ...] = ()
    story: tuple[str, ...] = ()
    macro: tuple[str, ...] = ()
    test: tuple[str, ...] = ()
    sort: str = "relevance"
    page: int = 1
    per_page: int = 50
    facets: bool = True

    def filters(self) -> dict[str, tuple[str, ...]]:
        """The filters in use, by name."""
        return {n: getattr(self, n) for n in FILTERS if getattr(self, n)}


@dataclass(frozen=True, slots=True)
class RuleSummary:
    """One search result. ``snippet`` marks matched words with ``HL_START``/``HL_END``."""

    id: str
    source: str
    title: str
    status: str | None
    severity: str | None
    type: str | None
    language: str
    modified: str | None
    path: str
    techniques: tuple[str, ...] = ()
    snippet: str | None = None

    def to_dict(self, marks: tuple[str, str] = ("<<", ">>")) -> dict[str, Any]:
        """JSON form; the snippet's markers become ``marks`` (plain text, no control chars)."""
        d = {name: getattr(self, name) for name in _SUMMARY_FIELDS}
        d["techniques"] = list(self.techniques)
        if self.snippet is not None:
            d["snippet"] = self.snippet.replace(HL_START, marks[0]).replace(HL_END, marks[1])
        return d


_SUMMARY_FIELDS = tuple(f.name for f in fields(RuleSummary))


@dataclass(frozen=True, slots=True)
class RulePage:
    total: int
    rows: tuple[RuleSummary, ...]
    facets: Mapping[str, tuple[tuple[str, int], ...]] = field(default_factory=dict)
    page: int = 1
    per_page: int = 50

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


# --------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------

_WORD = re.compile(r"\w")


def _quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def fts_query(text: str | None) -> str | None:
    """User text as a safe FTS5 query (see the module doc); None when no word is left."""
    terms: list[str] = []
    last_bare = False
    for i, part in enumerate((text or "").split('"')):
        if i % 2:  # inside quotes: one phrase
            if _WORD.search(part):
                terms.append(_quoted(" ".join(part.split())))
                last_bare = False
            continue
        for word in part.split():
            core = word.rstrip("*")
            if not _WORD.search(core):
                continue
            terms.append(_quoted(core) + ("*" if core != word else ""))
            last_bare = core == word
    if last_bare:
        terms[-1] += "*"
    return " ".join(terms) if terms else None


# --------------------------------------------------------------------------------------------
# Per-rule facts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Facts:
    """One rule as search sees it: its result row and its facts."""

    row: RuleSummary
    title: str  # lower-cased, for sorting
    values: Mapping[str, tuple[str, ...]]  # fact name (FILTERS) -> values as stored
    facets: tuple[tuple[str, ...], ...]  # the same, one tuple per name of FACETS


class _Index:
    """The facts of every rule of one catalog state, and per filter the normalised values of
    each rule (``_norm``), computed the first time a search uses that filter."""

    def __init__(self, facts: dict[str, _Facts]) -> None:
        self.facts = facts
        self._keys: dict[str, dict[str, frozenset[str]]] = {}

    def keys(self, name: str) -> dict[str, frozenset[str]]:
        """Rule id -> the values ``name`` matches (two threads may both compute it: same
        result)."""
        got = self._keys.get(name)
        if got is None:
            got = self._keys[name] = _filter_keys(self.facts, name)
        return got


def _filter_keys(facts: Mapping[str, _Facts], name: str) -> dict[str, frozenset[str]]:
    sources = ("event", "channel") if name == "event" else (name,)
    normed: dict[str, str] = {}  # the same few thousand values recur
    out: dict[str, frozenset[str]] = {}
    for rid, f in facts.items():
        keys = set()
        for src in sources:
            for v in f.values.get(src, ()):
                k = normed.get(v)
                if k is None:
                    k = normed[v] = _norm(name, v)
                keys.add(k)
        if name == "technique":  # a parent technique matches its sub-techniques
            keys.update([k.split(".", 1)[0] for k in keys])
        out[rid] = frozenset(keys)
    return out


def _norm(name: str, value: str) -> str:
    v = value.strip()
    if name == "technique":
        return v.upper()
    if name == "tactic":
        return v.lower().replace(" ", "-").replace("_", "-")
    return v.casefold()


# orjson writes '"tests":[{', json '"tests": [{' (see store/codec.py)
_HAS_TESTS = "instr(rule_json, '\"tests\": [{') + instr(rule_json, '\"tests\":[{')"
_SIDE_TABLES = (
    ("data_source", "SELECT rule_id, data_source FROM rule_data_sources ORDER BY rowid"),
    ("story", "SELECT rule_id, story FROM rule_stories ORDER BY rowid"),
    ("macro", "SELECT rule_id, macro FROM rule_macros ORDER BY rowid"),
)


_Multi = dict[str, dict[str, list[str]]]  # rule id -> fact name -> values
_SCALARS = {"source": 1, "status": 3, "severity": 4, "type": 5, "language": 6}  # row columns


def _gather(conn: sqlite3.Connection) -> tuple[list[tuple[Any, ...]], _Multi]:
    """Every rule's row and its multi-valued facts (technique, tactic, events, side tables)."""
    rows = conn.execute(
        "SELECT id, source, title, status, lower(severity), type, language, "
        f"coalesce(modified, date), path, {_HAS_TESTS} FROM rules").fetchall()
    multi: _Multi = {r[0]: {"test": ["untested" if r[9] else "none"]} for r in rows}
    tactics = {t: loads(ts, []) for t, ts in conn.execute(
        "SELECT technique, tactics FROM attack_techniques")}
    for rid, tech in conn.execute("SELECT rule_id, technique FROM rule_attack ORDER BY technique"):
        if rid in multi:
            multi[rid].setdefault("technique", []).append(tech)
            multi[rid].setdefault("tactic", []).extend(tactics.get(tech, ()))
    for name, sql in _SIDE_TABLES:
        for rid, v in conn.execute(sql):
            if rid in multi:
                multi[rid].setdefault(name, []).append(v)
    for rid, ch, ev in conn.execute("SELECT rule_id, channel, event_id FROM rule_events"):
        if rid in multi:
            multi[rid].setdefault("channel", []).append(ch)
            multi[rid].setdefault("event", []).append(f"{ch} {ev}" if ev else ch)
            if ev:
                multi[rid].setdefault("event_id", []).append(ev)
    if table_exists(conn, "test_results"):
        for rid, status in conn.execute("SELECT rule_id, status FROM test_results"):
            if rid in multi:
                multi[rid]["test"] = [status]
    return rows, multi


def _load_facts(conn: sqlite3.Connection) -> _Index:
    rows, multi = _gather(conn)
    out: dict[str, _Facts] = {}
    for r in rows:
        rid = r[0]
        values = {n: tuple(dict.fromkeys(vs)) if len(vs) > 1 else tuple(vs)
                  for n, vs in multi[rid].items()}
        for name, i in _SCALARS.items():
            values[name] = (r[i],) if r[i] else ()
        row = RuleSummary(rid, r[1], r[2], r[3] or None, r[4] or None, r[5] or None, r[6],
                          r[7] or None, r[8], values.get("technique", ()))
        out[rid] = _Facts(row, r[2].lower(), values, tuple(values.get(n, ()) for n in FACETS))
    return _Index(out)


@lru_cache(maxsize=FACTS_CACHE_SIZE)
def _index_of(path: str, stamp: tuple[int, ...]) -> _Index:
    return with_connection(path, _load_facts)


def _index(conn: sqlite3.Connection) -> _Index:
    path, stamp = connection_stamp(conn)
    return _index_of(path, stamp) if path else _load_facts(conn)


# --------------------------------------------------------------------------------------------
# Search
# --------------------------------------------------------------------------------------------


def _sort_key(sort: str, ranks: Mapping[str, float]) -> Any:
    key = sort.lstrip("-")
    if key == "relevance":
        return lambda f: (ranks.get(f.row.id, 0.0), f.title, f.row.id)
    if key == "title":
        return lambda f: (f.title, f.row.id)
    if key == "modified":
        return lambda f: (f.row.modified or "", f.title, f.row.id)
    if key == "severity":
        return lambda f: (SEVERITY_RANK.get(f.row.severity or "", -1), f.title, f.row.id)
    return lambda f: (f.row.source, f.title, f.row.id)


def _check(q: RuleQuery) -> None:
    if q.sort not in SORTS:
        raise SearchError(f"unknown sort {q.sort!r}; one of {', '.join(SORTS)}")
    if q.page < 1 or q.per_page < 1:
        raise SearchError("page and per_page start at 1")
    bad = [t for t in q.test if t not in TEST_STATUSES]
    if bad:
        raise SearchError(f"unknown test status {bad[0]!r}; one of {', '.join(TEST_STATUSES)}")


def _ranks(conn: sqlite3.Connection, match: str) -> dict[str, float]:
    weights = ", ".join(str(w) for w in BM25_WEIGHTS)
    return dict(conn.execute(
        f"SELECT id, bm25(rules_fts, {weights}) FROM rules_fts WHERE rules_fts MATCH ?",
        (match,)).fetchall())


def _snippets(conn: sqlite3.Connection, match: str, ids: Sequence[str]) -> dict[str, str]:
    """The best snippet of each rule: description first, then query, then title."""
    if not ids:
        return {}
    cap = Limits.from_env().snippet_text_chars  # snippet() costs matches squared: bound it
    cut = ", ".join(f"CASE WHEN length({col}) <= {cap} THEN snippet(rules_fts, {i}, ?, ?, "
                    f"'…', {n}) END" for col, i, n in SNIPPET_COLUMNS)
    sql = (f"SELECT id, {cut} FROM rules_fts WHERE rules_fts MATCH ? "
           f"AND id IN ({','.join('?' * len(ids))})")
    out: dict[str, str] = {}
    for rid, *parts in conn.execute(sql, [*[HL_START, HL_END] * 3, match, *ids]):
        best = next((p for p in parts if p and HL_START in p), None)
        if best:
            out[rid] = best
    return out


def _count_facets(hits: Sequence[_Facts]) -> dict[str, tuple[tuple[str, int], ...]]:
    out: dict[str, tuple[tuple[str, int], ...]] = {}
    per_rule = [f.facets for f in hits]
    for i, name in enumerate(FACETS):
        counter = Counter(chain.from_iterable(map(itemgetter(i), per_rule)))
        ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
        out[name] = tuple(ranked[: FACET_LIMITS.get(name, FACET_LIMIT)])
    return out


@lru_cache(maxsize=FACTS_CACHE_SIZE)
def _all_facets(path: str, stamp: tuple[int, ...]) -> dict[str, tuple[tuple[str, int], ...]]:
    """Facets of the whole catalog (the landing page): the same until the catalog changes."""
    return _count_facets(list(_index_of(path, stamp).facts.values()))


def _with_snippet(r: RuleSummary, snippet: str) -> RuleSummary:
    return RuleSummary(r.id, r.source, r.title, r.status, r.severity, r.type, r.language,
                       r.modified, r.path, r.techniques, snippet)


def search_rules(conn: sqlite3.Connection, q: RuleQuery) -> RulePage:
    """One page of the rules matching ``q``, with facets counted over every match."""
    _check(q)
    index = _index(conn)
    facts = index.facts
    match = fts_query(q.text)
    ranks = _ranks(conn, match) if match is not None else {}
    pool = [facts[r] for r in ranks if r in facts] if match is not None else list(facts.values())
    wanted = [(index.keys(n), {_norm(n, v) for v in vs}) for n, vs in q.filters().items()]
    hits = [f for f in pool
            if all(not w.isdisjoint(keys[f.row.id]) for keys, w in wanted)]
    sort = "title" if q.sort == "relevance" and match is None else q.sort
    hits.sort(key=_sort_key(sort, ranks), reverse=sort.startswith("-"))
    start = (q.page - 1) * q.per_page
    shown = hits[start: start + q.per_page]
    snippets = _snippets(conn, match, [f.row.id for f in shown]) if match is not None else {}
    rows = tuple(_with_snippet(f.row, snippets[f.row.id]) if f.row.id in snippets else f.row
                 for f in shown)
    facets: Mapping[str, tuple[tuple[str, int], ...]] = {}
    if q.facets:
        path, stamp = connection_stamp(conn)
        everything = match is None and not wanted and path
        facets = _all_facets(path, stamp) if everything else _count_facets(hits)
    return RulePage(len(hits), rows, facets, q.page, q.per_page)


__all__ = ["FACETS", "FILTERS", "HL_END", "HL_START", "SORTS", "TEST_STATUSES", "RulePage",
           "RuleQuery", "RuleSummary", "SearchError", "fts_query", "search_rules"]
