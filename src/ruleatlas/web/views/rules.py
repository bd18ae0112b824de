"""``/rules``: full-text search with combinable filters, facets, sort and pagination."""

from __future__ import annotations

from typing import Any

from ruleatlas.store import browse
from ruleatlas.web.params import Int, Param
from ruleatlas.web.views import Ctx, Page

FILTERS = ("source", "status", "severity", "tactic", "technique", "data_source", "channel",
           "event_id", "language", "type", "test", "story", "macro")
PARAMS: dict[str, Param] = {
    "q": Param("full-text query (title, description, query); words are ANDed, the last is a "
               "prefix", max_len=300),
    "source": Param("rule source (sigma, splunk)", multi=True, max_len=40),
    "status": Param("rule status", multi=True, max_len=40),
    "severity": Param("severity / level", multi=True, max_len=40),
    "tactic": Param("ATT&CK tactic short name", multi=True,
                    choices=tuple(t[0] for t in browse.TACTICS)),
    "technique": Param("ATT&CK technique id (sub-techniques included)", multi=True,
                       pattern=r"[Tt]\d{4}(\.\d{3})?"),
    "data_source": Param("data source name", multi=True),
    "channel": Param("event channel / sourcetype", multi=True),
    "event_id": Param("event id", multi=True, max_len=40),
    "language": Param("query language (spl, sigma)", multi=True, max_len=40),
    "type": Param("rule type (TTP, Anomaly, Hunting, ...)", multi=True, max_len=40),
    "test": Param("test status (pass, fail, no-data, not-runnable, untested, none)", multi=True,
                  max_len=40),
    "story": Param("analytic story", multi=True),
    "macro": Param("Splunk macro key used by the rule", multi=True),
    "sort": Param("sort order", choices=tuple(browse.SORTS), default="relevance"),
    "page": Int("page number, from 1", lo=1, hi=10_000, default=1),
    "per_page": Int("results per page", lo=1, hi=200, default=50),
}
FACET_LABELS = {
    "source": "Source", "status": "Status", "severity": "Severity", "tactic": "Tactic",
    "technique": "Technique", "data_source": "Data source", "channel": "Event channel",
    "language": "Language", "type": "Type", "test": "Test",
}


def build_rules(ctx: Ctx) -> dict[str, Any]:
    a = ctx.args
    filters = {k: a[k] for k in FILTERS if a.get(k)}
    if "technique" in filters:
        filters["technique"] = [t.upper() for t in filters["technique"]]
    res = browse.search(ctx.conn, a["q"], filters, a["sort"], a["page"], a["per_page"])
    pages = max(1, (res.total + a["per_page"] - 1) // a["per_page"])
    if a["page"] > pages and res.total:
        from ruleatlas.web.params import WebError

        raise WebError(404, f"page {a['page']} is past the last page ({pages})")
    return {
        "query": {"q": a["q"], "sort": a["sort"], "page": a["page"], "per_page": a["per_page"],
                  "filters": filters},
        "total": res.total,
        "pages": pages,
        "rows": [h.to_dict() for h in res.hits],
        "_snippets": {h.id: h.snippet for h in res.hits if h.snippet},  # template only
        "facets": {k: [[v, n] for v, n in rows] for k, rows in res.facets.items()},
        "id_matches": browse.rules_by_id_prefix(ctx.conn, a["q"]) if a["q"] else [],
        "technique_names": browse.technique_names(
            ctx.conn, [v for v, _ in res.facets.get("technique", ())]),
    }


PAGES = [
    Page("rules", "/rules", "rules.html", build_rules,
         "Search and browse rules: FTS5 ranked search, filters, facet counts, pagination.",
         params=PARAMS, title=lambda d: "Search rules"),
]
