"""EQL ``sequence`` and ``sample`` over time-ordered events, as Elasticsearch runs them.

Elasticsearch's reference ("EQL syntax reference", sections *Sequences*, *Missing events*,
*by keyword*, *Optional by fields*, *until keyword*, *with runs statement*, *Samples* and *How
sequence queries handle matches*; ``docs/reference/query-languages/eql/eql-syntax.md``) and its
``SequenceMatcher`` / ``TumblingWindow`` (``x-pack/plugin/eql/.../execution/sequence``) define:

* **A state machine per join key.** Each positive member is a state; a pending sequence sits in
  the state of the last member it matched. *Only one pending sequence per state*: a newer one
  overwrites the older (``SequenceGroup.trimBefore`` keeps the most recent before the event).
  An event matching member ``k`` takes the pending sequence of member ``k-1`` (same key) and
  moves it to state ``k``; the last member completes it (one match per completed sequence).
  An event can start a new sequence at member 0 and advance another one at the same time
  (states are visited from the last to the first, so it never advances a sequence twice).
* **Join keys** (``sequence by a`` + the member's own ``by b``) are compared position by
  position. A null key value drops the event from that member, unless the key was written
  ``?field`` (then null is a value; *Optional by fields*).
* **maxspan**: an advance is rejected when the event is more than ``maxspan`` after the
  sequence's first event (``to - from > maxspan``; equal is inside).
* **until**: an ``until`` event for a key ends that key's pending sequences (ES rejects any
  advance across an until marker: equivalent in time order). The until event is not in a match.
* **runs=N**: the member repeated N times (N successive matching events, others may come
  between).
* **missing members** ``![...]`` (``TumblingWindow.doCheckMissingEvents``): a completed
  sequence is checked once: a middle missing member must have no event (same keys) strictly
  between its neighbours' times; leading/trailing ones are kept with the latest event before
  the first member / the first event after the last, and the sequence is a match unless that
  event lies within ``maxspan`` of the other end (see :meth:`SequenceRunner._missing_ok`). A
  sequence waiting on a trailing missing member is held until its window is over (or the input
  ends: the input's end is "now").
* **Order**: events are fed by time (:func:`event_time`); ties keep the record
  order (Elasticsearch breaks ties with its implicit tiebreaker, the index order). Feeding an
  older event raises :class:`OutOfOrder`; :func:`run_sequence` sorts a batch first.
* **Memory**: pending sequences live per key in an LRU table of at most ``max_keys`` keys
  (:data:`MAX_PENDING_KEYS`); the oldest key is dropped past it and counted in ``evicted``
  (Elasticsearch instead fails the query on its circuit breaker). Keys whose sequences are all
  older than ``maxspan`` are dropped as time passes.

**Samples** (``sample by k [..] [..]``): no order, no maxspan, no runs, no until. A sample is,
per key, one event for every member; each key gives one sample (``max_samples_per_key``
defaults to 1), made of the first event seen for each member. An event may fill several
members (Elasticsearch queries each member on its own).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ruleatlas.engine.sigma_semantics import as_number
from ruleatlas.model import AtlasError, Node
from ruleatlas.model import Sequence as ModelSequence

Fields = Mapping[str, Any]
Test = Callable[[Fields], bool]
Key = tuple[Any, ...]

MAX_PENDING_KEYS = 100_000  # join keys with pending sequences kept at once (LRU beyond)
SWEEP_EVERY = 4096  # events between two sweeps of expired keys
MAX_MISSING_TIMES = 64  # times kept per key and missing member (latest win)
TIME_FIELDS = ("@timestamp", "TimeCreated", "event.created")  # the ECS view: event.created


class OutOfOrder(AtlasError):
    """An event older than one already fed: sequences need time order (sort first)."""


def event_time(fields: Fields) -> float | None:
    """Seconds since 1970 of an event: ``@timestamp``, else ``TimeCreated`` (a raw event), else
    ``event.created`` (the ECS view copies TimeCreated there); ISO text, with or without zone,
    UTC assumed, or a number of seconds. None when none is readable."""
    for name in TIME_FIELDS:
        v = fields.get(name)
        if v is None:
            continue
        n = as_number(v)
        if n is not None:
            return n
        if isinstance(v, str):
            try:
                d = datetime.fromisoformat(v.strip().replace("Z", "+00:00"))
            except ValueError:
                continue
            return (d if d.tzinfo else d.replace(tzinfo=UTC)).timestamp()
    return None


@dataclass(frozen=True, slots=True)
class Step:
    """One member: ``test`` (the compiled condition), ``keys`` (shared ``by`` then the member's
    own), ``runs`` and ``missing`` as written."""

    test: Test
    keys: tuple[str, ...] = ()
    runs: int = 1
    missing: bool = False


@dataclass(frozen=True, slots=True)
class Match:
    """A completed sequence (or a sample): its join key and the events, one per positive
    member (``runs=N`` members give N events), in member order."""

    key: Key
    events: tuple[Fields, ...]
    times: tuple[float, ...] = ()


@dataclass(slots=True)
class _Partial:
    start: float
    events: tuple[Fields, ...]
    times: tuple[float, ...]


@dataclass(slots=True)
class _KeyState:
    states: list[_Partial | None]
    missing: dict[int, deque[float]] = field(default_factory=dict)


def key_of(fields: Fields, names: Sequence[str], optional: frozenset[str]) -> Key | None:
    """The join key of an event for these key fields; None when a non-optional one is null."""
    out = []
    for n in names:
        v = fields.get(n)
        if isinstance(v, list):
            v = tuple(v) if v else None
        if v is None and n not in optional:
            return None
        out.append(v)
    return tuple(out)


class SequenceRunner:
    """Streaming matcher of one EQL sequence; :meth:`feed` events in time order, then
    :meth:`finish`. Both return the matches completed by that call."""

    def __init__(self, steps: Sequence[Step], *, maxspan: float | None = None,
                 until: Step | None = None, optional: frozenset[str] = frozenset(),
                 max_keys: int = MAX_PENDING_KEYS) -> None:
        self.stages: tuple[Step, ...] = tuple(s for s in steps for _ in range(max(s.runs, 1)))
        self.positive = tuple(i for i, s in enumerate(self.stages) if not s.missing)
        if not self.positive:
            raise ValueError("a sequence needs at least one positive member")
        self.maxspan, self.until, self.optional, self.max_keys = maxspan, until, optional, max_keys
        self.keys: OrderedDict[Key, _KeyState] = OrderedDict()
        self.waiting: list[tuple[Key, _Partial, float | None]] = []  # trailing-missing checks
        self.evicted = 0
        self._last: float | None = None
        self._fed = 0

    # -- state -----------------------------------------------------------------------------

    def _state(self, key: Key) -> _KeyState:
        st = self.keys.get(key)
        if st is None:
            st = self.keys[key] = _KeyState([None] * len(self.stages))
            if len(self.keys) > self.max_keys:
                self.keys.popitem(last=False)
                self.evicted += 1
        else:
            self.keys.move_to_end(key)
        return st

    def _sweep(self, now: float) -> None:
        """Drop keys whose pending sequences and missing-event times are all past maxspan."""
        span = self.maxspan
        if span is None:
            return
        dead = [k for k, st in self.keys.items()
                if all(p is None or now - p.start > span for p in st.states)
                and all(not dq or now - dq[-1] > span for dq in st.missing.values())]
        for k in dead:
            del self.keys[k]

    def _expired(self, p: _Partial, now: float) -> bool:
        return self.maxspan is not None and now - p.start > self.maxspan

    # -- feeding ---------------------------------------------------------------------------

    def feed(self, ev: Fields, ts: float | None = None) -> list[Match]:
        """Take the next event (``ts`` defaults to :func:`event_time`; an event without a time
        takes no part, as Elasticsearch needs a timestamp)."""
        t = event_time(ev) if ts is None else ts
        if t is None:
            return []
        if self._last is not None and t < self._last:
            raise OutOfOrder(f"event at {t} after one at {self._last}: feed events in time order")
        self._last = t
        self._fed += 1
        if self._fed % SWEEP_EVERY == 0:
            self._sweep(t)
        out = self._release(t)
        if self.until is not None and self.until.test(ev):
            k = key_of(ev, self.until.keys, self.optional)
            st = self.keys.get(k) if k is not None else None
            if st is not None:
                st.states = [None] * len(self.stages)
        for i in range(len(self.stages) - 1, -1, -1):
            stage = self.stages[i]
            if not stage.test(ev):
                continue
            k = key_of(ev, stage.keys, self.optional)
            if k is None:
                continue
            if stage.missing:
                self._note_missing(k, i, t, out)
            else:
                self._advance(i, k, ev, t, out)
        return out

    def _advance(self, i: int, k: Key, ev: Fields, t: float, out: list[Match]) -> None:
        first, last = self.positive[0], self.positive[-1]
        if i == first:
            p = _Partial(t, (ev,), (t,))
        else:
            prev = max(j for j in self.positive if j < i)
            st = self.keys.get(k)
            old = st.states[prev] if st is not None else None
            if st is None or old is None:
                return
            st.states[prev] = None
            if self._expired(old, t):
                return
            p = _Partial(old.start, (*old.events, ev), (*old.times, t))
        if i == last:
            self._complete(k, p, out)
        else:
            self._state(k).states[i] = p

    def _note_missing(self, k: Key, i: int, t: float, out: list[Match]) -> None:
        st = self._state(k)
        dq = st.missing.setdefault(i, deque(maxlen=MAX_MISSING_TIMES))
        dq.append(t)
        if i > self.positive[-1]:  # a trailing member: decide the sequences waiting on it
            keep = []
            for wk, p, lead in self.waiting:
                if wk == k and t > p.times[-1]:
                    if self._missing_ok(p, lead, t):
                        out.append(Match(wk, p.events, p.times))
                else:
                    keep.append((wk, p, lead))
            self.waiting = keep

    # -- missing members -------------------------------------------------------------------

    def _times(self, k: Key, i: int) -> deque[float]:
        st = self.keys.get(k)
        return st.missing.get(i, deque()) if st is not None else deque()

    def _bigger(self, a: float | None, b: float | None) -> bool:
        return a is None or b is None or (self.maxspan is not None and b - a > self.maxspan)

    def _missing_ok(self, p: _Partial, lead: float | None, trail: float | None) -> bool:
        """Elasticsearch's final test of a sequence with missing members (``lead``: the latest
        leading-missing event before the first member, ``trail``: the first trailing-missing
        event after the last)."""
        m0 = self.stages[0].missing
        ml = self.stages[-1].missing
        return ((trail is None and lead is None) or (lead is None and m0)
                or (trail is None and ml)
                or (m0 and ml and self._bigger(lead, trail))
                or (m0 and not ml and self._bigger(lead, p.times[-1]))
                or (not m0 and ml and self._bigger(p.start, trail)))

    def _complete(self, k: Key, p: _Partial, out: list[Match]) -> None:
        if len(self.positive) == len(self.stages):
            out.append(Match(k, p.events, p.times))
            return
        pos = {j: n for n, j in enumerate(self.positive)}
        lead: float | None = None
        for i, stage in enumerate(self.stages):
            if not stage.missing:
                continue
            times = self._times(k, i)
            if i < self.positive[0]:
                before = [x for x in times if x < p.start]
                if before:
                    lead = max(before) if lead is None else max(lead, max(before))
            elif i < self.positive[-1]:
                lo = p.times[pos[max(j for j in self.positive if j < i)]]
                hi = p.times[pos[min(j for j in self.positive if j > i)]]
                if any(lo < x < hi for x in times):
                    return
        if self.stages[-1].missing:
            self.waiting.append((k, p, lead))
        elif self._missing_ok(p, lead, None):
            out.append(Match(k, p.events, p.times))

    def _release(self, now: float) -> list[Match]:
        """Sequences waiting on a trailing missing member whose window is over."""
        if not self.waiting or self.maxspan is None:
            return []
        out, keep = [], []
        for k, p, lead in self.waiting:
            base = lead if (self.stages[0].missing and lead is not None) else p.start
            if now - base > self.maxspan:
                if self._missing_ok(p, lead, None):
                    out.append(Match(k, p.events, p.times))
            else:
                keep.append((k, p, lead))
        self.waiting = keep
        return out

    def finish(self) -> list[Match]:
        """End of input: sequences still waiting on a trailing missing member are matches
        (nothing came after them)."""
        out = [Match(k, p.events, p.times) for k, p, lead in self.waiting
               if self._missing_ok(p, lead, None)]
        self.waiting = []
        return out


class SampleRunner:
    """EQL ``sample``: per join key, the first event of every member, in any order."""

    def __init__(self, steps: Sequence[Step], *, optional: frozenset[str] = frozenset(),
                 max_keys: int = MAX_PENDING_KEYS) -> None:
        self.steps, self.optional, self.max_keys = tuple(steps), optional, max_keys
        self.partial: OrderedDict[Key, list[Fields | None]] = OrderedDict()
        self.done: OrderedDict[Key, None] = OrderedDict()  # keys sampled (LRU, max_keys)
        self.evicted = 0

    def feed(self, ev: Fields, ts: float | None = None) -> list[Match]:
        out: list[Match] = []
        for i, step in enumerate(self.steps):
            if not step.test(ev):
                continue
            k = key_of(ev, step.keys, self.optional)
            if k is None or k in self.done:
                continue
            slots = self.partial.get(k)
            if slots is None:
                slots = self.partial[k] = [None] * len(self.steps)
                if len(self.partial) > self.max_keys:
                    self.partial.popitem(last=False)
                    self.evicted += 1
            if slots[i] is None:
                slots[i] = ev
            if all(s is not None for s in slots):
                out.append(Match(k, tuple(s for s in slots if s is not None)))
                self.done[k] = None
                if len(self.done) > self.max_keys:
                    self.done.popitem(last=False)
                del self.partial[k]
        return out

    def finish(self) -> list[Match]:
        return []


def run_sequence(runner: SequenceRunner | SampleRunner, events: Iterable[Fields],
                 time_of: Callable[[Fields], float | None] = event_time) -> Iterator[Match]:
    """Feed a batch of events in time order (sorted stably: ties keep their order; events
    without a time are left out) and yield the matches, in completion order. ``time_of``
    reads an event's time (default :func:`event_time`)."""
    timed = sorted(((t, n, ev) for n, ev in enumerate(events)
                    if (t := time_of(ev)) is not None), key=lambda x: (x[0], x[1]))
    for t, _, ev in timed:
        yield from runner.feed(ev, t)
    yield from runner.finish()


def build_runner(seq: ModelSequence, compile_step: Callable[[Node | None], Test], *,
                 optional: frozenset[str] = frozenset(),
                 max_keys: int = MAX_PENDING_KEYS) -> SequenceRunner | SampleRunner:
    """The runner of a lowered ``model.Sequence`` (``Analysis.sequence``): each member's
    condition compiled by ``compile_step`` (e.g. ``engine.elastic_semantics.compile_elastic``),
    keys = the shared ``by`` then the member's own. ``optional``: the join keys written
    ``?field`` (``Analysis.extra["optional_fields"]`` lists the query's optional fields)."""
    steps = [Step(compile_step(s.condition), seq.by + s.by, s.runs or 1, s.missing)
             for s in seq.steps]
    if seq.kind == "sample":
        return SampleRunner(steps, optional=optional, max_keys=max_keys)
    until = None
    if seq.until is not None:
        until = Step(compile_step(seq.until.condition), seq.by + seq.until.by)
    return SequenceRunner(steps, maxspan=seq.maxspan, until=until, optional=optional,
                          max_keys=max_keys)
