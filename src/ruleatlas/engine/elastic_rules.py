"""Elastic's threshold and new-terms rule types, over events that already matched the query.

Both run after the rule's query (KQL, EQL, Lucene) has selected events; they take those events
(flat ECS views, ``engine.ecs.ecs_view``) and return alerts. Semantics from Elastic's
detection-rule documentation (``solutions/security/detect-and-alert``: *Threshold*, *New
terms*) and the rule API reference:

**Threshold** (``[rule.threshold]``: ``field`` 0-3 fields, ``value``, ``cardinality``):

* events are grouped by the values of the threshold fields (a terms aggregation: an event
  without one of the fields is in no group; a multi-valued field puts the event in one group
  per value, and with several fields per combination); no field: one group of all events;
* a group alerts when it has **at least** ``value`` events and, for each cardinality entry, at
  least its ``value`` distinct values of its field (Elasticsearch's ``cardinality`` is
  approximate past 3,000 values; here it is exact);
* one alert per group, with the group's values, count, distinct counts and events.

**New terms** (``[rule.new_terms]``: ``field`` = 1-3 fields, ``history_window_start``):

* Kibana looks at the events of the rule's current window ``[from, now]``; a term (the value of
  the field, or the combination of the values of 2-3 fields) alerts when no event of the history
  ``[history_window_start, from)`` has it. A multi-valued field gives one term per value (one
  alert per new value: "a single source document may have multiple new terms");
* an event without one of the fields has no term;
* one alert per new term, for its first event in the window.

**The windows on a log file** (decided here; Elastic runs the rule on a live index, "now" is the
clock): :func:`new_terms_in_input` takes the time range of the input itself. "now" is the last
event's time; the rule's window is the last ``window`` seconds (the rule's look-back ``from``,
e.g. ``now-9m``); the history starts ``history`` seconds before that window
(``history_window_start``, e.g. ``now-7d`` -> 7 days) but never before the first event. With no
``window`` the window is the whole input and the history is empty: every term is new. On a
short recording (an OTRF dataset lasts minutes) a look-back of ``now-9m`` also covers it all,
so every term is new, as on a fresh Elastic index whose history holds no data; a term is "new"
only where the input is longer than the rule's window.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import product
from typing import Any

from ruleatlas.engine.sequence import event_time
from ruleatlas.engine.sigma_semantics import to_text

Fields = Mapping[str, Any]
Term = tuple[str, ...]


def field_values(ev: Fields, name: str) -> list[str]:
    """The values of a field as terms (text, as a keyword field indexes them); [] if missing."""
    v = ev.get(name)
    if v is None:
        return []
    vals = v if isinstance(v, (list, tuple)) else [v]
    out: list[str] = []
    for x in vals:
        if x is not None and to_text(x) not in out:
            out.append(to_text(x))
    return out


def terms_of(ev: Fields, fields: Sequence[str]) -> list[Term]:
    """Every term of an event: one per value, per combination of values for several fields."""
    per_field = [field_values(ev, f) for f in fields]
    if any(not vs for vs in per_field):
        return []
    return [tuple(c) for c in product(*per_field)]


# --------------------------------------------------------------------------------------------
# Threshold
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cardinality:
    """``[[rule.threshold.cardinality]]``: at least ``value`` distinct values of ``field``."""

    field: str
    value: int


@dataclass(frozen=True, slots=True)
class ThresholdAlert:
    """A group over the threshold: its values (by ``fields``), event count, distinct counts
    (by cardinality field) and events (in input order)."""

    group: Term
    count: int
    distinct: Mapping[str, int]
    events: tuple[Fields, ...]


def threshold(events: Iterable[Fields], fields: Sequence[str], value: int,
              cardinality: Sequence[Cardinality] = ()) -> list[ThresholdAlert]:
    """Elastic's threshold rule on events that matched the query; alerts in order of their
    group's first event."""
    groups: dict[Term, list[Fields]] = {}
    for ev in events:
        keys = terms_of(ev, fields) if fields else [()]
        for k in keys:
            groups.setdefault(k, []).append(ev)
    out = []
    for k, evs in groups.items():
        if len(evs) < value:
            continue
        distinct = {c.field: len({t for e in evs for t in field_values(e, c.field)})
                    for c in cardinality}
        if all(distinct[c.field] >= c.value for c in cardinality):
            out.append(ThresholdAlert(k, len(evs), distinct, tuple(evs)))
    return out


# --------------------------------------------------------------------------------------------
# New terms
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewTermAlert:
    """A term first seen in the rule's window: the term (one value per field), the first event
    of the window holding it and that event's time."""

    term: Term
    event: Fields
    time: float


def new_terms(events: Iterable[Fields], fields: Sequence[str], *, history_start: float,
              window_start: float, window_end: float | None = None) -> list[NewTermAlert]:
    """Terms of the events in ``[window_start, window_end]`` that no event of
    ``[history_start, window_start)`` has; one alert per new term, in time order (events
    without a time take no part)."""
    timed = sorted(((t, n, ev) for n, ev in enumerate(events)
                    if (t := event_time(ev)) is not None), key=lambda x: (x[0], x[1]))
    seen: set[Term] = set()
    for t, _, ev in timed:
        if history_start <= t < window_start:
            seen.update(terms_of(ev, fields))
    out: list[NewTermAlert] = []
    for t, _, ev in timed:
        if t < window_start or (window_end is not None and t > window_end):
            continue
        for term in terms_of(ev, fields):
            if term not in seen:
                seen.add(term)  # one alert per new term: its first event
                out.append(NewTermAlert(term, ev, t))
    return out


@dataclass(frozen=True, slots=True)
class InputWindows:
    """The windows :func:`new_terms_in_input` used, in seconds since 1970."""

    history_start: float
    window_start: float
    window_end: float


def input_windows(times: Sequence[float], window: float | None,
                  history: float | None) -> InputWindows | None:
    """The rule's window and history from the input's own time range (see the module doc);
    None for an input without timed events."""
    if not times:
        return None
    first, last = min(times), max(times)
    start = first if window is None else max(first, last - window)
    hist = first if history is None else max(first, start - history)
    return InputWindows(hist, start, last)


def new_terms_in_input(events: Sequence[Fields], fields: Sequence[str], *,
                       window: float | None = None,
                       history: float | None = None) -> tuple[list[NewTermAlert],
                                                              InputWindows | None]:
    """:func:`new_terms` with the windows taken from the input (``window``: the rule's
    look-back in seconds; ``history``: ``history_window_seconds`` of the rule)."""
    times = [t for ev in events if (t := event_time(ev)) is not None]
    w = input_windows(times, window, history)
    if w is None:
        return [], None
    return new_terms(events, fields, history_start=w.history_start, window_start=w.window_start,
                     window_end=w.window_end), w


# --------------------------------------------------------------------------------------------
# The rule types as the engine runs them
# --------------------------------------------------------------------------------------------

# Elastic rule types with no query to run on a log file, and why (``ruleatlas hunt`` reports
# them as not runnable with this reason).
NOT_RUNNABLE_TYPES: Mapping[str, str] = {
    "machine_learning": "machine-learning rule: Elastic alerts on the anomaly scores of an ML "
                        "job, there is no query to run on events",
    "threat_match": "threat-match rule: it joins events with the documents of an indicator "
                    "index (threat_index), which a log file does not have",
}


@dataclass(frozen=True, slots=True)
class RuleType:
    """What a threshold or new-terms rule does with the events its query matched (see the
    module doc): ``kind`` ``threshold`` (``fields``, ``value``, ``cardinality``) or
    ``new_terms`` (``fields``, the rule's look-back ``window`` and ``history`` in seconds)."""

    kind: str
    fields: tuple[str, ...]
    value: int = 1
    cardinality: tuple[Cardinality, ...] = ()
    window: float | None = None
    history: float | None = None

    @property
    def reads(self) -> tuple[str, ...]:
        """The fields the alerts are computed from."""
        return (*self.fields, *(c.field for c in self.cardinality))

    def alerts(self, events: Sequence[Fields]) -> list[tuple[Fields, dict[str, Any]]]:
        """(the alert's first event, what the alert says) per alert, in Elastic's order."""
        if self.kind == "threshold":
            out = []
            for a in threshold(events, self.fields, self.value, self.cardinality):
                said: dict[str, Any] = dict(zip(self.fields, a.group, strict=True))
                said["count"] = a.count
                said.update({f"cardinality({k})": v for k, v in a.distinct.items()})
                out.append((a.events[0], said))
            return out
        found, _ = new_terms_in_input(events, self.fields, window=self.window,
                                      history=self.history)
        return [(a.event, dict(zip(self.fields, a.term, strict=True))) for a in found]


def rule_type_of(kind: str, extra: Mapping[str, Any],
                 window: float | None) -> RuleType | str:
    """The :class:`RuleType` of a threshold or new-terms rule from its analysis' ``extra``
    (``languages/elastic/rule_types``), or the reason it cannot run."""
    spec = extra.get(kind)
    if not isinstance(spec, Mapping):
        return f"{kind} rule without its {kind} settings"
    raw = spec.get("fields" if kind == "new_terms" else "field")
    names = [raw] if isinstance(raw, str) else list(raw or ())
    if not all(isinstance(n, str) and n for n in names):
        return f"{kind} fields {raw!r} are not field names"
    if kind == "new_terms":
        if not names:
            return "new_terms rule without fields"
        hist = spec.get("history_window_seconds")
        return RuleType(kind, tuple(names), window=window,
                        history=float(hist) if isinstance(hist, (int, float)) else None)
    try:
        value = int(spec.get("value", 1))
        card = tuple(Cardinality(str(c["field"]), int(c["value"]))
                     for c in spec.get("cardinality") or ())
    except (KeyError, TypeError, ValueError) as exc:
        return f"threshold settings cannot be read: {exc}"
    return RuleType(kind, tuple(names), value=value, cardinality=card)
