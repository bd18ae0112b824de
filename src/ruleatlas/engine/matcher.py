"""Literal pre-filtering: which rules can possibly match an event, found in one pass per field.

Most rules require some literal text in some field (``Image|endswith: '\\rundll32.exe'``,
``CommandLine|contains: 'sekurlsa'``). :func:`anchors` computes, for a compiled tree, a set of
``(event field, lowered literal)`` pairs of which at least one must occur as a substring of the
field's lowered text whenever the rule matches (a *necessary* condition, so the filter never
hides a match). :class:`Prefilter` puts the anchors of many rules into one Aho-Corasick automaton
per field (``pyahocorasick``): one scan of an event's ``CommandLine`` finds every rule that has a
literal in it. Only those rules, plus the rules without anchors, run their full matcher.

This is what Chainsaw/Hayabusa-style engines do in Rust; the automaton keeps it linear in the
text, not in the number of rules.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import ahocorasick

from ruleatlas.caching import FIELD_PREFILTER, KEYWORD_GATES, BoundedCache
from ruleatlas.engine.sigma_semantics import TransformError, as_pattern, expand, to_text
from ruleatlas.model import And, Const, Node, Not, Op, Or, Pattern, Predicate, Regex

Anchor = tuple[str, str]  # (event field, lowered literal)
ALL_FIELDS = "\x00*"  # anchor field of keywords: the text of every field, joined

# Fields the route already decides (every event a rule sees has them): useless as anchors.
ROUTE_FIELDS = frozenset({"EventID", "EventCode", "Channel", "Provider_Name", "source",
                          "sourcetype"})
_ANCHOR_OPS = {Op.EQ, Op.IN, Op.CONTAINS, Op.STARTSWITH, Op.ENDSWITH, Op.WILDCARD}


def _literal_of(v: Any) -> str | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return to_text(v)
    if isinstance(v, (str, Pattern)):
        p = as_pattern(v)
        best = max((x for x in p.parts if isinstance(x, str)), key=len, default="")
        return best.lower() or None
    return None


def regex_literal(pattern: str) -> str | None:
    """The longest literal every match of ``pattern`` must contain (lowered), or None.

    Reads Python's own regex parse: runs of LITERAL at the top level, inside groups and inside
    repeats of at least one; alternations, classes and optional parts break a run."""
    try:
        from re import _parser  # type: ignore[attr-defined]

        tree = _parser.parse(pattern)
    except (re.error, RecursionError, OverflowError):
        return None  # no literal to pre-filter on; compiling the pattern reports the error
    c = _parser  # opcode names live on the parser module's constants
    lit_op, sub_op = c.LITERAL, c.SUBPATTERN
    reps = (c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", None))
    runs: list[str] = []

    def walk(seq: Any) -> None:
        cur: list[str] = []
        for op, av in seq:
            if op is lit_op:
                cur.append(chr(av))
                continue
            if cur:
                runs.append("".join(cur))
                cur = []
            if op is sub_op:
                walk(av[-1])
            elif op in reps and av[0] >= 1:
                walk(av[2])
        if cur:
            runs.append("".join(cur))

    walk(tree)
    best = max(runs, key=len, default="")
    return best.lower() or None


def _pred_anchors(p: Predicate, fm: Mapping[str, str]) -> set[Anchor] | None:
    if p.negated:
        return None
    if p.op is Op.REGEX and p.field is not None and not p.match_all:
        out: set[Anchor] = set()
        name = fm.get(p.field, p.field)
        for v in p.values:
            pat = v.pattern if isinstance(v, Regex) else v if isinstance(v, str) else None
            lit = regex_literal(pat) if pat is not None else None
            if lit is None:
                return None
            out.add((name, lit))
        return out
    if p.op is Op.KEYWORD or p.field is None:
        name = ALL_FIELDS
    elif p.op not in _ANCHOR_OPS:
        return None
    else:
        name = fm.get(p.field, p.field)
    try:
        groups = [expand(v, p.transforms) for v in p.values]
    except TransformError:
        return None
    if not groups:
        return None

    def group_set(g: list[Any]) -> set[Anchor] | None:
        out: set[Anchor] = set()
        for v in g:
            lit = _literal_of(v)
            if lit is None:
                return None
            out.add((name, lit))
        return out

    sets = [group_set(g) for g in groups]
    if p.match_all:  # every value must match: the best one alone is necessary
        good = [s for s in sets if s is not None]
        return max(good, key=score) if good else None
    if any(s is None for s in sets):
        return None
    return set().union(*sets)  # type: ignore[arg-type]


# Fields of the ECS view (engine/ecs.py) whose value the event kind decides. Anchors on them
# filter little: they rank below any other literal (score 1), but still count, for the rules
# routed to several kinds (``any where``). Where the view gives every event one value
# (``host.os.type`` "windows", ``event.kind`` "event"), an anchor on another value is one no
# event of the view has: the best anchor there is (score UNMET_SCORE).
WEAK_FIELDS: Mapping[str, frozenset[str] | None] = {
    "host.os.type": frozenset({"windows"}), "event.kind": frozenset({"event"}),
    "event.category": None, "event.type": None, "event.action": None, "event.code": None,
}
UNMET_SCORE = 100


def _anchor_score(f: str, lit: str) -> int:
    if f in ROUTE_FIELDS:
        return 0
    if f not in WEAK_FIELDS:
        return len(lit)
    every = WEAK_FIELDS[f]
    return 1 if every is None or lit in every else UNMET_SCORE


def score(s: set[Anchor] | None) -> int:
    """How selective an anchor set is: its shortest literal, 0 for route-decided fields, 1
    for the ECS fields the event kind decides (:data:`WEAK_FIELDS`)."""
    if not s:
        return -1 if s is None else 1000  # empty set: the rule can never match
    return min(_anchor_score(f, lit) for f, lit in s)


def anchors(node: Node | None, fm: Mapping[str, str] | None = None) -> set[Anchor] | None:
    """A necessary set of anchors for ``node`` to be true, or None when there is none."""
    fm = fm or {}
    if node is None:
        return None
    if isinstance(node, Predicate):
        return _pred_anchors(node, fm)
    if isinstance(node, And):
        best: set[Anchor] | None = None
        for a in node.args:
            s = anchors(a, fm)
            if s is not None and score(s) > score(best):
                best = s
        return best
    if isinstance(node, Or):
        out: set[Anchor] = set()
        for a in node.args:
            s = anchors(a, fm)
            if s is None:
                return None
            out |= s
        return out
    if isinstance(node, Const):
        return None if node.value else set()
    if isinstance(node, Not):
        return None
    return None


def all_text(fields: Mapping[str, Any]) -> str:
    """Lowered text of every field value, joined (what keyword anchors are searched in).

    Joining can only add substrings that straddle two values, so a keyword found in one value
    is always found here: the filter stays a necessary condition."""
    parts: list[str] = []
    for v in fields.values():
        t = type(v)
        if t is str:
            parts.append(v)
        elif t is int:
            parts.append(str(v))
        elif v is None:
            continue
        elif t is list:
            parts.append("\n".join(to_text(x) for x in v if x is not None))
        else:
            parts.append(to_text(v))
    return "\n".join(parts).lower()


_NUMERIC = frozenset("0123456789.-+eE")


def text_values(fields: Mapping[str, Any]) -> str:
    """Like :func:`all_text`, without the numbers (for literals that hold a letter, which no
    number's text can contain; booleans stay, their text is ``true``/``false``)."""
    return "\n".join([v if type(v) is str else field_text(v) for v in fields.values()
                      if type(v) is str or not (v is None or type(v) is int
                                                or type(v) is float)]).lower()


def field_text(v: Any) -> str:
    """Lowered text of an event value as the anchors see it (list values joined)."""
    if type(v) is str:
        return v.lower()
    if isinstance(v, list):
        return "\n".join(to_text(x).lower() for x in v if x is not None)
    return to_text(v).lower()


def _gate_ok(sub: str) -> bool:
    """Short gates of letters and digits (``en``, ``exe``) are in nearly every event's text, so
    they would filter nothing: a gate of only those is 4 characters or more."""
    return len(sub) >= 4 or not sub.replace(" ", "").isalnum()


def gates(literals: list[str], most: int = 10) -> tuple[str, ...]:
    """A few short strings such that every literal contains one of them (greedy cover).

    Cached by literal set: every routing group of a hunt (one per channel and event id) holds
    the same catch-all keyword rules, and the cover is the costly part of building a group.

    Searching each gate in the text (C string search) is a cheap necessary test before looking
    for the literals themselves: Mimikatz keywords are covered by ``::``, ``kiwi``, ``mimi``.
    Empty when no small cover exists (then the automaton always runs)."""
    return _gates(frozenset(literals), most)


@lru_cache(maxsize=KEYWORD_GATES)
def _gates(literals: frozenset[str], most: int) -> tuple[str, ...]:
    todo = set(literals)
    out: list[str] = []
    while todo:
        counts: dict[str, int] = {}
        for lit in todo:
            seen = {lit[i:i + n] for n in (2, 3, 4, 5, 6, 8) for i in range(len(lit) - n + 1)}
            seen = {x for x in seen if _gate_ok(x)}
            seen.add(lit)
            for sub in seen:
                counts[sub] = counts.get(sub, 0) + 1
        if not counts:
            return ()
        best = max(counts, key=lambda x: (counts[x], len(x)))
        out.append(best)
        todo = {lit for lit in todo if best not in lit}
        if len(out) > most:
            return ()
    return tuple(out)


GateTable = tuple[tuple[str, Any, tuple[tuple[str, int, tuple[int, ...]], ...]], ...]


def gate_table(gs: tuple[str, ...], lits: Mapping[str, tuple[int, ...]]) -> GateTable:
    """Per gate: its compiled search (``re``'s literal scan is about twice as fast as
    ``str.__contains__`` on long texts) and the literals holding it, each with the offset of the
    gate's first occurrence in the literal and the literal's slots."""
    out = []
    for g in gs:
        held = tuple((lit, lit.index(g), slots) for lit, slots in lits.items() if g in lit)
        out.append((g, re.compile(re.escape(g)).search, held))
    return tuple(out)


def gated_hits(table: GateTable, text: str, limit: int = 8) -> set[int] | None:
    """Slots of the literals found in ``text`` by way of their gates: every occurrence of a
    gate (overlapping ones too) is tried as the place of each literal holding it. Exact: a
    literal at ``q`` puts its gate at ``q + offset``. None when a gate occurs more than
    ``limit`` times (the caller scans with the automaton instead)."""
    found: set[int] = set()
    for g, search, held in table:
        m = search(text)
        if m is None:
            continue
        p = m.start()
        n = 0
        while p >= 0:
            n += 1
            if n > limit:
                return None
            for lit, off, slots in held:
                q = p - off
                if q >= 0 and text.startswith(lit, q):
                    found.update(slots)
            p = text.find(g, p + 1)
    return found


_EMPTY: frozenset[int] = frozenset()


class Prefilter:
    """Per-field automata over the anchors of many rules.

    ``entries[i]`` is the anchor set of rule slot ``i`` (None: always a candidate).
    :meth:`candidates` returns the sorted slots that can match the event.

    Keyword anchors (a literal in any field's value) are searched in the joined lowered text of
    the event's values: first each of a few *gates* (substrings every literal holds, see
    :func:`gates`), then only where a gate occurs (:func:`gated_hits`); the automaton scans the
    text only when a gate is everywhere in it (or there is no small set of gates).
    """

    __slots__ = ("always", "automata", "keywords", "kw_table", "kw_text_only", "n")

    def __init__(self, entries: Sequence[set[Anchor] | None], min_score: int = 1) -> None:
        self.n = len(entries)
        by_field: dict[str, dict[str, list[int]]] = {}
        always: list[int] = []
        for i, s in enumerate(entries):
            if s is None or score(s) < min_score:
                always.append(i)
                continue
            for f, lit in s:
                by_field.setdefault(f, {}).setdefault(lit, []).append(i)
        self.always = frozenset(always)
        self.automata: list[tuple[str, Any, BoundedCache[Any, frozenset[int]]]] = []
        self.keywords: Any = None
        self.kw_text_only = False
        self.kw_table: GateTable = ()
        for f, lits in by_field.items():
            a = ahocorasick.Automaton()
            for lit, slots in lits.items():
                a.add_word(lit, tuple(slots))
            a.make_automaton()
            if f == ALL_FIELDS:
                self.keywords = a
                # a literal with a letter cannot be inside a number's text: skip number values
                self.kw_text_only = all(any(c not in _NUMERIC for c in lit) for lit in lits)
                self.kw_table = gate_table(gates(list(lits)),
                                           {k: tuple(v) for k, v in lits.items()})
            else:
                self.automata.append((f, a, BoundedCache(FIELD_PREFILTER)))

    def candidates(self, fields: Mapping[str, Any]) -> list[int]:
        hits: list[frozenset[int]] = []
        get = fields.get
        for f, a, memo in self.automata:
            v = get(f)
            if v is None:
                continue
            key = v if type(v) is str else (type(v), repr(v))  # never equal to a str key
            hit = memo.get(key)
            if hit is None:
                hit = memo.put(key, frozenset(
                    x for _, slots in a.iter(field_text(v)) for x in slots))
            if hit:
                hits.append(hit)
        if self.keywords is not None:  # keywords: a substring of any field's value
            text = text_values(fields) if self.kw_text_only else all_text(fields)
            kw = self._scan_keywords(text)
            if kw:
                hits.append(kw)
        if not hits:
            return sorted(self.always)
        return sorted(self.always.union(*hits))

    def _scan_keywords(self, text: str) -> frozenset[int]:
        """Keyword slots in the lowered text of the event's values: by the gates, or the
        automaton when a gate is everywhere in it (or there are no gates).

        One joined text rather than value by value with a memo: measured, the per-value Python
        loop costs more than joining and lowering in C."""
        kw = gated_hits(self.kw_table, text) if self.kw_table else None
        if kw is None:
            kw = set()
            for _, slots in self.keywords.iter(text):
                kw.update(slots)
        return frozenset(kw) if kw else _EMPTY
