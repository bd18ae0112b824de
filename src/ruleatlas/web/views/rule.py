"""``/rules/{id}``: one rule, section by section like ``spec/rule-page-example.txt``."""

from __future__ import annotations

from typing import Any

from ruleatlas.api.documents import rule_document
from ruleatlas.store import CatalogError
from ruleatlas.store.indicators import similar_rules
from ruleatlas.web.params import WebError
from ruleatlas.web.views import Ctx, Page

# Every key the template reads, so a document without one (older catalog, other producer)
# still renders: the page says "none" rather than failing.
DEFAULTS: dict[str, Any] = {
    "status": None, "severity": None, "author": None, "group_by": [], "source_url": None,
    "path": "", "description": "", "attack": [], "events": [], "data_sources": [], "body": "",
    "stages": [], "indicators": [], "references": [], "falsepositives": [],
    "how_to_implement": None, "tests": [], "test_result": None, "stories": [], "problems": [],
}
SOURCE_LABELS = {"sigma": "Sigma", "splunk": "Splunk", "elastic": "Elastic"}


def build_rule(ctx: Ctx) -> dict[str, Any]:
    """The rule page: the rule document of the rule the path names (the one resolver: id,
    unique title or unique id prefix), with similar rules and structured events."""
    try:
        rule_id = ctx.catalog.resolve(ctx.path["rule_id"])
    except CatalogError as e:  # unknown, ambiguous or impossible reference
        raise WebError(404, e.message) from None
    doc = rule_document(ctx.catalog, rule_id)
    doc = {**DEFAULTS, **{k: v for k, v in doc.items() if v is not None or k not in DEFAULTS}}
    doc["similar"] = _similar(ctx, rule_id)
    doc["events"] = [{"channel": c, "event_id": e}
                     for c, e in ctx.catalog.rule_event_pairs(rule_id)]
    doc["stages"] = [_stage(st) for st in doc["stages"]]
    doc["indicators"] = [_indicator_row(row) for row in doc["indicators"]]
    doc["source_label"] = SOURCE_LABELS.get(doc["source"], str(doc["source"]).title())
    return {"rule": doc}


def _stage(st: Any) -> dict[str, Any]:
    d = {"index": None, "command": "", "text": "", "expanded": None, "kind": "filter",
         "name": None, "predicates": [], **dict(st)}
    d["predicates"] = [
        {"field": None, "op": "", "values": [], "negated": False, **dict(p)}
        for p in d["predicates"] or []
    ]
    return d


def _indicator_row(row: Any) -> dict[str, Any]:
    d = {"field": "", "op": "", "negated": False, "phase": "event", "values": [], **dict(row)}
    d.setdefault("field_key", d["field"])
    d["values"] = [{"value": "", "key": "", "corpus": None, **dict(v)} for v in d["values"]]
    return d


def _similar(ctx: Ctx, rule_id: str) -> list[dict[str, Any]]:
    """IDF-weighted similar rules (``store.indicators.similar_rules``); the page shows
    ``shared`` as a count."""
    out = []
    for r in similar_rules(ctx.catalog.conn, rule_id, limit=10):
        d = dict(r)
        d["shared_indicators"] = d["shared"]
        d["shared"] = len(d["shared"])
        out.append(d)
    return out


PAGES = [
    Page("rule", "/rules/{rule_id}", "rule.html", build_rule,
         "One rule: metadata, ATT&CK, events, body, stages and predicates, indicators with "
         "corpus counts, similar rules, stories, references, tests.",
         path_params={"rule_id": "rule id (UUID), unique id prefix (8+ characters) or "
                                 "unique title"},
         title=lambda d: str(d["rule"]["title"])),
]
