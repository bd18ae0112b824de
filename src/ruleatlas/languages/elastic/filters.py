"""Kibana filters of a rule (``[[rule.filters]]``): Query DSL clauses AND-ed with the query.

21 corpus rules exclude paths this way (``{"meta": {"negate": true}, "query": {"wildcard":
{"file.path": {"value": "?:\\\\ProgramData\\\\...\\\\*", "case_insensitive": true}}}}``), so the
clauses are part of what the rule matches. Each clause kind is one entry of :data:`CLAUSES`:

* ``wildcard``: a ``wildcard`` predicate, ``*`` any run and ``?`` one character, ``\\`` escapes
  the next character (Elasticsearch's wildcard syntax); ``case_insensitive`` -> not cased;
* ``exists`` (also as ``query.exists``): an ``exists`` predicate.

``meta.negate`` wraps the clause in ``Not``; ``meta.disabled`` filters are skipped (Kibana does
not apply them) and named in a note. Any other clause stays :class:`Opaque` with its JSON and an
``unsupported`` problem.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from ruleatlas.model import (
    Node,
    Not,
    Op,
    Opaque,
    Pattern,
    Predicate,
    Problem,
    Stage,
    StageKind,
    conjoin,
)
from ruleatlas.model import Wild as W

COMMAND = "filters"


def wildcard_pattern(value: str) -> Pattern:
    """An Elasticsearch wildcard value: ``*`` ``?`` wildcards, ``\\x`` the literal x."""
    parts: list[str | W] = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            parts.append(value[i + 1])
            i += 2
            continue
        parts.append(W.ANY if ch == "*" else W.ONE if ch == "?" else ch)
        i += 1
    return Pattern(tuple(parts))


def _wildcard(body: Any, stage: int, text: str) -> Node | None:
    if not isinstance(body, Mapping) or len(body) != 1:
        return None
    (field, spec), = body.items()
    if isinstance(spec, Mapping):
        value, cased = spec.get("value", spec.get("wildcard")), not spec.get("case_insensitive")
    else:
        value, cased = spec, True
    if not isinstance(value, str):
        return None
    pat = wildcard_pattern(value)
    lit = pat.literal()
    if lit is not None:
        return Predicate(str(field), Op.EQ, (lit,), cased=cased, stage=stage, text=text)
    return Predicate(str(field), Op.WILDCARD, (pat,), cased=cased, stage=stage, text=text)


def _exists(body: Any, stage: int, text: str) -> Node | None:
    if not isinstance(body, Mapping) or not isinstance(body.get("field"), str):
        return None
    return Predicate(body["field"], Op.EXISTS, (), stage=stage, text=text)


CLAUSES: dict[str, Callable[[Any, int, str], Node | None]] = {
    "wildcard": _wildcard,
    "exists": _exists,
}


def _clause(f: Mapping[str, Any]) -> Mapping[str, Any]:
    q = f.get("query")
    if isinstance(q, Mapping):
        return q
    return {k: v for k, v in f.items() if k not in ("meta", "$state", "query")}


def filters_stage(raw: Any, index: int) -> tuple[Stage, list[Problem]] | None:
    """The stage of a rule's Kibana filters (None when it has none)."""
    if not isinstance(raw, list) or not raw:
        return None
    nodes: list[Node | None] = []
    problems: list[Problem] = []
    notes: list[str] = []
    for f in raw:
        if not isinstance(f, Mapping):
            continue
        raw_meta = f.get("meta")
        meta: Mapping[str, Any] = raw_meta if isinstance(raw_meta, Mapping) else {}
        clause = _clause(f)
        text = json.dumps(clause, ensure_ascii=False)
        if meta.get("disabled"):
            notes.append(f"disabled filter not applied: {text}")
            continue
        kind = next(iter(clause), None) if len(clause) == 1 else None
        fn = CLAUSES.get(kind or "")
        node = fn(clause[kind], index, text) if fn is not None and kind else None
        if node is None:
            reason = f"Kibana filter clause {kind or sorted(clause)} is not supported"
            node = Opaque(text, reason, stage=index)
            problems.append(Problem(reason, "unsupported", code="kibana-filter"))
        nodes.append(Not(node) if meta.get("negate") else node)
    if not nodes and not notes:
        return None
    text = "\n".join(json.dumps(f, ensure_ascii=False) for f in raw)
    stage = Stage(index, COMMAND, text, StageKind.FILTER, condition=conjoin(nodes),
                  notes=("Kibana filters, AND-ed with the query", *notes))
    return stage, problems
