"""Sigma detections and conditions into the shared predicate model.

pySigma does the Sigma reading: each detection item is built with
``SigmaDetectionItem.from_mapping``/``from_value`` (field, modifier list, values parsed into
``SigmaString`` parts with Sigma's escapes resolved), and each condition string is parsed by
pySigma's condition grammar (``SigmaCondition.parse(postprocess=False)``) with its selectors
(``1 of sel*``, ``all of them``) resolved by ``ConditionSelector.resolve_referenced_detections``
(so ``them`` skips ``_`` identifiers and ``1 of selection`` is an exact name, as pySigma does).

What we add: values *as written* (``original_value``, before the modifiers expand them), the
modifiers read by our own registry (``modifiers.py``) into operator/transforms/flags, YAML
positions, and isolation: items are built one by one, so one bad item (unknown modifier, value
pySigma rejects) becomes an ``Opaque`` node with a located problem while the rest of the rule is
lowered. The structure follows ``SigmaDetection.from_definition``: a mapping is the AND of its
items, a list of plain values one any-of item, any other list the OR of its elements.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, cast

import yaml
from sigma.conditions import (
    ConditionAND,
    ConditionIdentifier,
    ConditionItem,
    ConditionNOT,
    ConditionOR,
    ConditionSelector,
    SigmaCondition,
)
from sigma.exceptions import SigmaError
from sigma.modifiers import modifier_mapping
from sigma.rule.detection import EmptySigmaDetections, SigmaDetectionItem
from sigma.types import (
    Placeholder,
    SigmaBool,
    SigmaNull,
    SigmaNumber,
    SigmaString,
    SigmaType,
    SpecialChars,
    sigma_type,
)

from ruleatlas import model as M
from ruleatlas.caching import (
    SIGMA_CONDITIONS,
    SIGMA_SELECTIONS,
    SIGMA_STRINGS,
    BoundedCache,
)
from ruleatlas.languages.sigma.modifiers import ItemSpec, build_spec, pysigma_key, read_key
from ruleatlas.languages.sigma.spans import Block, mapping_pairs, scalar_text, sequence_items
from ruleatlas.model import Op

_WILD = {SpecialChars.WILDCARD_MULTI: M.Wild.ANY, SpecialChars.WILDCARD_SINGLE: M.Wild.ONE}
_PLAIN = (str, int, float, bool, type(None))
# Keys of a detection block that are not named detections.
RESERVED = frozenset({"condition", "timeframe"})


# Modifiers that only move wildcards around a string or flag the item: pySigma applying them to
# string values cannot fail, so those items are built without applying them (the values as
# written are all we read). Anything else goes through pySigma's full checks.
_SAFE_ON_STRINGS = frozenset({"contains", "startswith", "endswith", "all", "cased", "windash",
                              "expand"})


_SPECIAL = re.compile(r"[*?\\]")


@lru_cache(maxsize=SIGMA_STRINGS)
def _sigma_str(v: str) -> SigmaString:
    """``sigma_type(v)`` for a str, shared per distinct string (items built without applying
    modifiers never mutate their values). A non-empty string without ``* ? \\`` parses to the
    single part ``[v]`` in pySigma, which ``from_str`` builds without the per-character scan."""
    return SigmaString.from_str(v) if v and not _SPECIAL.search(v) else SigmaString(v)


def _build_item(key: Any, fname: str | None, names: list[str], val: Any) -> SigmaDetectionItem:
    """pySigma's detection item for ``key: val`` (``key`` None: a keyword item)."""
    if key is None:
        return SigmaDetectionItem.from_value(val)
    vals = val if isinstance(val, list) else [val]
    if not names or (
        _SAFE_ON_STRINGS.issuperset(names) and all(type(v) is str for v in vals)
    ):
        mods = [modifier_mapping[n] for n in names]
        values = [_sigma_str(v) if type(v) is str else sigma_type(v) for v in vals]
        return SigmaDetectionItem(fname, mods, values, auto_modifiers=False)
    return SigmaDetectionItem.from_mapping(pysigma_key(key), val)


_CONDITIONS: BoundedCache[str, Any] = BoundedCache(SIGMA_CONDITIONS)


def _parse_condition(text: str, dets: EmptySigmaDetections) -> Any:
    """pySigma's parse tree of a condition string (not post-processed), or the SigmaError.

    The tree is only read, never post-processed (post-processing mutates), so one parse per
    distinct string serves every rule: SigmaHQ rules share a few hundred condition strings.
    """
    hit = _CONDITIONS.get(text)
    if hit is None:
        try:
            hit = SigmaCondition(text, dets).parse(postprocess=False)
        except SigmaError as exc:
            hit = exc
        _CONDITIONS.put(text, hit)
    return hit


_SELECTED: BoundedCache[tuple[str, tuple[str, ...]], list[ConditionIdentifier]] = BoundedCache(
    SIGMA_SELECTIONS)


def _selected(c: ConditionSelector, dets: EmptySigmaDetections) -> list[ConditionIdentifier]:
    """pySigma's resolution of ``1 of pattern`` over these names, memoised (it compiles a regex
    per call; rules share patterns and names)."""
    key = (c.pattern, tuple(dets.detections))
    hit = _SELECTED.get(key)
    if hit is None:
        hit = c.resolve_referenced_detections(dets)
        _SELECTED.put(key, hit)
    return hit


def or_of(nodes: list[M.Node]) -> M.Node:
    return nodes[0] if len(nodes) == 1 else M.Or(tuple(nodes))


def and_of(nodes: list[M.Node]) -> M.Node:
    return nodes[0] if len(nodes) == 1 else M.And(tuple(nodes))


def string_value(s: SigmaString) -> str | M.Pattern:
    """A SigmaString as written: plain str without wildcards, else a Pattern. ``expand``
    placeholders (pySigma inserts them in place) are put back as ``%name%`` text."""
    parts: list[str | M.Wild] = []
    wild = False
    for p in s.s:
        if isinstance(p, str):
            parts.append(p)
        elif isinstance(p, SpecialChars):
            parts.append(_WILD[p])
            wild = True
        elif isinstance(p, Placeholder):
            parts.append(f"%{p.name}%")
    if not wild:
        return "".join(cast(list[str], parts))
    return M.Pattern(tuple(parts))


def compact_text(block: Block, key: str | None, vnode: yaml.Node | None, value: Any) -> str:
    """One-line display of an item: ``Field|mods: value`` or ``Field|mods: ['a', 'b']`` with each
    scalar as written (quotes kept); multi-line scalars fall back to their Python repr."""

    def scalar(n: yaml.Node, v: Any) -> str:
        t = scalar_text(block, n) if isinstance(n, yaml.ScalarNode) and block.exact else None
        return t if t is not None and "\n" not in t else repr(v)

    if vnode is None:
        vt = repr(value)
    elif isinstance(vnode, yaml.SequenceNode) and isinstance(value, list):
        vt = "[" + ", ".join(scalar(n, v) for n, v in zip(vnode.value, value, strict=False)) + "]"
    else:
        vt = scalar(vnode, value)
    return vt if key is None else f"{key}: {vt}"


@dataclass
class Lowerer:
    """Lowers the detections of one block; collects problems instead of raising."""

    block: Block
    problems: list[M.Problem] = field(default_factory=list)

    # ---- problems -------------------------------------------------------------------------

    def problem(self, message: str, severity: str, span: M.Span | None, code: str) -> None:
        self.problems.append(M.Problem(message, severity, span, code))

    def opaque(self, text: str, reason: str, stage: int, span: M.Span | None, severity: str,
               code: str) -> M.Opaque:
        self.problem(reason, severity, span, code)
        return M.Opaque(text, reason, stage=stage, span=span)

    # ---- detections -----------------------------------------------------------------------

    def detection(self, defn: Any, node: yaml.Node | None, stage: int) -> M.Node:
        """One named detection (or a nested element of one) into a tree."""
        if isinstance(defn, dict):
            if not defn:
                return self.opaque("{}", "empty detection", stage, self.block.span(node),
                                   "error", "empty-detection")
            pairs = mapping_pairs(node)
            items: list[M.Node] = []
            for key, val in defn.items():
                kn, vn = pairs.get(key) or pairs.get(str(key)) or (None, None)
                items.append(self.item(key, val, kn, vn, stage))
            return and_of(items)
        if isinstance(defn, list):
            if not defn:
                return self.opaque("[]", "empty detection", stage, self.block.span(node),
                                   "error", "empty-detection")
            if all(isinstance(v, _PLAIN) for v in defn):
                return self.item(None, defn, None, node, stage)
            subs = sequence_items(node)
            return or_of([
                self.detection(el, subs[i] if i < len(subs) else None, stage)
                for i, el in enumerate(defn)
            ])
        if isinstance(defn, _PLAIN):
            return self.item(None, defn, None, node, stage)
        return self.opaque(repr(defn), f"unsupported detection value {type(defn).__name__}",
                           stage, self.block.span(node), "error", "bad-detection")

    def item(self, key: Any, val: Any, knode: yaml.Node | None, vnode: yaml.Node | None,
             stage: int) -> M.Node:
        """One ``Field|mods: values`` (or field-less keyword) item into predicates."""
        text = compact_text(self.block, None if key is None else str(key), vnode, val)
        span = self.block.span(knode or vnode, vnode)
        fname: str | None = None
        names: list[str] = []
        unknown: list[str] = []
        if key is None:
            pass
        elif not isinstance(key, str):
            return self.opaque(text, f"detection key {key!r} is not a string", stage, span,
                               "error", "bad-key")
        else:
            fname, names, unknown = read_key(key)
        if unknown:
            where = self.block.span(knode) or span
            reason = "unknown modifier " + ", ".join(f"'{m}'" for m in unknown)
            return self.opaque(text, reason, stage, where, "unsupported", "unknown-modifier")
        spec = build_spec(fname, names)
        if spec.unsupported:
            return self.opaque(text, "; ".join(spec.unsupported), stage, span, "unsupported",
                               "unsupported-modifier")
        try:
            di = _build_item(key, fname, names, val)
        except Exception as exc:  # recorded: SigmaError, or pySigma tripping on odd input
            msg = str(exc).split(" in ")[0] if str(exc) else type(exc).__name__
            return self.opaque(text, f"pySigma rejects the item: {msg}", stage, span, "error",
                               "pysigma")
        for note in spec.notes:
            self.problem(note, "warning", span, "modifier-note")
        values = di.original_value if di.original_value is not None else di.value
        return self.predicates(spec, values, text, span, stage)

    def predicates(self, spec: ItemSpec, values: list[SigmaType], text: str,
                   span: M.Span | None, stage: int) -> M.Node:
        def pred(op: Op, vals: tuple[M.Value, ...], negated: bool = spec.negated) -> M.Predicate:
            return M.Predicate(
                spec.field, op, vals, negated=negated, match_all=spec.match_all,
                transforms=tuple(spec.transforms), cased=spec.cased, stage=stage, text=text,
                span=span,
            )

        if spec.kind == "exists":
            flag = values[0] if values else None
            if not isinstance(flag, SigmaBool) or len(values) != 1:
                return self.opaque(text, "'exists' needs one boolean value", stage, span,
                                   "error", "bad-exists")
            return pred(Op.EXISTS, (), negated=(not flag.boolean) != spec.negated)
        if not values:  # `Field: []` means the field is null, as pySigma reads it
            if spec.field is None:
                return self.opaque(text, "keyword detection without values", stage, span,
                                   "error", "empty-detection")
            return pred(Op.EQ, (None,))
        converted = [self.value(spec, v) for v in values]
        op = spec.op or (Op.KEYWORD if spec.field is None else Op.EQ)
        if op is not Op.EQ:
            return pred(op, tuple(converted))
        # Plain values: literal ones compare with EQ, wildcard ones with WILDCARD; a list mixing
        # both becomes one predicate per operator, linked as the list is (any/all).
        plain = tuple(v for v in converted if not isinstance(v, M.Pattern))
        wild = tuple(v for v in converted if isinstance(v, M.Pattern))
        if not wild:
            return pred(Op.EQ, plain)
        if not plain:
            return pred(Op.WILDCARD, wild)
        parts: list[M.Node] = [pred(Op.EQ, plain), pred(Op.WILDCARD, wild)]
        if spec.negated:  # not(any of a, b) = not a and not b
            return M.And(tuple(parts)) if not spec.match_all else M.Or(tuple(parts))
        return M.And(tuple(parts)) if spec.match_all else M.Or(tuple(parts))

    @staticmethod
    def value(spec: ItemSpec, v: SigmaType) -> M.Value:
        if isinstance(v, SigmaNull):
            return None
        if isinstance(v, SigmaBool):
            return v.boolean
        if isinstance(v, SigmaNumber):
            return v.number
        if isinstance(v, SigmaString):
            if spec.kind == "regex":
                return M.Regex(v.original, frozenset(spec.flags))
            if spec.kind == "cidr":
                return v.original
            sv = string_value(v)
            if spec.kind == "fieldref":
                return M.FieldRef(sv if isinstance(sv, str) else sv.display())
            return sv
        return str(v)  # pragma: no cover - pySigma original values are the types above

    # ---- condition ------------------------------------------------------------------------

    def condition(self, text: str, trees: dict[str, M.Node], names: list[str],
                  span: M.Span | None, stage: int) -> M.Node:
        """Parse one condition string with pySigma and inline the detection trees."""
        dets = EmptySigmaDetections(detections=cast(Any, dict.fromkeys(names)), condition=[text])
        parsed = _parse_condition(text, dets)
        if isinstance(parsed, SigmaError):
            return self.opaque(text, f"condition does not parse: {parsed}", stage, span, "error",
                               "condition")
        return self.cond_node(parsed, trees, dets, text, span, stage)

    def cond_node(self, c: Any, trees: dict[str, M.Node], dets: EmptySigmaDetections,
                  text: str, span: M.Span | None, stage: int) -> M.Node:
        if isinstance(c, ConditionIdentifier):
            tree = trees.get(c.identifier)
            if tree is None:
                return self.opaque(c.identifier, f"detection '{c.identifier}' is not defined",
                                   stage, span, "error", "undefined-detection")
            return tree
        if isinstance(c, ConditionSelector):
            ids = _selected(c, dets)
            label = f"{c.args[0]} of {c.pattern}"
            if not ids:
                return self.opaque(label, f"'{label}' matches no detection", stage, span,
                                   "error", "empty-selector")
            subs = [self.cond_node(i, trees, dets, text, span, stage) for i in ids]
            return and_of(subs) if c.cond_class is ConditionAND else or_of(subs)
        if isinstance(c, ConditionNOT):
            return M.Not(self.cond_node(c.args[0], trees, dets, text, span, stage))
        if isinstance(c, (ConditionAND, ConditionOR)):
            return M.connective(M.And if isinstance(c, ConditionAND) else M.Or,
                                (self.cond_node(a, trees, dets, text, span, stage)
                                 for a in c.args))
        if isinstance(c, ConditionItem):  # pragma: no cover - future pySigma node types
            return self.opaque(text, f"condition node {type(c).__name__}", stage, span,
                               "unsupported", "condition")
        return self.opaque(text, f"unexpected condition element {c!r}", stage, span, "error",
                           "condition")


def detection_stages(lw: Lowerer, data: dict[str, Any], skip: frozenset[str] = RESERVED,
                     ) -> tuple[list[M.Stage], dict[str, M.Node], list[str]]:
    """One FILTER stage per named detection, in document order."""
    block = lw.block
    pairs = mapping_pairs(block.node)
    stages: list[M.Stage] = []
    trees: dict[str, M.Node] = {}
    names: list[str] = []
    for name, defn in data.items():
        if name in skip:
            continue
        kn, vn = pairs.get(name) or pairs.get(str(name)) or (None, None)
        idx = len(stages)
        sname = str(name)
        if "|" in sname:  # e.g. `selection|endswith:` -- pySigma ignores it, so do we, loudly
            lw.problem(f"detection name '{sname}' carries modifiers; modifiers apply to fields, "
                       "so they have no effect here", "warning", block.span(kn), "modifier-on-name")
        tree = lw.detection(defn, vn, idx)
        trees[sname] = tree
        names.append(sname)
        stages.append(M.Stage(
            index=idx,
            command="filter" if sname.startswith("filter") else "selection",
            text=block.text(kn, vn) or f"{sname}: {defn!r}",
            kind=M.StageKind.FILTER,
            condition=tree,
            name=sname,
            span=block.span(kn, vn),
        ))
    return stages, trees, names


def condition_texts(lw: Lowerer, data: dict[str, Any]) -> Iterator[tuple[str, M.Span | None]]:
    """Each condition string with its span (a list of conditions gives several)."""
    pairs = mapping_pairs(lw.block.node)
    kn, vn = pairs.get("condition") or (None, None)
    cond = data.get("condition")
    if isinstance(cond, list):
        subs = sequence_items(vn)
        for i, c in enumerate(cond):
            yield str(c), lw.block.span(subs[i] if i < len(subs) else kn)
    elif cond is not None:
        yield str(cond), lw.block.span(kn, vn)

