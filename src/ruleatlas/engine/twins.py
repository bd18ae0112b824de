"""Twin rules across vendors, and whether they fire on the same events.

Two rules are **twins** when they come from different sources (Sigma, Splunk, Elastic), both
can run, each is the other's best match among its source's rules (ties kept), and each holds
at least ``min_share`` of the other's indicator weight in the catalog's one similarity
(``store.indicators.similar_rules``: indicators weighted ``log(N/df)``; a rule's ``share`` is
the shared weight over its own). The shared weight (``score``) is the same seen
from either rule, so the pair's two shares are ``score / own weight`` of each; a rule's own
weight is read off any entry of its similar list (``score / share``).

:func:`find_pairs` takes the similarity as a function (the CLI passes the store's), so the
module reads no database. :func:`fired` gathers the events each rule's findings point at (a
stateless rule's event, an aggregation's or a sequence's first event), and :func:`compare`
gives each pair a :class:`Verdict`: the same events, some in common, none in common, only one
of the two fired, neither.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from ruleatlas.engine.runner import Finding
from ruleatlas.model import RuleRef

if TYPE_CHECKING:
    from ruleatlas.engine.hunt import HuntReport
    from ruleatlas.engine.plans import LoadedPlans, PlanHead
    from ruleatlas.limits import Limits

# A similarity: rule id, how many rules to list -> ``store.indicators.similar_rules`` entries
# (``id``, ``source``, ``score``, ``share``), best first.
Similar = Callable[[str, int], Sequence[Mapping[str, Any]]]

# How many similar rules :func:`find_pairs` reads per rule: a cross-vendor twin may rank below
# many same-vendor rules that share the same indicators (a score tie is broken by id).
SIMILAR_LIMIT = 100
# Defaults of ``ruleatlas twins``: each rule holds at least half the other's weight.
MIN_SHARE = 0.5
# Scores are rounded to 4 decimals by the store: equal within this are a tie.
TIE = 1e-4
# How many events a result lists for "only one of the two fired on these events".
SHOWN_EVENTS = 20


@dataclass(frozen=True, slots=True)
class TwinPair:
    """Two rules of different sources sharing indicators (``a`` before ``b`` by source, id)."""

    a: RuleRef
    b: RuleRef
    score: float  # the shared indicators' weight
    share_a: float  # score over a's own weight
    share_b: float


@dataclass(frozen=True, slots=True, order=True)
class EventRef:
    """One event of the input: its file (``archive!member`` in an archive) and position."""

    file: str
    position: int

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "position": self.position}


class Verdict(StrEnum):
    SAME = "same events"
    OVERLAP = "some events in common"
    DISJOINT = "both fired, no event in common"
    ONLY_A = "only a fired"
    ONLY_B = "only b fired"
    NEITHER = "neither fired"


@dataclass(frozen=True, slots=True)
class TwinResult:
    """A pair and what each of its rules fired on."""

    pair: TwinPair
    verdict: Verdict
    a_events: int
    b_events: int
    shared: int  # events both fired on
    shared_files: int  # input files both fired in
    only_a: tuple[EventRef, ...] = ()  # the first SHOWN_EVENTS of a's events b missed
    only_b: tuple[EventRef, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        p = self.pair
        return {
            "a": {"id": p.a.id, "source": p.a.source, "title": p.a.title},
            "b": {"id": p.b.id, "source": p.b.source, "title": p.b.title},
            "score": p.score, "share_a": p.share_a, "share_b": p.share_b,
            "verdict": self.verdict.value,
            "a_events": self.a_events, "b_events": self.b_events, "shared": self.shared,
            "shared_files": self.shared_files,
            "only_a": [e.to_dict() for e in self.only_a],
            "only_b": [e.to_dict() for e in self.only_b],
        }


@dataclass(slots=True)
class TwinReport:
    """Every twin pair's result, and the counts by verdict and by pair of sources."""

    results: list[TwinResult] = field(default_factory=list)

    def by_verdict(self) -> Counter[str]:
        return Counter(r.verdict.value for r in self.results)

    def by_sources(self) -> dict[str, Counter[str]]:
        out: dict[str, Counter[str]] = {}
        for r in self.results:
            k = f"{r.pair.a.source}-{r.pair.b.source}"
            out.setdefault(k, Counter())[r.verdict.value] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "pairs": len(self.results),
            "by_verdict": {v.value: self.by_verdict()[v.value] for v in Verdict},
            "by_sources": {k: {v.value: c[v.value] for v in Verdict}
                           for k, c in sorted(self.by_sources().items())},
            "results": [r.to_dict() for r in self.results],
        }


def _own_weight(entries: Sequence[Mapping[str, Any]]) -> float | None:
    """A rule's own indicator weight, from any entry of its similar list (score / share)."""
    for e in entries:
        if e.get("share"):
            return float(e["score"]) / float(e["share"])
    return None


def _best(by_id: Mapping[str, RuleRef], lists: Mapping[str, Sequence[Mapping[str, Any]]]
          ) -> dict[tuple[str, str], float]:
    """(rule id, other source) -> the best score of that source's rules in the rule's list."""
    out: dict[tuple[str, str], float] = {}
    for rid, entries in lists.items():
        for e in entries:
            other = by_id.get(str(e["id"]))
            if other is not None and other.source != by_id[rid].source:
                k = (rid, other.source)
                out[k] = max(out.get(k, 0.0), float(e["score"]))
    return out


def find_pairs(rules: Iterable[RuleRef], similar: Similar, min_share: float = MIN_SHARE,
               min_score: float = 0.0, limit: int = SIMILAR_LIMIT) -> list[TwinPair]:
    """Cross-vendor pairs among ``rules``: each rule is among the other's best matches of its
    source (the highest score, ties kept), both shares are at least ``min_share`` and the
    shared weight at least ``min_score`` (see the module docstring). Sorted by source pair,
    then score, best first."""
    by_id = {r.id: r for r in rules}
    lists = {rid: similar(rid, limit) for rid in by_id}
    own = {rid: _own_weight(entries) for rid, entries in lists.items()}
    best = _best(by_id, lists)
    pairs: dict[tuple[str, str], TwinPair] = {}
    for rid, entries in lists.items():
        me = by_id[rid]
        for e in entries:
            other = by_id.get(str(e["id"]))
            if other is None or other.source == me.source:
                continue
            score, mine = float(e["score"]), float(e["share"])
            theirs_own = own.get(other.id)
            theirs = score / theirs_own if theirs_own else 0.0
            if score < min_score or mine < min_share or theirs < min_share:
                continue
            if (score < best[(rid, other.source)] - TIE
                    or score < best.get((other.id, me.source), 0.0) - TIE):
                continue  # one of the two has a closer rule of the other's source
            a, b = sorted((me, other), key=lambda r: (r.source, r.id))
            share_a, share_b = (mine, theirs) if a is me else (theirs, mine)
            pairs.setdefault((a.id, b.id), TwinPair(a, b, round(score, 4), round(share_a, 4),
                                                    round(share_b, 4)))
    return sorted(pairs.values(), key=lambda p: (p.a.source, p.b.source, -p.score, p.a.id,
                                                  p.b.id))


def fired(findings: Iterable[Finding]) -> dict[str, set[EventRef]]:
    """The events each rule fired on (a finding's event), by rule id."""
    out: dict[str, set[EventRef]] = {}
    for f in findings:
        out.setdefault(f.rule.rule.id, set()).add(EventRef(f.event.file, f.event.position))
    return out


def _verdict(a: set[EventRef], b: set[EventRef]) -> Verdict:
    if not a and not b:
        return Verdict.NEITHER
    if not b:
        return Verdict.ONLY_A
    if not a:
        return Verdict.ONLY_B
    if a == b:
        return Verdict.SAME
    return Verdict.OVERLAP if a & b else Verdict.DISJOINT


def compare(pairs: Iterable[TwinPair], events: Mapping[str, set[EventRef]],
            shown: int = SHOWN_EVENTS) -> TwinReport:
    """Each pair's verdict from the events its rules fired on (``events``, by rule id)."""
    report = TwinReport()
    empty: set[EventRef] = set()
    for p in pairs:
        a, b = events.get(p.a.id, empty), events.get(p.b.id, empty)
        report.results.append(TwinResult(
            p, _verdict(a, b), len(a), len(b), len(a & b),
            len({e.file for e in a} & {e.file for e in b}),
            tuple(sorted(a - b)[:shown]), tuple(sorted(b - a)[:shown])))
    return report


def hunt_twins(plans: LoadedPlans, heads: Sequence[PlanHead], logs: Sequence[str],
               similar: Similar, hunt: HuntReport, *, min_share: float = MIN_SHARE,
               min_score: float = 0.0, limit: int = SIMILAR_LIMIT, limits: Limits | None = None,
               jobs: int = 1, progress: Callable[[int], None] | None = None) -> TwinReport:
    """Hunt ``logs`` once with the rules of ``heads`` (``hunt`` gets the hunt's summary), then
    compare the twin pairs among their runnable rules."""
    from ruleatlas.engine.hunt import hunt_plans

    events = fired(hunt_plans(plans, heads, logs, hunt, limits=limits, jobs=jobs,
                              progress=progress))
    refs = [RuleRef(h.rule.id, h.rule.source, h.rule.title) for h in heads if h.runnable]
    return compare(find_pairs(refs, similar, min_share, min_score, limit), events)
