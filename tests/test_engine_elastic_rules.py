"""Elastic's threshold and new-terms rule types (engine/elastic_rules.py) on hand-made ECS
events; expectations from Elastic's rule-type documentation (docs/elastic-engine.md)."""

from __future__ import annotations

from typing import Any

from ruleatlas.engine.elastic_rules import (
    Cardinality,
    input_windows,
    new_terms,
    new_terms_in_input,
    terms_of,
    threshold,
)


def at(sec: float, **fields: Any) -> dict[str, Any]:
    m, s = divmod(int(sec), 60)
    h, m = divmod(m, 60)
    ev: dict[str, Any] = {"@timestamp": f"2024-01-01T{h:02d}:{m:02d}:{s:02d}Z"}
    ev.update({k.replace("__", "."): v for k, v in fields.items()})
    return ev


T0 = 1704067200.0  # 2024-01-01T00:00:00Z


# --------------------------------------------------------------------------------------------
# threshold
# --------------------------------------------------------------------------------------------


def test_threshold_count_is_at_least() -> None:
    evs = [at(i, source__ip="10.0.0.1") for i in range(3)] + [at(9, source__ip="10.0.0.2")]
    got = threshold(evs, ["source.ip"], 3)
    assert [(a.group, a.count) for a in got] == [(("10.0.0.1",), 3)]
    assert threshold(evs, ["source.ip"], 4) == []


def test_threshold_several_fields_and_missing_field() -> None:
    evs = [at(1, host__id="h", user__name="a"), at(2, host__id="h", user__name="a"),
           at(3, host__id="h", user__name="b"), at(4, host__id="h")]   # no user.name: no group
    got = threshold(evs, ["host.id", "user.name"], 2)
    assert [(a.group, a.count) for a in got] == [(("h", "a"), 2)]


def test_threshold_without_fields_is_one_group() -> None:
    evs = [at(i, x=i) for i in range(5)]
    (a,) = threshold(evs, [], 5)
    assert a.group == () and a.count == 5


def test_threshold_multi_valued_field_counts_in_each_value() -> None:
    evs = [at(1, process__args=["a", "b"]), at(2, process__args=["b"])]
    got = threshold(evs, ["process.args"], 2)
    assert [(a.group, a.count) for a in got] == [(("b",), 2)]


def test_threshold_cardinality() -> None:
    """The SYN port scan shape: by destination.ip and source.ip, count >= 1 and at least N
    distinct destination ports."""
    scan = [at(i, source__ip="s", destination__ip="d", destination__port=p)
            for i, p in enumerate([22, 80, 443, 445, 445])]
    quiet = [at(10 + i, source__ip="q", destination__ip="d", destination__port=443)
             for i in range(10)]
    card = [Cardinality("destination.port", 4)]
    got = threshold(scan + quiet, ["destination.ip", "source.ip"], 1, card)
    assert [(a.group, a.count, dict(a.distinct)) for a in got] == [
        (("d", "s"), 5, {"destination.port": 4})]
    assert threshold(scan, ["destination.ip", "source.ip"], 1,
                     [Cardinality("destination.port", 5)]) == []


# --------------------------------------------------------------------------------------------
# new_terms
# --------------------------------------------------------------------------------------------


def test_terms_of_combinations() -> None:
    ev = {"host.ip": ["1.1.1.1", "2.2.2.2"], "user.name": "bob"}
    assert terms_of(ev, ["host.ip", "user.name"]) == [("1.1.1.1", "bob"), ("2.2.2.2", "bob")]
    assert terms_of(ev, ["host.ip", "user.id"]) == []
    assert terms_of({"destination.port": 445}, ["destination.port"]) == [("445",)]


def test_new_terms_against_history() -> None:
    evs = [at(0, user__name="alice"), at(10, user__name="bob"),      # history
           at(100, user__name="alice"), at(110, user__name="carol"),  # window
           at(120, user__name="carol")]
    got = new_terms(evs, ["user.name"], history_start=T0, window_start=T0 + 100)
    assert [(a.term, a.time - T0) for a in got] == [(("carol",), 110.0)]  # first event only


def test_new_terms_history_start_bounds_the_history() -> None:
    evs = [at(0, user__name="alice"), at(100, user__name="alice")]
    got = new_terms(evs, ["user.name"], history_start=T0 + 50, window_start=T0 + 100)
    assert [a.term for a in got] == [("alice",)]   # seen only before the history started


def test_new_terms_multi_valued_gives_one_alert_per_new_value() -> None:
    evs = [at(0, host__ip=["1.1.1.1"]), at(100, host__ip=["1.1.1.1", "2.2.2.2", "3.3.3.3"])]
    got = new_terms(evs, ["host.ip"], history_start=T0, window_start=T0 + 50)
    assert [a.term for a in got] == [("2.2.2.2",), ("3.3.3.3",)]


def test_new_terms_combination_of_fields() -> None:
    evs = [at(0, host__id="h1", user__name="bob"), at(1, host__id="h2", user__name="eve"),
           at(100, host__id="h1", user__name="eve"), at(101, host__id="h2", user__name="eve")]
    got = new_terms(evs, ["host.id", "user.name"], history_start=T0, window_start=T0 + 50)
    assert [a.term for a in got] == [("h1", "eve")]


def test_new_terms_windows_from_the_input() -> None:
    """An hour of events; the rule's window is the last 9 minutes, the history the rest."""
    evs = [at(0, process__name="a.exe"), at(1800, process__name="b.exe"),
           at(3060, process__name="a.exe"), at(3300, process__name="c.exe"),
           at(3600, process__name="b.exe")]
    got, w = new_terms_in_input(evs, ["process.name"], window=540)
    assert w is not None and (w.window_start - T0, w.window_end - T0) == (3060.0, 3600.0)
    assert w.history_start == T0
    assert [a.term for a in got] == [("c.exe",)]
    # a 7-day history that would start before the input starts at the first event
    assert input_windows([T0, T0 + 3600], 540, 7 * 86400) == w
    # a 20-minute history is [1860, 3060): b.exe at 1800 s is before it, so all are new
    got20, w20 = new_terms_in_input(evs, ["process.name"], window=540, history=1200)
    assert w20 is not None and w20.history_start - T0 == 1860.0
    assert [a.term for a in got20] == [("a.exe",), ("c.exe",), ("b.exe",)]


def test_new_terms_short_input_every_term_is_new() -> None:
    evs = [at(0, process__name="a.exe"), at(60, process__name="a.exe"),
           at(120, process__name="b.exe")]
    got, _ = new_terms_in_input(evs, ["process.name"], window=540)
    assert [a.term for a in got] == [("a.exe",), ("b.exe",)]
    assert new_terms_in_input([], ["process.name"], window=540) == ([], None)
