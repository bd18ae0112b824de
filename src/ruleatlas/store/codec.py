"""Rule records to JSON and back: how a whole :class:`Rule` is kept in ``rules.rule_json``.

Why keep the whole record: when a Splunk macro changes, every rule of that repository is
analyzed again, and reading the Rule back from the catalog is far cheaper than parsing its YAML
(and pySigma validation) again. JSON is written by orjson (several times faster
than ``json``; compact separators, so readers scanning ``rule_json`` for ``"tests":[{`` must
accept both spellings, as ``store.search`` does).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import orjson

from ruleatlas.model import Rule, TestRef

_RULE_FIELDS = tuple(f.name for f in fields(Rule))
_TUPLE_FIELDS = frozenset(
    {"references", "falsepositives", "attack", "tags", "data_sources", "stories"}
)
_TEST_FIELDS = tuple(f.name for f in fields(TestRef))


def _default(o: Any) -> Any:
    """Anything a YAML loader may leave behind (dates, sets) becomes text, never an error."""
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    return str(o)


def rule_to_dict(rule: Rule) -> dict[str, Any]:
    d: dict[str, Any] = {}
    for name in _RULE_FIELDS:
        v = getattr(rule, name)
        if name == "tests":
            v = [{k: getattr(t, k) for k in _TEST_FIELDS} for t in v]
        elif name in _TUPLE_FIELDS:
            v = list(v)
        elif isinstance(v, Mapping):
            v = dict(v)
        d[name] = v
    return d


def rule_to_json(rule: Rule) -> str:
    return dumps(rule_to_dict(rule))


def rule_from_dict(d: Mapping[str, Any]) -> Rule:
    kw: dict[str, Any] = {k: d[k] for k in _RULE_FIELDS if k in d}
    for name in _TUPLE_FIELDS:
        if name in kw:
            kw[name] = tuple(kw[name] or ())
    kw["tests"] = tuple(
        TestRef(**{k: t.get(k) for k in _TEST_FIELDS if k in t}) for t in kw.get("tests") or ()
    )
    kw["logsource"] = dict(kw.get("logsource") or {})
    kw["extra"] = dict(kw.get("extra") or {})
    return Rule(**kw)


def rule_from_json(text: str) -> Rule:
    return rule_from_dict(json.loads(text))


def dumps(v: Any) -> str:
    """Compact JSON by orjson; ``json`` for what orjson refuses (integers beyond 64 bits)."""
    try:
        return orjson.dumps(v, default=_default, option=orjson.OPT_NON_STR_KEYS).decode()
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(v, default=_default, ensure_ascii=False)


def loads(text: str | None, default: Any = None) -> Any:
    if not text:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default
