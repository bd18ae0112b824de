"""``/rules/{id}``: one rule, section by section like ``spec/rule-page-example.txt``."""

from __future__ import annotations

from typing import Any

from ruleatlas.api.documents import rule_document
from ruleatlas.languages import label as language_label
from ruleatlas.sources import source_label
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
    "extra": {}, "sequence": None, "type": None, "language": "",
}


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
    doc["source_label"] = source_label(str(doc["source"]))
    doc["language_label"] = language_label(str(doc["language"]))
    doc["details"] = rule_details(doc.get("extra") or {})
    return {"rule": doc}


def _list(v: Any) -> list[Any]:
    if v is None or v == "":
        return []
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _threshold(t: Any) -> dict[str, Any] | None:
    if not isinstance(t, dict):
        return None
    return {"fields": [str(f) for f in _list(t.get("field"))], "value": t.get("value"),
            "cardinality": [{"field": c.get("field"), "value": c.get("value")}
                            for c in _list(t.get("cardinality")) if isinstance(c, dict)]}


def _threat_match(extra: dict[str, Any]) -> dict[str, Any] | None:
    if "threat_mapping" not in extra and "threat_index" not in extra:
        return None
    mapping = []
    for group in _list(extra.get("threat_mapping")):
        entries = group.get("entries") if isinstance(group, dict) else None
        mapping.append([{"field": e.get("field"), "value": e.get("value"), "type": e.get("type")}
                        for e in _list(entries) if isinstance(e, dict)])
    return {"index": [str(i) for i in _list(extra.get("threat_index"))],
            "query": extra.get("threat_query"),
            "language": language_label(str(extra["threat_language"]))
            if extra.get("threat_language") else None,
            "indicator_path": extra.get("threat_indicator_path"), "mapping": mapping}


def _integrations(v: Any) -> list[str]:
    out = []
    for i in _list(v):
        if isinstance(i, dict):
            name = str(i.get("package") or "")
            if i.get("integration"):
                name += f" / {i['integration']}"
            if i.get("version"):
                name += f" {i['version']}"
            out.append(name)
        else:
            out.append(str(i))
    return out


SETTINGS_KEYS = ("index", "from", "interval", "machine_learning_job_id", "queries", "threshold",
                 "new_terms", "threat_index", "building_block", "note", "setup",
                 "alert_suppression")


def rule_details(extra: dict[str, Any]) -> dict[str, Any]:
    """What a rule's vendor keys add to its page (Elastic: risk score, index patterns, rule-type
    panels, investigation guide, setup, hunting queries), read from ``extra`` whatever the
    source; a key the rule does not have is None or empty, and its panel is left out."""
    ml = extra.get("machine_learning_job_id")
    suppression = extra.get("alert_suppression")
    return {
        # the page shows its "Rule settings" (type, language, risk score, schedule, index
        # patterns, rule-type panels) when the rule has any of these keys: every Elastic rule
        # does, no Sigma or Splunk rule (whose page keeps the example's five metadata rows)
        "settings": any(k in extra for k in SETTINGS_KEYS),
        "risk_score": extra.get("risk_score"),
        "index": [str(i) for i in _list(extra.get("index"))],
        "from": extra.get("from"),
        "interval": extra.get("interval"),
        "building_block": bool(extra.get("building_block")),
        "building_block_type": extra.get("building_block_type"),
        "integrations": _integrations(extra.get("related_integrations")
                                      or extra.get("integration")),
        "required_fields": [{"name": f.get("name"), "type": f.get("type"),
                             "ecs": f.get("ecs")}
                            for f in _list(extra.get("required_fields")) if isinstance(f, dict)],
        "threshold": _threshold(extra.get("threshold")),
        "new_terms": extra.get("new_terms") if isinstance(extra.get("new_terms"), dict) else None,
        "threat_match": _threat_match(extra),
        "machine_learning": {"jobs": [str(j) for j in _list(ml)],
                             "anomaly_threshold": extra.get("anomaly_threshold")}
        if ml else None,
        "alert_suppression": suppression if isinstance(suppression, dict) else None,
        "exceptions": len(_list(extra.get("exceptions_list"))),
        "queries": [{"language": str(q.get("language") or ""),
                     "language_label": language_label(str(q.get("language") or "")),
                     "query": str(q.get("query") or "")}
                    for q in _list(extra.get("queries")) if isinstance(q, dict)],
        "hunt_notes": [str(n) for n in _list(extra.get("notes"))],
        "note": extra.get("note") if isinstance(extra.get("note"), str) else None,
        "setup": extra.get("setup") if isinstance(extra.get("setup"), str) else None,
    }


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
