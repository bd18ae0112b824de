"""SPL aggregations the engine runs: ``stats`` and ``eventstats`` with ``by``, followed by
``where``/``search`` on the result (threshold rules: ``| stats dc(dest) as n by src | where n>9``).

The lowering's typed :class:`~ruleatlas.model.Aggregate` step becomes an :class:`AggSpec`
(canonical functions, output names, group-by fields);
:class:`Aggregator` then keeps one small state per group while events stream in, so memory is
per group, not per event (``eventstats`` must keep the matching events of each group, as Splunk
does). Functions are a dict (house rule 4); an unknown one makes the rule not runnable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ruleatlas.engine.compile import Matcher, NotRunnable
from ruleatlas.engine.sigma_semantics import as_number, to_text
from ruleatlas.model import Aggregate

# --------------------------------------------------------------------------------------------
# The aggregation of a typed step
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AggFunc:
    fn: str  # canonical name: count, dc, values, list, min, max, sum, avg, earliest, latest
    arg: str | None  # the field, None for count(*)
    name: str  # the output field


@dataclass(frozen=True, slots=True)
class AggSpec:
    command: str  # stats | eventstats
    funcs: tuple[AggFunc, ...]
    by: tuple[str, ...]


ALIASES = {"distinct_count": "dc", "c": "count", "first": "earliest", "last": "latest",
           "mean": "avg"}


def agg_spec(step: Aggregate, command: str | None = None) -> AggSpec:
    """The lowering's :class:`~ruleatlas.model.Aggregate` (``stats count min(_time) as
    firstTime dc(x) by a, b``) as the engine computes it: canonical function names and output
    names (``command``: the semantics, ``stats`` for a tstats step).

    Raises :class:`NotRunnable` for functions or forms the engine does not compute."""
    command = command or step.command
    if step.problem:
        raise NotRunnable(f"{command} {step.problem}")
    funcs: list[AggFunc] = []
    for f in step.functions:
        fn = ALIASES.get(f.name.lower(), f.name.lower())
        arg = f.field
        if fn not in AGG_FUNCS:
            raise NotRunnable(f"{command} function {f.name}() is not supported")
        if arg is not None and (("*" in arg and arg != "*") or "eval(" in arg):
            raise NotRunnable(f"{command} {fn}({arg}) with wildcards/eval is not supported")
        if f.alias is not None and "*" in f.alias:
            raise NotRunnable(f"{command} {f.name}({arg or ''}) as {f.alias}: wildcard output "
                              "names are not supported")
        if fn != "count" and not arg:
            raise NotRunnable(f"{command} {fn} needs a field")
        default = fn if arg is None else f"{f.name}({arg})"
        funcs.append(AggFunc(fn, arg if arg not in (None, "*") else None, f.alias or default))
    if not funcs:
        funcs.append(AggFunc("count", None, "count"))
    if any("*" in b for b in step.by):
        raise NotRunnable(f"{command} by wildcard fields is not supported")
    return AggSpec(command.lower(), tuple(funcs), tuple(step.by))


# --------------------------------------------------------------------------------------------
# Aggregation state
# --------------------------------------------------------------------------------------------


def _vals(v: Any) -> list[Any]:
    if v is None:
        return []
    return [x for x in v if x is not None] if isinstance(v, list) else [v]


def _order_key(v: Any) -> tuple[int, Any]:
    n = as_number(v)
    return (0, n) if n is not None else (1, to_text(v))


class _State:
    __slots__ = ("count", "first", "last", "lst", "max", "min", "n", "nums", "seen", "sq", "sum",
                 "values")

    def __init__(self) -> None:
        self.count = 0
        self.seen: set[str] = set()
        self.values: dict[str, Any] = {}
        self.lst: list[Any] = []
        self.min: Any = None
        self.max: Any = None
        self.sum = 0.0
        self.sq = 0.0
        self.n = 0
        self.nums: list[float] = []
        self.first: Any = None
        self.last: Any = None


def _update(st: _State, f: AggFunc, ev: Mapping[str, Any]) -> None:
    if f.arg is None:
        st.count += 1
        return
    for v in _vals(ev.get(f.arg)):
        st.count += 1
        t = to_text(v)
        st.seen.add(t)
        st.values.setdefault(t, v)
        if len(st.lst) < 100:
            st.lst.append(v)
        if st.min is None or _order_key(v) < _order_key(st.min):
            st.min = v
        if st.max is None or _order_key(v) > _order_key(st.max):
            st.max = v
        n = as_number(v)
        if n is not None:
            st.sum += n
            st.sq += n * n
            st.n += 1
            if len(st.nums) < 100000:
                st.nums.append(n)
        if st.first is None:
            st.first = v
        st.last = v


def _result(st: _State, f: AggFunc) -> Any:
    return AGG_FUNCS[f.fn](st)


def _num_out(x: float) -> int | float:
    return int(x) if x.is_integer() else x


def _var(s: _State, sample: bool) -> float | None:
    d = s.n - 1 if sample else s.n
    if d <= 0:
        return None
    mean = s.sum / s.n
    return max(s.sq / d - mean * mean * s.n / d, 0.0)


def _median(s: _State) -> Any:
    if not s.nums:
        return None
    xs = sorted(s.nums)
    return _num_out(xs[(len(xs) - 1) // 2])  # Splunk takes the lower middle value


def _mode(s: _State) -> Any:
    if not s.lst:
        return None
    counts: dict[str, int] = {}
    for v in s.lst:
        counts[to_text(v)] = counts.get(to_text(v), 0) + 1
    return max(counts, key=lambda k: counts[k])


AGG_FUNCS: dict[str, Callable[[_State], Any]] = {
    "stdev": lambda s: None if (v := _var(s, True)) is None else v ** 0.5,
    "stdevp": lambda s: None if (v := _var(s, False)) is None else v ** 0.5,
    "var": lambda s: _var(s, True),
    "varp": lambda s: _var(s, False),
    "median": _median,
    "mode": _mode,
    "count": lambda s: s.count,
    "dc": lambda s: len(s.seen),
    "values": lambda s: [s.values[k] for k in sorted(s.values)],
    "list": lambda s: list(s.lst),
    "min": lambda s: s.min,
    "max": lambda s: s.max,
    "sum": lambda s: _num_out(s.sum) if s.n else None,
    "avg": lambda s: s.sum / s.n if s.n else None,
    "earliest": lambda s: s.first,
    "latest": lambda s: s.last,
}


class Aggregator:
    """Groups matching events of one rule and yields result rows (stats) or the events with
    their group's aggregates (eventstats) that pass the result condition."""

    def __init__(self, spec: AggSpec, result: Matcher, keep: int = 10000) -> None:
        self.spec = spec
        self.result = result
        self.groups: dict[tuple[str, ...], list[_State]] = {}
        self.first: dict[tuple[str, ...], Any] = {}
        self.events: dict[tuple[str, ...], list[Any]] = {}
        self.keep = keep

    def add(self, fields: Mapping[str, Any], payload: Any) -> None:
        key: list[str] = []
        for b in self.spec.by:
            v = fields.get(b)
            if v is None:
                return  # Splunk drops events without a by-field value
            key.append(to_text(v))
        k = tuple(key)
        states = self.groups.get(k)
        if states is None:
            states = self.groups[k] = [_State() for _ in self.spec.funcs]
            self.first[k] = payload
        for st, f in zip(states, self.spec.funcs, strict=True):
            _update(st, f, fields)
        if self.spec.command == "eventstats":
            lst = self.events.setdefault(k, [])
            if len(lst) < self.keep:
                lst.append((dict(fields), payload))

    def rows(self) -> Iterator[tuple[dict[str, Any], Any]]:
        """(row fields, payload of the group's first event) for every passing row/event."""
        for k, states in self.groups.items():
            agg = {f.name: _result(st, f) for st, f in zip(states, self.spec.funcs, strict=True)}
            if self.spec.command == "eventstats":
                for fields, payload in self.events.get(k, ()):
                    row = {**fields, **agg}
                    if self.result(row):
                        yield row, payload
            else:
                row = dict(zip(self.spec.by, k, strict=True))
                row.update(agg)
                if self.result(row):
                    yield row, self.first[k]
