"""``/rules``: full-text search with combinable filters, facets, sort and pagination."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ruleatlas.attack import ENTERPRISE_TACTICS
from ruleatlas.languages import LANGUAGES, load_builtin
from ruleatlas.sources import SOURCES
from ruleatlas.store import RuleQuery, SearchError
from ruleatlas.store.matrix import technique_names
from ruleatlas.store.resolve import id_prefix_matches
from ruleatlas.store.search import SORTS, TEST_STATUSES
from ruleatlas.web.params import Int, Param, WebError
from ruleatlas.web.views import Ctx, Page

FILTERS = ("source", "status", "severity", "tactic", "technique", "data_source", "channel",
           "event_id", "language", "type", "test", "story", "macro")
load_builtin()
LANGUAGE_NAMES = tuple(sorted(LANGUAGES))
ID_MATCHES = 5  # rules listed above the results when the text is an id prefix
PARAMS: dict[str, Param] = {
    "q": Param("full-text query (title, description, query): words are ANDed, \"quoted "
               "text\" is a phrase, the last unquoted word is a prefix; FTS syntax is searched "
               "as text", max_len=300),
    "source": Param(f"rule source ({', '.join(SOURCES)})", multi=True, max_len=40),
    "status": Param("rule status", multi=True, max_len=40),
    "severity": Param("severity / level", multi=True, max_len=40),
    "tactic": Param("ATT&CK tactic short name", multi=True,
                    choices=tuple(t[0] for t in ENTERPRISE_TACTICS)),
    "technique": Param("ATT&CK technique id (sub-techniques included)", multi=True,
                       pattern=r"[Tt]\d{4}(\.\d{3})?"),
    "data_source": Param("data source name (Elastic: integration)", multi=True),
    "channel": Param("event channel / sourcetype", multi=True),
    "event_id": Param("event id", multi=True, max_len=40),
    "language": Param(f"query language ({', '.join(LANGUAGE_NAMES)})", multi=True,
                      max_len=40),
    "type": Param("rule type (TTP, Anomaly, Hunting, eql, threshold, new_terms, ...)", multi=True,
                  max_len=40),
    "test": Param("test status", multi=True, choices=TEST_STATUSES),
    "story": Param("analytic story", multi=True),
    "macro": Param("Splunk macro key used by the rule", multi=True),
    "sort": Param("sort order", choices=SORTS, default="relevance"),
    "page": Int("page number, from 1", lo=1, hi=10_000, default=1),
    "per_page": Int("results per page", lo=1, hi=200, default=50),
}
FACET_LABELS = {
    "source": "Source", "status": "Status", "severity": "Severity", "tactic": "Tactic",
    "technique": "Technique", "data_source": "Data source / integration",
    "channel": "Event channel",
    "language": "Language", "type": "Type", "test": "Test",
}


def rule_query(args: Mapping[str, Any]) -> RuleQuery:
    """The store's query for this page's validated parameters."""
    filters: dict[str, Any] = {k: tuple(args[k]) for k in FILTERS}
    return RuleQuery(text=args["q"], sort=args["sort"], page=args["page"],
                     per_page=args["per_page"], **filters)


def build_rules(ctx: Ctx) -> dict[str, Any]:
    a = ctx.args
    q = rule_query(a)
    try:
        res = ctx.catalog.search_rules(q)
    except SearchError as e:
        raise WebError(400, str(e)) from None
    if a["page"] > res.pages and res.total:
        raise WebError(404, f"page {a['page']} is past the last page ({res.pages})")
    conn = ctx.catalog.conn
    return {
        "query": {"q": a["q"], "sort": a["sort"], "page": a["page"], "per_page": a["per_page"],
                  "filters": {k: list(v) for k, v in q.filters().items()}},
        "total": res.total,
        "pages": res.pages,
        "rows": [h.to_dict() for h in res.rows],
        "_snippets": {h.id: h.snippet for h in res.rows if h.snippet},  # template only
        "facets": {k: [[v, n] for v, n in rows] for k, rows in res.facets.items()},
        "id_matches": [{"id": c.id, "title": c.title, "source": c.source}
                       for c in id_prefix_matches(conn, a["q"] or "", ID_MATCHES)],
        "technique_names": technique_names(conn, [v for v, _ in res.facets.get("technique", ())]),
    }


PAGES = [
    Page("rules", "/rules", "rules.html", build_rules,
         "Search and browse rules: FTS5 ranked search, filters, facet counts, pagination.",
         params=PARAMS, title=lambda d: "Search rules"),
]
