"""The rule document: one dict per rule, the contract of every front end.

Why one function: the CLI, the web page, its JSON twin and the static export must agree on what a
rule is; each reads this document and renders it, none queries the store on its own for a rule.
Keys (see docs/catalog.md): the issue's contract (``id source title status severity author path
source_url description attack events group_by body stages indicators``) plus the rest of the
rule record. Analysis trees are kept as their JSON form (``tree``) next to a flat, display-ready
predicate list, so a simple front end never walks trees.
"""

from __future__ import annotations

from typing import Any

from ruleatlas.model import (
    Pattern,
    Wild,
    analysis_from_dict,
    node_to_dict,
    sub_analyses,
    value_from_json,
    value_text,
)
from ruleatlas.store.catalog import Catalog
from ruleatlas.store.indicators import rule_indicators

DOCUMENT_KEYS = (
    "id", "source", "title", "status", "severity", "author", "path", "source_url",
    "description", "attack", "events", "group_by", "body", "stages", "indicators",
    "references", "falsepositives", "how_to_implement", "date", "modified", "version", "type",
    "language", "query", "data_sources", "stories", "tests", "test_result", "problems",
    "logsource", "tags", "extra", "sequence",
)


def display_value(v: Any) -> str:
    """A value's display text: patterns with their ``*``/``?`` (escaped only when a literal part
    itself holds one), regexes as ``/re/flags``, ``null``/``true``/``false``."""
    try:
        val = value_from_json(v)
    except (ValueError, KeyError, TypeError):
        return str(v)
    if isinstance(val, Pattern):
        if any(isinstance(p, str) and ("*" in p or "?" in p) for p in val.parts):
            return val.display()
        return "".join(p.value if isinstance(p, Wild) else p for p in val.parts)
    return value_text(val)


def flat_predicates(tree: Any) -> list[dict[str, Any]]:
    """Every predicate of a stage's tree (JSON form) with its effective polarity; generic
    conditions and opaque parts are listed too (``op`` = ``condition`` / ``opaque``)."""
    out: list[dict[str, Any]] = []

    def rec(n: Any, positive: bool) -> None:
        if not isinstance(n, dict):
            return
        t = n.get("type")
        if t == "predicate":
            out.append({
                "field": n.get("field"),
                "op": n.get("op"),
                "values": [display_value(v) for v in n.get("values", [])],
                "negated": bool(n.get("negated")) != (not positive),
                "match_all": bool(n.get("match_all")),
                "transforms": list(n.get("transforms", [])),
                "cased": bool(n.get("cased")),
                "datamodel": n.get("datamodel"),
                "phase": n.get("phase", "event"),
                "text": n.get("text"),
            })
        elif t in ("and", "or"):
            for a in n.get("args", []):
                rec(a, positive)
        elif t == "not":
            rec(n.get("arg"), not positive)
        elif t in ("condition", "opaque"):
            out.append({
                "field": None, "op": t, "values": [n.get("text", "")],
                "negated": not positive, "match_all": False, "transforms": [], "cased": False,
                "datamodel": None, "phase": n.get("phase", "event"), "text": n.get("text"),
                "reason": n.get("reason"), "fields": n.get("fields", []),
            })

    rec(tree, True)
    return out


_OP_TEXT = {"eq": "=", "ne": "!=", "gt": ">", "ge": ">=", "lt": "<", "le": "<=", "in": "IN"}


def expression(tree: Any) -> str:
    """A stage's tree as one readable boolean expression (``(a = 1 OR a = 2) AND b IN (x)``),
    for front ends that show a condition as text rather than as a tree."""
    if not isinstance(tree, dict):
        return ""
    t = tree.get("type")
    if t == "predicate":
        vals = [display_value(v) for v in tree.get("values", [])]
        field, op = tree.get("field"), str(tree.get("op"))
        if field is None:
            body = " OR ".join(f'"{v}"' for v in vals) or op
        elif op == "exists":
            body = f"{field} exists"
        elif op == "in" or len(vals) > 1:
            joiner = " AND " if tree.get("match_all") else ", "
            body = f"{field} {_OP_TEXT.get(op, op)} ({joiner.join(vals)})"
        else:
            body = f"{field} {_OP_TEXT.get(op, op)} {vals[0] if vals else ''}".rstrip()
        if tree.get("transforms"):
            body += f" [{'|'.join(tree['transforms'])}]"
        return f"NOT ({body})" if tree.get("negated") else body
    if t in ("and", "or"):
        word = " AND " if t == "and" else " OR "
        parts = []
        for a in tree.get("args", []):
            text = expression(a)
            if isinstance(a, dict) and a.get("type") in ("and", "or") and a.get("type") != t:
                text = f"({text})"
            parts.append(text)
        return word.join(parts)
    if t == "not":
        return f"NOT ({expression(tree.get('arg'))})"
    if t == "const":
        return "true" if tree.get("value") else "false"
    if t == "condition":
        return str(tree.get("text", ""))
    if t == "opaque":
        return f"<opaque: {tree.get('text', '')}>"
    return ""


def _subsearch_predicates(analysis: dict[str, Any]) -> dict[int, list[dict[str, Any]]]:
    """Predicates of the nested searches (``model.sub_analyses``: a ``join``'s subsearch) by the
    stage of the command holding them, each marked ``"subsearch": True``."""
    if not analysis.get("stages"):
        return {}
    out: dict[int, list[dict[str, Any]]] = {}
    for sub in sub_analyses(analysis_from_dict(analysis)):
        rows = out.setdefault(sub.stage, [])
        for st in sub.analysis.stages:
            rows.extend({**p, "subsearch": True}
                        for p in flat_predicates(node_to_dict(st.condition)))
    return out


def _stages(analysis: dict[str, Any] | None) -> list[dict[str, Any]]:
    out = []
    subs = _subsearch_predicates(analysis or {})
    for s in (analysis or {}).get("stages", []):
        tree = s.get("condition")
        out.append({
            "index": s.get("index"),
            "command": s.get("command"),
            "text": s.get("text"),
            "expanded": s.get("expanded"),
            "kind": s.get("kind"),
            "name": s.get("name"),
            "phase": s.get("phase", "event"),
            "by": list(s.get("by", [])),
            "notes": list(s.get("notes", [])),
            "predicates": flat_predicates(tree) + subs.get(s.get("index", -1), []),
            "expression": expression(tree),
            "tree": tree,
        })
    return out


def _step(i: int, st: Any) -> dict[str, Any]:
    tree = st.get("condition")
    return {"index": i, "category": st.get("category"), "by": list(st.get("by") or []),
            "runs": st.get("runs"), "missing": bool(st.get("missing")), "text": st.get("text"),
            "predicates": flat_predicates(tree), "expression": expression(tree), "tree": tree}


def _sequence(analysis: dict[str, Any] | None) -> dict[str, Any] | None:
    """An event sequence (EQL ``sequence``/``sample``) as ordered steps, each with its own
    join keys and its predicates; None when the rule is not one."""
    seq = (analysis or {}).get("sequence")
    if not isinstance(seq, dict):
        return None
    until = seq.get("until")
    return {
        "kind": seq.get("kind"),
        "by": list(seq.get("by") or []),
        "maxspan": seq.get("maxspan"),
        "maxspan_text": seq.get("maxspan_text"),
        "steps": [_step(i, st) for i, st in enumerate(seq.get("steps") or [], 1)],
        "until": _step(0, until) if isinstance(until, dict) else None,
    }


def _test_result(catalog: Catalog, rule_id: str) -> dict[str, Any] | None:
    got = catalog.test_results(rule_id)
    if not got:
        return None
    r = got[0]
    return {"status": r.status, "matched": r.matched, "expected": r.expected,
            "reason": r.reason, "detail": r.detail, "ran_at": r.ran_at}


def rule_document(catalog: Catalog, rule_id: str) -> dict[str, Any]:
    """The document of one rule (an id, or a unique title). Raises ``KeyError``
    (``store.RuleNotFound``) for an unknown rule, ``CatalogError`` for an ambiguous title."""
    stored = catalog.get_rule(rule_id)
    r = stored.rule
    analysis = stored.analysis or {}
    return {
        "id": r.id,
        "source": r.source,
        "title": r.title,
        "status": r.status,
        "severity": r.severity,
        "author": r.author,
        "path": r.path,
        "source_url": r.source_url,
        "description": r.description,
        "attack": catalog.rule_attack(r.id),
        "events": catalog.rule_events(r.id),
        "group_by": list(stored.group_by),
        "body": r.body,
        "stages": _stages(analysis),
        "indicators": rule_indicators(catalog.conn, r.id),
        "references": list(r.references),
        "falsepositives": list(r.falsepositives),
        "how_to_implement": r.how_to_implement,
        "date": r.date,
        "modified": r.modified,
        "version": r.version,
        "type": r.type,
        "language": r.language,
        "query": r.query,
        "data_sources": catalog.rule_column(r.id, "rule_data_sources", "data_source"),
        "stories": catalog.rule_column(r.id, "rule_stories", "story"),
        "tests": [{"name": t.name, "kind": t.kind, "path": t.path, "source": t.source,
                   "sourcetype": t.sourcetype, "match_count": t.match_count} for t in r.tests],
        "test_result": _test_result(catalog, r.id),
        "problems": list(analysis.get("problems", [])),
        "logsource": dict(r.logsource),
        "tags": list(r.tags),
        "extra": dict(r.extra),
        "sequence": _sequence(analysis),
    }
