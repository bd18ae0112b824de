"""``| tstats ... from datamodel=Endpoint.Processes`` on raw events: CIM fields computed.

Splunk answers a ``tstats`` search from the accelerated CIM datamodel, whose fields the TAs
compute from raw events (``Processes.process_name`` is the last path component of Sysmon's
``Image``). Raw EVTX / JSON events have no datamodel, so the engine computes the fields it needs
from the table in ``datamodels.yaml`` and runs the ``where`` and the aggregation on them, as a
pipeline step (``engine.pipeline``) for the events routed to the datamodel's event kinds.

Three nodes are covered (Endpoint.Processes, Registry, Filesystem: 749 of ESCU's 895 tstats
searches); a ``where`` on a field the table does not compute makes the rule not runnable with
the field named, never a silent miss. A ``by`` field the table does not compute takes the
search's ``fillnull_value`` (ESCU's ``security_content_summariesonly`` macro sets ``null``), or
makes the rule not runnable when there is none (tstats would drop the row).

The pre-filter still works: a predicate on ``Processes.process_name`` anchors on the literal in
``Image`` or ``NewProcessName`` (a basename is a substring of its path).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from ruleatlas.coverage.routing import Route
from ruleatlas.model import Aggregate, And, Const, Node, Not, Or, Predicate

HIVES = {"HKLM": "HKEY_LOCAL_MACHINE", "HKU": "HKEY_USERS", "HKCU": "HKEY_CURRENT_USER",
         "HKCR": "HKEY_CLASSES_ROOT", "HKCC": "HKEY_CURRENT_CONFIG"}
INDEXED = {"host": ("Computer",), "_time": ()}  # tstats by-fields that are not datamodel fields


@dataclass(frozen=True, slots=True)
class FieldRule:
    """How one CIM field is computed: ``kind`` raw | basename | const | values | hive."""

    kind: str
    raws: tuple[str, ...] = ()
    const: Any = None
    mapping: Mapping[str, str] = field(default_factory=dict)

    @property
    def anchorable(self) -> bool:
        """Whether a literal of this field is a literal of the raw field (for the pre-filter)."""
        return self.kind in ("raw", "basename")


@lru_cache(maxsize=1)
def _raw() -> dict[str, Any]:
    text = resources.files("ruleatlas.engine").joinpath("datamodels.yaml").read_text("utf-8")
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}


@lru_cache(maxsize=1)
def table() -> dict[str, dict[str, FieldRule]]:
    out: dict[str, dict[str, FieldRule]] = {}
    for dm, fields in _raw().items():
        rules: dict[str, FieldRule] = {}
        for name, spec in (fields or {}).items():
            if name == "_events":
                continue
            if isinstance(spec, list):
                rules[name] = FieldRule("raw", tuple(spec))
            elif "basename" in spec:
                rules[name] = FieldRule("basename", tuple(spec["basename"]))
            elif "hive" in spec:
                rules[name] = FieldRule("hive", tuple(spec["hive"]))
            elif "const" in spec:
                rules[name] = FieldRule("const", const=spec["const"])
            elif "values" in spec:
                v = spec["values"]
                rules[name] = FieldRule("values", tuple(v["raw"]),
                                        mapping={str(k): str(x) for k, x in v["map"].items()})
        out[str(dm)] = rules
    return out


@lru_cache(maxsize=1)
def members() -> dict[str, frozenset[tuple[str, str]]]:
    """Per datamodel node, the event kinds ``(channel, id)`` whose events are its rows."""
    out: dict[str, frozenset[tuple[str, str]]] = {}
    for dm, f in _raw().items():
        kinds = set()
        for x in (f or {}).get("_events", ()):
            channel, event_id = str(x).rsplit(" ", 1)
            kinds.add((channel, event_id))
        out[str(dm)] = frozenset(kinds)
    return out


def dataset(dm: str) -> str:
    """``Endpoint.Processes`` -> ``Processes`` (the prefix of its field names)."""
    return dm.rsplit(".", 1)[-1]


def cim_field(name: str, dm: str) -> str | None:
    """``Processes.process_name`` -> ``process_name`` for ``Endpoint.Processes`` (prefix
    matched case-insensitively, as Splunk does); None for other names."""
    pre = dataset(dm) + "."
    if name.lower().startswith(pre.lower()):
        return name[len(pre):]
    return None


def rule_of(name: str, dm: str) -> FieldRule | None:
    if name in INDEXED:
        return FieldRule("raw", INDEXED[name]) if INDEXED[name] else None
    short = cim_field(name, dm)
    return table().get(dm, {}).get(short) if short is not None else None


def missing(names: list[str] | tuple[str, ...], dm: str) -> list[str]:
    """The names the table cannot compute (``_time`` is the event's own time)."""
    return [n for n in names if n != "_time" and rule_of(n, dm) is None]


def _basename(v: str) -> str:
    return re.split(r"[\\/]", v)[-1]


def _compute(rule: FieldRule, f: Mapping[str, Any], fm: Mapping[str, str]) -> Any:
    if rule.kind == "const":
        return rule.const
    v = None
    for r in rule.raws:
        v = f.get(fm.get(r, r))
        if v is not None:
            break
    if v is None:
        return None
    if rule.kind == "basename":
        return _basename(str(v))
    if rule.kind == "hive":
        head = str(v).split("\\", 1)[0].upper()
        return HIVES.get(head, head)
    if rule.kind == "values":
        return rule.mapping.get(str(v))
    return v


def derive(dm: str, names: list[str], fm: Mapping[str, str] | None = None,
           fill: tuple[tuple[str, Any], ...] = ()) -> Callable[[dict[str, Any]], bool]:
    """A pipeline operation writing the datamodel fields ``names`` (as the rule spells them)
    into an event's fields (the route, :func:`route`, sends only the datamodel's rows);
    ``fill``: by-fields given the search's ``fillnull_value`` when nothing computes them."""
    fmap = dict(fm or {})
    rules = [(n, r) for n in names if (r := rule_of(n, dm)) is not None]

    def op(f: dict[str, Any]) -> bool:
        for n, r in rules:
            v = _compute(r, f, fmap)
            if v is not None:
                f[n] = v
        for n, value in fill:
            if f.get(n) is None:
                f[n] = value
        return True

    return op


def anchor_view(node: Node | None, dm: str) -> Node | None:
    """The tree the pre-filter anchors on: a predicate on a path-like datamodel field becomes
    the same predicate on each raw field it comes from (any of them); one on a computed field
    (``action``) becomes true (no anchor). Only for anchors: the matcher reads the real
    fields."""
    if node is None:
        return None
    if isinstance(node, Predicate):
        r = rule_of(node.field, dm) if node.field else None
        if node.field is None or cim_field(node.field, dm) is None:
            return node
        if r is None or not r.anchorable or not r.raws:
            return Const(True)
        alts = [Predicate(raw, node.op, node.values, negated=node.negated,
                          match_all=node.match_all, transforms=node.transforms,
                          cased=node.cased) for raw in r.raws]
        return alts[0] if len(alts) == 1 else Or(tuple(alts))
    if isinstance(node, And):
        return And(tuple(anchor_view(a, dm) or Const(True) for a in node.args))
    if isinstance(node, Or):
        return Or(tuple(anchor_view(a, dm) or Const(True) for a in node.args))
    if isinstance(node, Not):
        return Const(True)
    return node


def route(r: Route, dm: str) -> Route:
    """``r`` narrowed to the event kinds that are rows of ``dm``: a rule whose data sources
    name Sysmon 1 and 13 (for a join) still reads only Sysmon 1 for Endpoint.Processes; a
    registry event has an ``Image`` too, but it is no process row."""
    kinds = members().get(dm, frozenset())
    keep = kinds if r.keys is None else frozenset(
        k for k in kinds if k in r.keys or (k[0], None) in r.keys)
    return replace(r, keys=keep)


def tstats_problem(step: Aggregate, where_fields: list[str]) -> str | None:
    """Why a tstats step cannot run on raw events, or None."""
    dm = step.datamodel or ""
    if dm not in table():
        return (f"tstats on datamodel {dm or '(none)'}: the engine computes only "
                + ", ".join(sorted(table())) + " from raw events")
    if step.nodename:
        return f"tstats nodename={step.nodename} is not computed from raw events"
    opts = {k.lower(): v.lower() for k, v in step.options}
    if opts.get("prestats") in ("t", "true", "1") or opts.get("append") in ("t", "true", "1"):
        return "tstats prestats/append is not supported"
    bad = missing(where_fields, dm)
    if bad:
        return (f"tstats where reads {', '.join(bad)}, which the engine does not compute "
                "from raw events")
    if "fillnull_value" not in opts:
        bad_by = missing(list(step.by), dm)
        if bad_by:
            return (f"tstats by {', '.join(bad_by)}: not computed from raw events, and no "
                    "fillnull_value (tstats would drop every row)")
    return None
