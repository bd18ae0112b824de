"""The pre-filter's anchors on Elastic trees: fields of the ECS view the event kind decides
(``host.os.type``, ``event.category``, ...) rank below any other literal."""

from __future__ import annotations

from ruleatlas.engine.elastic_semantics import elastic_tree
from ruleatlas.engine.matcher import Prefilter, anchors
from ruleatlas.languages.eql import analyze_eql_query


def tree(q: str):  # type: ignore[no-untyped-def]
    return elastic_tree(analyze_eql_query(q).condition)


def test_anchor_prefers_a_process_name_to_host_os_type() -> None:
    # "windows" and "cmd.exe" are both 7 characters: the name is the anchor, not the OS
    t = tree('process where host.os.type == "windows" and process.name : "cmd.exe"')
    assert anchors(t) == {("process.name", "cmd.exe")}


def test_anchor_prefers_a_short_name_to_the_category() -> None:
    # "a.exe" (5) is shorter than "process" (7), yet the category is in every process event
    t = tree('process where process.name : ("a.exe", "bb.exe")')
    assert anchors(t) == {("process.name", "a.exe"), ("process.name", "bb.exe")}


def test_category_still_anchors_a_rule_with_nothing_else() -> None:
    t = tree('any where event.category == "registry" and not process.name : "x.exe"')
    got = anchors(t)
    assert got is not None and {f for f, _ in got} == {"event.category"}
    pf = Prefilter([got])
    assert pf.candidates({"event.category": ["registry"], "host.os.type": "windows"}) == [0]
    assert pf.candidates({"event.category": ["process"], "host.os.type": "windows"}) == []


def test_a_value_the_view_never_gives_is_the_best_anchor() -> None:
    # every ECS view of a Windows event has host.os.type "windows" and event.kind "event"
    t = tree('iam where host.os.type == "linux" and event.outcome == "success"')
    assert anchors(t) == {("host.os.type", "linux")}
    from ruleatlas.languages.kql import analyze_kql_query

    k = elastic_tree(analyze_kql_query(
        "event.kind: event and data_stream.dataset: sentinel_one.alert").condition)
    assert anchors(k) == {("data_stream.dataset", "sentinel_one.alert")}
