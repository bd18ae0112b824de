"""Correlation rules, filters, the Sigma 1 pipe aggregation and bad input: never a crash."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ruleatlas.languages import AnalysisContext, analyze
from ruleatlas.languages.sigma import MODIFIERS, analyze_sigma, rule_from_text
from ruleatlas.model import (
    And,
    Not,
    Op,
    Opaque,
    Phase,
    Predicate,
    Rule,
    StageKind,
    analysis_from_dict,
    analysis_to_dict,
    walk,
)
from ruleatlas.sources import SOURCES

CTX = AnalysisContext()

CORRELATION = """\
title: Many failed logons
id: 0e95725d-7320-415d-80f7-004da920fc11
correlation:
    type: value_count
    rules:
        - failed_logon
        - 5638f7c0-ac70-491d-8465-2a65075e0d86
    group-by:
        - ComputerName
        - WorkstationName
    timespan: 1d
    condition:
        gte: 100
        field: User
    aliases:
        user:
            failed_logon: TargetUserName
level: high
"""


def test_correlation_rule():
    a = analyze_sigma(rule_from_text(CORRELATION, "c.yml", 20), CTX)
    assert not a.problems
    (st,) = a.stages
    assert (st.command, st.kind, st.by) == ("correlation", StageKind.AGGREGATE,
                                            ("ComputerName", "WorkstationName"))
    assert st.text.startswith("correlation:\n    type: value_count")
    assert a.group_by == ("ComputerName", "WorkstationName")
    assert a.condition is None
    assert a.result_condition == Predicate("value_count(User)", Op.GE, (100,),
                                           phase=Phase.RESULT)
    c = a.extra["correlation"]
    assert c["type"] == "value_count"
    assert c["rules"] == ["failed_logon", "5638f7c0-ac70-491d-8465-2a65075e0d86"]
    assert c["timespan"] == "1d" and c["group_by"] == ["ComputerName", "WorkstationName"]
    assert c["condition"] == {"gte": 100, "field": "User"}
    assert c["aliases"] == {"user": {"failed_logon": "TargetUserName"}}
    assert st.span is not None and st.span.line == 22  # "correlation:" is line 3 of the doc
    assert analysis_from_dict(analysis_to_dict(a)) == a


def test_event_count_correlation_threshold():
    text = ("title: t\ncorrelation:\n    type: event_count\n    rules: r1\n"
            "    group-by: User\n    timespan: 5m\n    condition:\n        gt: 10\n")
    a = analyze_sigma(rule_from_text(text), CTX)
    assert a.result_condition == Predicate("count", Op.GT, (10,), phase=Phase.RESULT)
    assert a.group_by == ("User",) and a.extra["correlation"]["rules"] == ["r1"]


def test_temporal_extended_condition_is_kept_opaque():
    text = ("title: t\ncorrelation:\n    type: temporal\n    rules: [a, b]\n"
            "    timespan: 5m\n    condition: a and not b\n")
    a = analyze_sigma(rule_from_text(text), CTX)
    assert isinstance(a.result_condition, Opaque)
    assert [p.severity for p in a.problems] == ["unsupported"]


def test_invalid_correlation_reports_errors():
    text = "title: t\ncorrelation:\n    type: bogus\n"
    a = analyze_sigma(rule_from_text(text), CTX)
    assert a.problems and all(p.code == "correlation" for p in a.problems)
    assert any("bogus" in p.message for p in a.problems)
    assert a.stages[0].command == "correlation"


def test_filter_document():
    text = ("title: f\nlogsource:\n    product: windows\nfilter:\n    rules:\n"
            "        - 6f3e2987-db24-4c78-a860-b4f4095a7095\n    selection:\n"
            "        ParentImage: 'C:\\Windows\\explorer.exe'\n    condition: not selection\n")
    a = analyze_sigma(rule_from_text(text), CTX)
    assert not a.problems
    assert [s.command for s in a.stages] == ["selection", "filter"]
    assert a.condition == Not(Predicate("ParentImage", Op.EQ, ("C:\\Windows\\explorer.exe",)))
    assert a.extra["filter"] == {"rules": ["6f3e2987-db24-4c78-a860-b4f4095a7095"]}


def test_pipe_aggregation_is_unsupported_but_selection_kept():
    text = ("title: t\ndetection:\n    selection:\n        EventID: 4625\n"
            "    timeframe: 10m\n    condition: selection | count() by IpAddress > 10\n")
    a = analyze_sigma(rule_from_text(text), CTX)
    assert a.condition == Predicate("EventID", Op.EQ, (4625,))
    assert [s.command for s in a.stages] == ["selection", "condition", "aggregation"]
    agg = a.stages[-1]
    assert agg.kind is StageKind.AGGREGATE and agg.text == "count() by IpAddress > 10"
    assert agg.notes == ("timeframe 10m",)
    assert isinstance(a.result_condition, Opaque)
    (p,) = a.problems
    assert p.severity == "unsupported" and p.code == "aggregation"
    assert p.location is not None and p.location.line == 6
    assert a.extra["timeframe"] == "10m"


def test_timeframe_is_not_a_detection():
    text = ("title: t\ndetection:\n    sel:\n        A: 1\n    timeframe: 1h\n"
            "    condition: all of them\n")
    a = analyze_sigma(rule_from_text(text), CTX)
    assert a.condition == Predicate("A", Op.EQ, (1,))
    assert [p.code for p in a.problems] == ["timeframe"]


def test_generated_query_of_a_collection_member():
    body = "logsource:\n    service: system\ndetection:\n    sel2:\n        EventID: 7045\n"
    query = ("detection:\n  sel1:\n    EventID: 4624\n  sel2:\n    EventID: 7045\n"
             "  condition: sel1 or sel2\n")
    rule = Rule(id="x", source="sigma", path="coll.yml", title="t", language="sigma",
                query=query, body=body, type="detection", line=30,
                extra={"query_generated": True})
    a = analyze_sigma(rule, CTX)
    assert not a.problems
    assert [s.name for s in a.stages[:-1]] == ["sel1", "sel2"]
    p = a.stages[0].condition
    assert isinstance(p, Predicate) and p.span is not None and p.span.line == 30


@pytest.mark.parametrize("text", [
    "",
    "title: t\n",
    "title: t\ndetection: 5\n",
    "title: t\ndetection:\n    condition: sel\n",
    "title: t\ndetection:\n    sel: {}\n    condition: sel\n",
    "title: t\ndetection:\n    sel: []\n    condition: sel\n",
    "title: t\ndetection:\n    sel:\n        A: [1\n    condition: sel\n",
    "title: t\ndetection:\n    sel:\n        1: x\n    condition: sel\n",
    "title: t\ndetection:\n    sel:\n        A: 1\n",
    "title: t\ndetection:\n    sel:\n        - A: 1\n        - x\n    condition: sel\n",
    "title: t\ndetection:\n    sel:\n        A|exists: maybe\n    condition: sel\n",
    "title: t\ndetection:\n    sel:\n        A|windash|contains: '-a -b -c -d'\n"
    "    condition: sel\n",
    "\ufefftitle: t\ndetection:\n    sel:\n        A: '\u00e9\u20ac\U0001d11e*'\n"
    "    condition: sel\n",
])
def test_bad_or_odd_input_never_raises(text: str):
    a = analyze_sigma(rule_from_text(text, "bad.yml", 3), CTX)
    assert a.language == "sigma" and a.stages
    for p in a.problems:
        assert p.location is not None and p.location.line >= 3


def test_yaml_error_is_located():
    text = "title: t\ndetection:\n    sel:\n        A: [1\n    condition: sel\n"
    a = analyze_sigma(rule_from_text(text, "bad.yml", 1), CTX)
    (p,) = a.problems
    assert p.code == "yaml" and p.location is not None and p.location.line >= 4


def test_empty_detection_and_mixed_list():
    text = "title: t\ndetection:\n    sel: {}\n    ok:\n        A: 1\n    condition: sel or ok\n"
    a = analyze_sigma(rule_from_text(text), CTX)
    assert [p.code for p in a.problems] == ["empty-detection"]
    text = ("title: t\ndetection:\n    sel:\n        - A: 1\n          B: 2\n        - 'kw'\n"
            "    condition: sel\n")
    a = analyze_sigma(rule_from_text(text), CTX)
    assert not a.problems
    assert a.condition is not None and And((Predicate("A", Op.EQ, (1,)),
                                            Predicate("B", Op.EQ, (2,)))) in a.condition.args


# ---- property: any detection pySigma or not, the analyzer answers without crashing -----------

_MODS = [*sorted(MODIFIERS), "bogus"]
_scalar = st.one_of(
    st.text(alphabet="ab*?\\%-/ é", max_size=6), st.integers(-5, 5), st.booleans(), st.none(),
    st.floats(allow_nan=False, allow_infinity=False, width=16),
)
_key = st.builds(lambda f, ms: "|".join([f, *ms]),
                 st.sampled_from(["A", "B", ""]), st.lists(st.sampled_from(_MODS), max_size=3))
_value = st.one_of(_scalar, st.lists(_scalar, max_size=3))
_item = st.dictionaries(_key, _value, min_size=1, max_size=3)
_detection = st.one_of(_item, st.lists(st.one_of(_item, _scalar), min_size=1, max_size=3),
                       _scalar)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["sel", "sel_b", "_x", "filter"]), _detection,
                       min_size=1, max_size=3),
       st.sampled_from(["sel", "1 of sel*", "all of them", "sel and not filter", "_x or sel"]))
def test_random_detections_never_crash(dets: dict, cond: str):
    text = yaml.safe_dump({"title": "t", "detection": {**dets, "condition": cond}},
                          sort_keys=False, allow_unicode=True)
    a = analyze_sigma(rule_from_text(text, "h.yml", 1), CTX)
    assert not [p for p in a.problems if p.code == "crash"], a.problems
    assert a.stages[-1].command == "condition"
    for p in a.problems:
        assert p.location is not None
    for st_ in a.stages[:-1]:
        for n in walk(st_.condition):
            if isinstance(n, Predicate | Opaque):
                assert n.span is not None and n.stage == st_.index


def test_reader_documents_rule_correlation_filter(tmp_path):
    """A three-document file through the real Sigma reader, then the analyzer: file lines."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "corr.yml").write_text(
        "title: Failed logon\nname: failed_logon\nid: 5638f7c0-ac70-491d-8465-2a65075e0d86\n"
        "status: test\nlogsource:\n    product: windows\n    service: security\n"
        "detection:\n    selection:\n        EventID: 4625\n    condition: selection\n"
        "level: low\n---\n"
        "title: Many failed logons\nid: 0e95725d-7320-415d-80f7-004da920fc11\nstatus: test\n"
        "correlation:\n    type: event_count\n    rules:\n        - failed_logon\n"
        "    group-by:\n        - TargetUserName\n    timespan: 5m\n    condition:\n"
        "        gte: 10\nlevel: high\n---\n"
        "title: Filter admin\nid: 1e95725d-7320-415d-80f7-004da920fc11\nlogsource:\n"
        "    product: windows\nfilter:\n    rules:\n"
        "        - 5638f7c0-ac70-491d-8465-2a65075e0d86\n    selection:\n"
        "        TargetUserName: admin\n    condition: not selection\n",
        encoding="utf-8",
    )
    src = SOURCES["sigma"]
    rules = [r for p in src.rule_files(tmp_path) for r in src.load_file(tmp_path, p).rules]
    got = {r.type: analyze(r) for r in rules}
    assert set(got) == {"detection", "correlation", "filter"}
    assert not any(a.problems for a in got.values())
    det = got["detection"].condition
    assert isinstance(det, Predicate) and det.span is not None and det.span.line == 10
    corr = got["correlation"]
    assert corr.stages[0].span is not None and corr.stages[0].span.line == 17
    assert corr.extra["correlation"]["rules"] == ["failed_logon"]
    assert corr.group_by == ("TargetUserName",)
    filt = got["filter"]
    assert isinstance(filt.condition, Not) and isinstance(filt.condition.arg, Predicate)
    assert filt.condition.arg.span is not None and filt.condition.arg.span.line == 36
    assert filt.extra["filter"]["rules"] == ["5638f7c0-ac70-491d-8465-2a65075e0d86"]
