"""SPL searches that compute fields before filtering on them (``engine.pipeline``): ``eval``,
``rex``, ``rename`` and ``addtotals`` replayed in search order, through the real SPL analyzer and
the engine, on hand-made events; and the ESCU corpus figures."""

from __future__ import annotations

import pytest

from conftest import run_spl, spl_rule
from ruleatlas.engine.catalog import from_db
from ruleatlas.engine.events import Event
from ruleatlas.engine.pipeline import node_fields, plan
from ruleatlas.engine.runner import Engine, prepare
from ruleatlas.languages.spl.analyze import analyze_query


def rule(search: str):
    return spl_rule(search)


def run(search: str, rows: list[dict]) -> list[dict]:
    return run_spl(search, rows, route=False)


def positions(search: str, rows: list[dict]) -> list[int]:
    return [m["_pos"] for m in run(search, rows)]


def test_eval_then_where_on_the_computed_field():
    q = ("EventCode=4769 | eval s=if(lower(ServiceName)="
         "lower(mvindex(split(TargetUserName,\"@\"),0)),1,0) | where s=1")
    rows = [{"EventCode": 4769, "ServiceName": "DC01$", "TargetUserName": "dc01$@CORP.LOCAL"},
            {"EventCode": 4769, "ServiceName": "krbtgt", "TargetUserName": "alice@CORP.LOCAL"},
            {"EventCode": 4624, "ServiceName": "DC01$", "TargetUserName": "dc01$@CORP.LOCAL"}]
    found = run(q, rows)
    assert [m["_pos"] for m in found] == [1]
    # what the eval read is shown with the finding, next to the computed value
    assert found[0]["s"] == 1 and found[0]["ServiceName"] == "DC01$"


def test_assignments_of_one_eval_see_each_other_and_null_removes():
    q = "x=* | eval a=len(x), b=a*2, x=null() | where b>6 AND isnull(x)"
    assert positions(q, [{"x": "abcd"}, {"x": "ab"}]) == [1]


def test_rex_named_groups_then_search():
    q = ('EventCode=1 | rex field=CommandLine "(?<tool>\\w+)\\.exe\\s+(?<arg>\\S+)" '
         '| search tool=psexec arg="\\\\\\\\*"')
    rows = [{"EventCode": 1, "CommandLine": "psexec.exe \\\\host cmd"},
            {"EventCode": 1, "CommandLine": "psexec.exe -accepteula"},
            {"EventCode": 1, "CommandLine": "notepad.exe \\\\host"},
            {"EventCode": 1}]
    assert positions(q, rows) == [1]


def test_rex_max_match_makes_a_multivalue():
    q = 'x=* | rex field=x max_match=0 "(?<n>\\d+)" | where mvcount(n) >= 3'
    assert positions(q, [{"x": "1 22 333"}, {"x": "1 2"}]) == [1]


def test_rex_mode_sed_rewrites_the_field():
    q = 'x=* | rex field=x mode=sed "s/\\d+/N/g" | search x="aN-bN"'
    assert positions(q, [{"x": "a1-b22"}, {"x": "a1-c2"}]) == [1]


def test_rename_then_filter_on_the_new_name():
    q = "EventCode=4720 | rename TargetUserName as user | where like(user, \"adm%\")"
    rows = [{"EventCode": 4720, "TargetUserName": "admin2"},
            {"EventCode": 4720, "TargetUserName": "bob", "user": "adm-shadow"}]
    # rename replaces: event 2's own user field is overwritten by its TargetUserName
    assert positions(q, rows) == [1]


def test_wildcard_rename_then_filter():
    q = 'x=* | rename properties.* as * | search initiatedBy.user="adm*"'
    rows = [{"x": 1, "properties.initiatedBy.user": "admin"},
            {"x": 1, "properties.initiatedBy.user": "bob"},
            {"x": 1, "initiatedBy.user": "admin"}]  # Splunk renames over it? no source: kept
    assert positions(q, rows) == [1, 3]


def test_addtotals_then_threshold():
    q = ("x=* | eval a=if(match(x,\"iex\"),4,0), b=if(match(x,\"http\"),3,0) "
         "| addtotals fieldname=Score a, b | where Score >= 7")
    assert positions(q, [{"x": "iex http"}, {"x": "iex"}, {"x": "http"}]) == [1]


def test_a_filter_before_an_eval_reads_the_raw_field():
    """Order matters: ``user`` is filtered as the event has it, then overwritten."""
    q = "user=alice | eval user=\"x\" | where user=\"x\""
    assert positions(q, [{"user": "alice"}, {"user": "bob"}]) == [1]


def test_filters_that_read_no_computed_field_move_to_the_head():
    """The head holds every filter the eval does not feed: its literals anchor the
    pre-filter, so only candidate events pay for the eval."""
    q = ('EventCode=4104 | eval l=len(ScriptBlockText) | search ScriptBlockText="*iex*" '
         '| where l > 10')
    a = analyze_query(q, {})
    p = plan(a)
    assert p is not None
    assert [s.kind for s in p.steps] == ["eval", "filter"]
    assert node_fields(p.head) == {"EventCode", "ScriptBlockText"}
    assert node_fields(p.steps[1].node) == {"l"}
    er = rule(q)
    _, anchors = er.compiled({})
    assert anchors and any("iex" in lit for _, lit in anchors)


def test_eval_then_stats_groups_by_the_computed_value():
    q = "x=* | eval h=lower(host) | stats count by h | where count > 1"
    found = run(q, [{"x": 1, "host": "A"}, {"x": 1, "host": "a"}, {"x": 1, "host": "b"}])
    assert [(m["h"], m["count"]) for m in found] == [("a", 2)]


@pytest.mark.parametrize(("search", "reason"), [
    ("x=* | lookup users u OUTPUT dept | search dept=it", "lookup"),
    ("x=* | eval t=strftime(_time, \"%H\") | where t > 20", "strftime"),
    ("x=* | iplocation src | search Country=US", "iplocation"),
    ("x=* | rename *_a as *_b* | search x_b=1", "wildcards do not pair"),
    ("x=* | lookup geo ip OUTPUT country | stats count by country", "lookup"),
])
def test_what_the_engine_cannot_compute_is_not_runnable_with_the_reason(search, reason):
    er = rule(search)
    assert not er.runnable
    assert reason in (er.reason or ""), er.reason


def test_an_eval_nothing_reads_may_use_an_unknown_function():
    """An assignment no filter or aggregation reads is skipped when the engine cannot compute
    it (display fields such as ``firstTime``), as Splunk's result would not depend on it."""
    assert positions("x=1 | eval shown=strftime(_time, \"%H\")", [{"x": 1}, {"x": 2}]) == [1]


def test_escu_rules_made_runnable_by_the_pipeline(corpus_db):
    """Ratchet on the corpus: ESCU rules runnable on events (559 before eval/rex/rename/addtotals
    were replayed; 678 with the steps after the aggregation and spath too); the
    sAMAccountName-spoofing rule runs and fires on a 4769 whose service is the requesting
    machine account."""
    rules = [lr for lr in from_db(corpus_db) if lr.rule.source == "splunk"]
    prepared = {lr.rule.title: prepare(lr.rule, lr.analysis) for lr in rules}
    runnable = sum(p.runnable for p in prepared.values())
    assert runnable >= 672
    er = prepared["Suspicious Kerberos Service Ticket Request"]
    assert er.runnable, er.reason
    rows = [{"Channel": "Security", "EventID": 4769, "ServiceName": "DC01$",
             "TargetUserName": "dc01$@CORP.LOCAL"},
            {"Channel": "Security", "EventID": 4769, "ServiceName": "krbtgt",
             "TargetUserName": "alice@CORP.LOCAL"}]
    evs = [Event(dict(r), "mem", i) for i, r in enumerate(rows, 1)]
    assert [f.event.position for f in Engine([er]).run(evs)] == [1]


def test_outlier_rule_eval_after_the_aggregation():
    """The ESCU "unusual number of ..." shape: stats, eventstats, eval a bound, eval a flag,
    search the flag; the evals and the search run on the last aggregation's rows, in order."""
    q = ("EventCode=4625 | stats dc(user) as users by src | eventstats avg(users) as avg "
         "| eval upper=avg*2 | eval isOutlier=if(users > upper, 1, 0) | search isOutlier=1")
    rows = [{"EventCode": 4625, "src": s, "user": "u"} for s in "abc"]
    rows += [{"EventCode": 4625, "src": "d", "user": f"u{i}"} for i in range(6)]
    rows += [{"EventCode": 4624, "src": "e", "user": f"v{i}"} for i in range(9)]
    found = run(q, rows)
    assert [(m["src"], m["users"], m["isOutlier"]) for m in found] == [("d", 6, 1)]
    assert found[0]["upper"] == 4.5


def test_a_result_filter_on_a_lookup_output_is_not_runnable():
    er = rule("x=* | stats count by process | lookup tools process OUTPUT isutility "
              "| eval u=1 | where isutility=1")
    assert not er.runnable
    assert "lookup" in (er.reason or ""), er.reason


def test_spath_json_every_field_then_search():
    q = ('sourcetype=o365 | spath input=Parameters '
         '| search Name.ForwardingSmtpAddress=* Rules{}.action=forward')
    doc = ('{"Name": {"ForwardingSmtpAddress": "x@evil.example"}, '
           '"Rules": [{"action": "keep"}, {"action": "forward"}]}')
    rows = [{"Parameters": doc}, {"Parameters": '{"Name": {}}'}, {"Parameters": "not json"}]
    assert positions(q, rows) == [1]


def test_spath_path_and_output():
    q = 'x=* | spath input=x output=who path=actor.name | where who="alice"'
    assert positions(q, [{"x": '{"actor": {"name": "alice"}}'}, {"x": '{"actor": {}}'}]) == [1]


def test_spath_xml_with_attributes_and_namespace():
    from ruleatlas.engine.pipeline import spath_fields

    xml = ('<RuleAndFileData xmlns="http://schemas.microsoft.com/x"><PolicyName>EXE</PolicyName>'
           '<FullFilePath>%OSDRIVE%\\USERS\\A\\APPDATA\\X.EXE</FullFilePath>'
           '<Fqbn Kind="publisher">-</Fqbn></RuleAndFileData>')
    got = spath_fields(xml)
    assert got["RuleAndFileData.PolicyName"] == "EXE"
    assert got["RuleAndFileData.FullFilePath"].endswith("X.EXE")
    assert got["RuleAndFileData.Fqbn{@Kind}"] == "publisher"
    assert spath_fields("<a><b>1</b><b>2</b></a>") == {"a.b": ["1", "2"]}
    assert spath_fields("<broken") == {} and spath_fields("") == {}


def test_a_wildcard_windows_source_is_checked_on_the_channel():
    """``source="XmlWinEventLog:Microsoft-Windows-AppLocker/*"`` names no single channel for
    routing: on events without ``source`` it reads ``Channel``, so a Security event does not
    pass it (it used to, and the AppLocker rules aggregated every event)."""
    q = 'source="XmlWinEventLog:Microsoft-Windows-AppLocker/*" EventCode=8004'
    rows = [{"Channel": "Microsoft-Windows-AppLocker/EXE and DLL", "EventID": 8004},
            {"Channel": "Security", "EventID": 8004},
            {"source": "XmlWinEventLog:Microsoft-Windows-AppLocker/MSI and Script",
             "EventID": 8004}]
    assert positions(q, rows) == [1, 3]


def test_spath_refuses_an_entity_bomb():
    """Hostile XML in an event (billion laughs) yields no fields, not a hang or a crash."""
    from ruleatlas.engine.pipeline import spath_fields

    ents = "".join(f'<!ENTITY l{i + 1} "{f"&l{i};" * 10}">' for i in range(9))
    bomb = f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY l0 "lol">{ents}]><x>&l9;</x>'
    assert spath_fields(bomb) == {}


def test_a_filter_on_a_renamed_away_field_stays_after_the_rename():
    """``rename a as b | search a=1``: in Splunk ``a`` is gone after the rename, so nothing
    matches; the filter must not move ahead of the rename."""
    assert positions("x=* | rename a as b | search a=1", [{"x": 1, "a": 1}]) == []
    assert positions("x=* | rename a as b | search b=1", [{"x": 1, "a": 1}]) == [1]
