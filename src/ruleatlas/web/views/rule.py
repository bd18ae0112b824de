"""``/rules/{id}``: one rule, section by section like ``spec/rule-page-example.txt``."""

from __future__ import annotations

from typing import Any

from ruleatlas.store import browse
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


def _document(ctx: Ctx, rule_id: str) -> dict[str, Any] | None:
    """The shared rule document (``api.documents``) when that module is there, else ours."""
    try:
        from ruleatlas.api.documents import rule_document
    except ImportError:
        return browse.rule_document(ctx.conn, rule_id)
    if ctx.catalog is None:
        return browse.rule_document(ctx.conn, rule_id)
    try:
        return rule_document(ctx.catalog(), rule_id)  # type: ignore[no-any-return]
    except (KeyError, ValueError):  # unknown id (RuleNotFound), ambiguous title (CatalogError)
        return None


def build_rule(ctx: Ctx) -> dict[str, Any]:
    rule_id = ctx.path["rule_id"]
    doc = _document(ctx, rule_id)
    if doc is None:
        raise WebError(404, f"no rule with id {rule_id!r}")
    doc = {**DEFAULTS, **{k: v for k, v in doc.items() if v is not None or k not in DEFAULTS}}
    if doc.get("test_result") is None:
        doc["test_result"] = browse.test_result(ctx.conn, rule_id)
    similar = doc.get("similar")
    if similar is None:
        similar = _similar(ctx, rule_id)
    doc["similar"] = similar
    if any(not isinstance(e, dict) for e in doc["events"]):  # "Channel 4104" strings
        doc["events"] = browse.rule_events(ctx.conn, rule_id)
    if not doc["data_sources"]:
        doc["data_sources"] = browse.rule_data_sources(ctx.conn, rule_id)
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
    d = {"field": "", "op": "", "negated": False, "values": [], **dict(row)}
    d.setdefault("field_key", d["field"])
    d["values"] = [{"value": "", "key": "", "corpus": None, **dict(v)} for v in d["values"]]
    return d


def _similar(ctx: Ctx, rule_id: str) -> list[dict[str, Any]]:
    """IDF-weighted similar rules (``store.browse.similar_rules``: the scoring of
    ``store.indicators.similar_rules`` in one query); the page shows ``shared`` as a count."""
    out = []
    for r in browse.similar_rules(ctx.conn, rule_id, limit=10):
        d = dict(r)
        d["shared_indicators"] = d["shared"]
        d["shared"] = len(d["shared"])
        out.append(d)
    return out


PAGES = [
    Page("rule", "/rules/{rule_id}", "rule.html", build_rule,
         "One rule: metadata, ATT&CK, events, body, stages and predicates, indicators with "
         "corpus counts, similar rules, stories, references, tests.",
         path_params={"rule_id": "rule id (UUID)"},
         title=lambda d: str(d["rule"]["title"])),
]
