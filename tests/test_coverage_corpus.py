"""Coverage sweep over every rule of the corpus (logsource / data_source based, no analysis):
how many rules name at least one event kind. The numbers may only go up."""

from __future__ import annotations

from collections import Counter

import pytest

from conftest import SIGMA, SPLUNK
from ruleatlas.coverage import configure, events_for, load_data_sources
from ruleatlas.coverage.routing import route_for
from ruleatlas.sources import SOURCES

pytestmark = pytest.mark.slow


def _rules(name: str, root):  # type: ignore[no-untyped-def]
    src = SOURCES[name]
    for f in src.rule_files(root):
        yield from src.load_file(root, f).rules


def test_sigma_sweep() -> None:
    n = covered = windows = windows_specific = routed = 0
    kinds: Counter[str] = Counter()
    for rule in _rules("sigma", SIGMA):
        n += 1
        refs = events_for(rule, None)
        covered += bool(refs)
        kinds.update(str(r) for r in refs)
        if rule.logsource.get("product") == "windows":
            windows += 1
            windows_specific += not any(r.channel.startswith("windows:") for r in refs)
        routed += not route_for(rule, None).any
    print(f"sigma: {n} rules, {covered} with events, windows {windows_specific}/{windows} "
          f"in the table, {routed} routed; top {kinds.most_common(5)}")
    assert n >= 3780
    assert covered == n  # every Sigma rule names its log
    assert windows_specific >= windows - 1  # `product: windows` alone names no channel
    assert routed >= n - 130
    assert kinds["Sysmon 1"] == kinds["Security 4688"] >= 1400


def test_splunk_sweep() -> None:
    n = with_ds = covered = covered_side = 0
    vague = 0  # "Authentication Events (various)" names no log
    for rule in _rules("splunk", SPLUNK):
        n += 1
        with_ds += bool(rule.data_sources)
        covered += bool(events_for(rule, None))
        vague += rule.data_sources == ("Authentication Events (various)",)
    load_data_sources(SPLUNK)
    try:
        for rule in _rules("splunk", SPLUNK):
            covered_side += bool(events_for(rule, None))
    finally:
        configure(None)
    print(f"splunk: {n} rules, {with_ds} with data_source, {covered} with events "
          f"({covered_side} with the data_sources side table)")
    assert n == 1711
    # every data_source name resolves, even without the side table, but the vague one
    assert covered == with_ds - vague >= 1470 and vague <= 2
    assert covered_side == covered


def test_every_otrf_event_has_a_channel_and_most_reach_a_windows_rule() -> None:
    """All ~678,000 OTRF events (NXLog zips and Winlogbeat 6.x tarballs) get an event key; the
    keys the Windows Sigma rules route on cover most of them."""
    from conftest import OTRF
    from ruleatlas.coverage.routing import event_key
    from ruleatlas.engine.readers import ReadError, read_events

    keys: Counter[tuple[str | None, str | None]] = Counter()
    errors: list[ReadError] = []
    for ev in read_events(OTRF / "datasets" / "atomic" / "windows", errors):
        keys[event_key(ev.fields)] += 1
    n = sum(keys.values())
    assert errors == [] and n >= 677_000
    assert sum(c for k, c in keys.items() if k[0] is None) == 0
    accepted: set[tuple[str | None, str | None]] = set()
    for rule in _rules("sigma", SIGMA):
        if rule.logsource.get("product") == "windows":
            route = route_for(rule, None)
            if not route.any:  # the one `product: windows` rule takes everything
                accepted |= {k for k in keys if route.accepts(k)}
    routed = sum(keys[k] for k in accepted)
    print(f"otrf: {n} events, {len(keys)} kinds, {routed} reach at least one Windows rule")
    assert routed >= 0.9 * n
