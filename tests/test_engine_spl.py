"""SPL semantics of the engine on hand-built model trees (what the SPL analyzer produces) and
hand-made events: search terms, where (cased), eval functions, regex, stats/eventstats + where,
and the loud gaps (not runnable)."""

from __future__ import annotations

import pytest

from ruleatlas.engine.aggregate import AggSpec, agg_spec
from ruleatlas.engine.compile import NotRunnable, compile_node
from ruleatlas.engine.events import Event
from ruleatlas.engine.functions import FUNCTIONS, compile_term
from ruleatlas.engine.runner import Engine, prepare
from ruleatlas.languages.spl.analyze import analyze_query
from ruleatlas.model import (
    AggFunc,
    Aggregate,
    Analysis,
    And,
    Bin,
    Call,
    Condition,
    FieldRef,
    Not,
    Op,
    Opaque,
    Pattern,
    Phase,
    Predicate,
    Regex,
    Rule,
    Stage,
    StageKind,
    Wild,
)


def ev(**f):
    return f


def cond(expr) -> Condition:
    return Condition(expr, text="t")


def parse_stats(command: str, text: str) -> AggSpec:
    """The aggregation of one SPL command, lowered by the SPL analyzer (``x | <text>``)."""
    a = analyze_query(f"x | {text}", {})
    steps = [s for s in a.steps if isinstance(s, Aggregate) and s.command == command]
    if len(steps) != 1:
        raise NotRunnable(f"{text!r} does not parse as one {command} command")
    return agg_spec(steps[0])


def run_cond(expr, fields) -> bool:
    return compile_node(cond(expr))(fields)


def f(name):
    return FieldRef(name)


# ------------------------------------------------------------------------------ search terms


def test_search_value_case_insensitive_with_wildcards():
    p = Predicate("process_name", Op.EQ, (Pattern((Wild.ANY, "cmd.exe")),))
    m = compile_node(p)
    assert m(ev(process_name="C:\\X\\CMD.EXE"))
    assert not m(ev(process_name="cmd.exe.bak"))


def test_ne_needs_the_field():
    m = compile_node(Predicate("user", Op.NE, ("SYSTEM",)))
    assert m(ev(user="bob"))
    assert not m(ev(user="system"))
    assert not m(ev())  # field!=x is false when the field is missing
    assert compile_node(Not(Predicate("user", Op.EQ, ("SYSTEM",))))(ev())  # NOT x=y is true


def test_in_values():
    m = compile_node(Predicate("EventCode", Op.IN, (4624, 4625)))
    assert m(ev(EventCode="4625"))
    assert not m(ev(EventCode="4634"))


def test_where_is_case_sensitive():
    m = compile_node(Predicate("user", Op.EQ, ("Admin",), cased=True))
    assert m(ev(user="Admin"))
    assert not m(ev(user="admin"))


def test_regex_command():
    m = compile_node(Predicate("cmd", Op.REGEX, (Regex(r"-e(nc)?\s"),)))
    assert m(ev(cmd="powershell -enc AAA"))
    assert not m(ev(cmd="powershell -ENC AAA"))


def test_where_field_equals_field():
    m = compile_node(Predicate("a", Op.EQ, (FieldRef("b"),), cased=True))
    assert m(ev(a="x", b="x"))
    assert not m(ev(a="x", b="X"))


# ------------------------------------------------------------------------------ functions


@pytest.mark.parametrize(("expr", "fields", "want"), [
    (Call(">", (Call("len", (f("cmd"),)), 5)), ev(cmd="abcdef"), True),
    (Call(">", (Call("len", (f("cmd"),)), 5)), ev(cmd="abc"), False),
    (Call(">", (Call("len", (f("cmd"),)), 5)), ev(), False),  # null -> false
    (Call("like", (f("p"), "%\\\\temp\\\\%")), ev(p="c:\\temp\\x"), True),
    (Call("like", (f("p"), "c:_x")), ev(p="c:\\x"), True),
    (Call("like", (f("p"), "%TEMP%")), ev(p="c:\\temp\\x"), False),  # case-sensitive
    (Call("match", (f("p"), "^[a-z]+\\d$")), ev(p="abc1"), True),
    (Call("match", (f("p"), "^[a-z]+\\d$")), ev(p="ABC1"), False),
    (Call("==", (Call("lower", (f("u"),)), "admin")), ev(u="ADMIN"), True),
    (Call("==", (Call("upper", (f("u"),)), "ADMIN")), ev(u="admin"), True),
    (Call("==", (Call("coalesce", (f("a"), f("b"))), "y")), ev(b="y"), True),
    (Call("==", (Call("if", (Call("isnull", (f("a"),)), "none", "some")), "none")), ev(), True),
    (Call("==", (Call("case", (Call("==", (f("a"), 1)), "one", True, "other")), "other")),
     ev(a=2), True),
    (Call(">", (Call("tonumber", (f("n"),)), 10)), ev(n="11"), True),
    (Call(">", (Call("tonumber", (f("n"), 16)), 10)), ev(n="ff"), True),
    (Call("==", (Call("replace", (f("s"), "a+", "b")), "xbx")), ev(s="xaaax"), True),
    (Call("==", (Call("substr", (f("s"), 2, 3)), "bcd")), ev(s="abcdef"), True),
    (Call("==", (Call("substr", (f("s"), -2)), "ef")), ev(s="abcdef"), True),
    (Call("isnull", (f("x"),)), ev(), True),
    (Call("isnotnull", (f("x"),)), ev(x=""), True),
    (Call("cidrmatch", ("10.0.0.0/8", f("ip"))), ev(ip="10.2.3.4"), True),
    (Call("cidrmatch", ("10.0.0.0/8", f("ip"))), ev(ip="bad"), False),
    (Call("==", (Call("mvcount", (f("m"),)), 3)), ev(m=["a", "b", "c"]), True),
    (Call("==", (Call("mvindex", (f("m"), 1)), "b")), ev(m=["a", "b", "c"]), True),
    (Call("==", (Call("mvcount", (Call("split", (f("s"), ",")),)), 3)), ev(s="a,b,c"), True),
    (Call("==", (Call("trim", (f("s"),)), "x")), ev(s="  x "), True),
    (Call("==", (Call("round", (f("n"), 1)), 2.5)), ev(n="2.46"), True),
    (Call("==", (Call("abs", (f("n"),)), 3)), ev(n=-3), True),
    (Call("==", (Call("urldecode", (f("u"),)), "a b/")), ev(u="a+b%2F"), True),
    (Call("in", (f("u"), "a", "b")), ev(u="b"), True),
    (Call("==", (Call(".", (f("a"), f("b"))), "xy")), ev(a="x", b="y"), True),
    (Call("==", (Call("+", (f("a"), 1)), 3)), ev(a="2"), True),
    (Call("AND", (Call(">", (f("a"), 1)), Call("<", (f("a"), 3)))), ev(a=2), True),
    (Call("OR", (Call(">", (f("a"), 5)), Call("NOT", (Call("isnull", (f("a"),)),)))),
     ev(a=2), True),
    (Call("<", (f("a"), 10)), ev(a="9"), True),  # numbers compare as numbers
    (Call("<", (f("a"), "b")), ev(a="a"), True),  # strings as strings
    (Call("==", (f("u"), "ÄÖ")), ev(u="ÄÖ"), True),  # unicode
    (Call("==", (f("u"), "")), ev(u=""), True),  # empty value
])
def test_functions(expr, fields, want):
    assert run_cond(expr, fields) is want


def test_unknown_function_is_not_runnable():
    with pytest.raises(NotRunnable, match="nosuchfn"):
        compile_node(cond(Call("nosuchfn", (f("a"),))))


def test_function_table_names():
    for name in ("like", "match", "len", "lower", "upper", "tonumber", "replace", "substr",
                 "isnull", "isnotnull", "cidrmatch", "mvcount"):
        assert name in FUNCTIONS
    assert compile_term(Call("len", ("abc",)))({}) == 3


# ------------------------------------------------------------------------------ rules


def spl_rule(analysis: Analysis):
    r = Rule(id="r1", source="splunk", path="detections/x.yml", title="T", language="spl",
             query="q", body="b")
    return prepare(r, analysis)


def events(rows):
    return [Event(dict(r), "mem", i) for i, r in enumerate(rows, 1)]


def test_stats_threshold_rule():
    a = Analysis(
        language="spl",
        stages=(Stage(0, "search", "EventCode=4625"),
                Stage(1, "stats", "stats dc(user) as users count by src",
                      kind=StageKind.AGGREGATE, by=("src",)),
                Stage(2, "where", "where users > 2", phase=Phase.RESULT)),
        steps=(Aggregate(1, "stats", ("src",), (AggFunc("dc", "user", "users"),
                                                AggFunc("count"))),),
        condition=Predicate("EventCode", Op.EQ, (4625,)),
        result_condition=Predicate("users", Op.GT, (2,), phase=Phase.RESULT),
    )
    er = spl_rule(a)
    assert er.runnable, er.reason
    rows = [{"EventCode": 4625, "src": "1.1.1.1", "user": u} for u in ("a", "b", "c", "c")]
    rows += [{"EventCode": 4625, "src": "2.2.2.2", "user": "a"},
             {"EventCode": 4624, "src": "2.2.2.2", "user": "b"},
             {"EventCode": 4625, "user": "z"}]  # no by-field: dropped
    found = list(Engine([er], route=False).run(events(rows)))
    assert len(found) == 1
    assert found[0].matched["src"] == "1.1.1.1"
    assert found[0].matched["users"] == 3
    assert found[0].matched["count"] == 4


def test_eventstats_keeps_events():
    a = Analysis(
        language="spl",
        stages=(Stage(0, "search", "x"),
                Stage(1, "eventstats", "eventstats count as n by host",
                      kind=StageKind.AGGREGATE, by=("host",))),
        steps=(Aggregate(1, "eventstats", ("host",), (AggFunc("count", None, "n"),)),),
        condition=Predicate("x", Op.EXISTS, (True,)),
        result_condition=Predicate("n", Op.GE, (2,)),
    )
    er = spl_rule(a)
    found = list(Engine([er], route=False).run(events(
        [{"x": 1, "host": "a"}, {"x": 2, "host": "a"}, {"x": 3, "host": "b"}])))
    assert sorted(fd.matched["x"] for fd in found) == [1, 2]


def test_parse_stats_functions():
    s = parse_stats("stats", "stats count min(_time) as firstTime max(_time) as lastTime "
                             "values(dest) as dest dc(user) by src, host")
    assert [x.name for x in s.funcs] == ["count", "firstTime", "lastTime", "dest", "dc(user)"]
    assert s.by == ("src", "host")
    with pytest.raises(NotRunnable):
        parse_stats("stats", "stats perc95(x) by y")


def test_opaque_is_not_runnable():
    a = Analysis(language="spl", condition=And((Predicate("a", Op.EQ, ("b",)),
                                                Opaque("| foo bar", "unknown command foo"))))
    er = spl_rule(a)
    assert not er.runnable
    assert "unknown command foo" in (er.reason or "")


def test_generating_command_is_not_runnable():
    a = Analysis(language="spl", stages=(Stage(0, "tstats", "| tstats count from ...",
                                               kind=StageKind.GENERATE),))
    assert "tstats" in (spl_rule(a).reason or "")


def test_filter_on_eval_field_is_not_runnable():
    a = Analysis(
        language="spl",
        stages=(Stage(0, "search", "x"), Stage(1, "eval", "eval l=len(cmd)",
                                               kind=StageKind.TRANSFORM),
                Stage(2, "where", "where l > 10")),
        condition=Predicate("l", Op.GT, (10,)),
        extra={"computed_fields": ["l"]},
    )
    er = spl_rule(a)
    assert not er.runnable
    assert "l" in (er.reason or "")


def test_unknown_aggregation_is_not_runnable():
    a = Analysis(language="spl", stages=(Stage(0, "streamstats", "streamstats count",
                                               kind=StageKind.AGGREGATE),))
    assert "streamstats" in (spl_rule(a).reason or "")


def test_spl_eventcode_reads_eventid_through_the_splunk_map():
    a = Analysis(language="spl", condition=Predicate("EventCode", Op.EQ, (4688,)))
    er = spl_rule(a)
    found = list(Engine([er]).run(events([{"Channel": "Security", "EventID": "4688"}])))
    assert len(found) == 1


# ------------------------------------------------------------------------------ attack_data

XML = ("<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System>"
       "<Provider Name='Microsoft-Windows-Sysmon'/><EventID>1</EventID>"
       "<EventRecordID>{n}</EventRecordID><Channel>Microsoft-Windows-Sysmon/Operational"
       "</Channel><Computer>host1</Computer></System><EventData>"
       "<Data Name='Image'>{image}</Data><Data Name='CommandLine'>{cmd}</Data>"
       "</EventData></Event>\n")


def _splunk_test_rule(url: str):
    from ruleatlas.engine.catalog import LoadedRule
    from ruleatlas.model import TestRef

    rule = Rule(id="s1", source="splunk", path="detections/x.yml", title="Evil", language="spl",
                query="q", body="b",
                tests=(TestRef("True Positive Test", "attack_data", url),))
    a = Analysis(language="spl", condition=And((
        Predicate("EventCode", Op.EQ, (1,)),
        Predicate("CommandLine", Op.EQ, (Pattern((Wild.ANY, "-enc", Wild.ANY)),)))))
    return LoadedRule(rule, a, "/nonexistent")


URL = ("https://media.githubusercontent.com/media/splunk/attack_data/master/datasets/"
       "attack_techniques/T1059.001/x/windows-sysmon.log")


def test_attack_data_from_a_local_copy(tmp_path):
    from ruleatlas.engine.testing import run_test

    p = tmp_path / "datasets/attack_techniques/T1059.001/x/windows-sysmon.log"
    p.parent.mkdir(parents=True)
    p.write_text(XML.format(n=1, image="C:\\a.exe", cmd="ps -ENC AAA")
                 + XML.format(n=2, image="C:\\b.exe", cmd="nothing"))
    r = run_test(_splunk_test_rule(URL), tmp_path)
    assert (r.status, r.matched) == ("pass", 1), r.reason


def test_attack_data_without_a_local_copy_is_no_data(tmp_path):
    from ruleatlas.engine.testing import run_test

    r = run_test(_splunk_test_rule(URL), None)
    assert r.status == "no-data" and "--attack-data" in (r.reason or "")
    r = run_test(_splunk_test_rule(URL), tmp_path)
    assert r.status == "no-data" and "windows-sysmon.log" in (r.reason or "")


def test_stdev_var_median():
    from ruleatlas.engine.aggregate import Aggregator

    spec = parse_stats("stats", "stats stdev(x) as s stdevp(x) as sp var(x) as v median(x) as m "
                                "avg(x) as a by h")
    agg = Aggregator(spec, lambda r: True)
    for x in (2, 4, 4, 4, 5, 5, 7, 9):
        agg.add({"x": x, "h": "a"}, None)
    [(row, _)] = list(agg.rows())
    assert row["sp"] == 2.0 and row["a"] == 5.0 and row["m"] == 4
    assert abs(row["v"] - 32 / 7) < 1e-9


def test_stats_with_eval_argument_says_so():
    with pytest.raises(NotRunnable, match="nested expression"):
        parse_stats("stats", "stats dc(eval(if(a<1, b, null))) as n by h")


def test_escu_stats_stages_parse():
    """Every stats/eventstats stage of the ESCU detections: parsed, or refused with a reason.
    Ratchet: the parsed share may only go up."""
    import re

    import yaml

    from conftest import SPLUNK

    ok = refused = 0
    for p in sorted((SPLUNK / "detections").rglob("*.yml")):
        doc = yaml.load(p.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
        q = doc.get("search", "") if isinstance(doc, dict) else ""
        for seg in q.split("|"):
            m = re.match(r"\s*(stats|eventstats)\b", seg)
            if not m:
                continue
            try:
                # a segment that ends a subsearch ends with its closing bracket
                parse_stats(m.group(1).lower(), seg.strip().removesuffix("]"))
                ok += 1
            except NotRunnable as exc:
                assert str(exc)
                refused += 1
    assert ok >= 857
    assert ok + refused >= 900


def test_attack_data_rule_needs_a_match_in_one_file_not_each(tmp_path):
    import dataclasses

    from ruleatlas.engine.testing import run_test
    from ruleatlas.model import TestRef

    base = tmp_path / "datasets/attack_techniques/T1059.001/x"
    base.mkdir(parents=True)
    (base / "windows-sysmon.log").write_text(XML.format(n=1, image="a", cmd="ps -enc A"))
    (base / "windows-security.log").write_text(XML.format(n=1, image="b", cmd="nothing"))
    lr = _splunk_test_rule(URL)
    two = dataclasses.replace(lr.rule, tests=(
        TestRef("t", "attack_data", URL),
        TestRef("t", "attack_data", URL.replace("windows-sysmon", "windows-security"))))
    r = run_test(dataclasses.replace(lr, rule=two), tmp_path)
    assert (r.status, r.matched) == ("pass", 1), r.reason
    (base / "windows-sysmon.log").write_text(XML.format(n=1, image="a", cmd="nothing"))
    r = run_test(dataclasses.replace(lr, rule=two), tmp_path)
    assert r.status == "fail" and "no finding" in (r.reason or "")


def test_channel_terms_are_decided_by_routing_when_the_event_lacks_them():
    a = Analysis(language="spl", condition=And((
        Predicate("source", Op.EQ, ("XmlWinEventLog:Microsoft-Windows-Sysmon/Operational",)),
        Not(Predicate("sourcetype", Op.EQ, ("noise",))),
        Predicate("EventCode", Op.EQ, (1,)))))
    er = spl_rule(a)
    evs = events([
        {"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1},  # EVTX: no source
        {"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1,
         "source": "XmlWinEventLog:Microsoft-Windows-Sysmon/Operational"},  # Splunk export
        {"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1, "source": "other"},
        {"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1, "sourcetype": "noise"},
    ])
    assert [f.event.position for f in Engine([er], route=False).run(evs)] == [1, 2]


def test_stats_then_eventstats_chain():
    a = Analysis(
        language="spl",
        stages=(Stage(0, "search", "EventCode=4670"),
                Stage(1, "stats", "stats dc(object) as objectCount by src_user, host",
                      kind=StageKind.AGGREGATE, by=("src_user", "host")),
                Stage(2, "eventstats", "eventstats avg(objectCount) as comp_avg by host",
                      kind=StageKind.AGGREGATE, by=("host",), phase=Phase.RESULT),
                Stage(3, "where", "where objectCount > comp_avg", phase=Phase.RESULT)),
        steps=(Aggregate(1, "stats", ("src_user", "host"),
                         (AggFunc("dc", "object", "objectCount"),)),
               Aggregate(2, "eventstats", ("host",),
                         (AggFunc("avg", "objectCount", "comp_avg"),))),
        condition=Predicate("EventCode", Op.EQ, (4670,)),
        result_condition=cond(Call(">", (f("objectCount"), f("comp_avg")))),
    )
    er = spl_rule(a)
    assert er.runnable, er.reason
    rows = [{"EventCode": 4670, "host": "h", "src_user": u, "object": o}
            for u, o in [("a", 1), ("a", 2), ("a", 3), ("b", 1)]]
    found = list(Engine([er], route=False).run(events(rows)))
    assert [fd.matched["src_user"] for fd in found] == ["a"]  # 3 objects > average 2


def test_filter_between_aggregations_is_not_runnable():
    a = Analysis(
        language="spl",
        stages=(Stage(0, "search", "x"),
                Stage(1, "stats", "stats count by h", kind=StageKind.AGGREGATE, by=("h",)),
                Stage(2, "where", "where count > 1", phase=Phase.RESULT,
                      condition=Predicate("count", Op.GT, (1,))),
                Stage(3, "stats", "stats count as n", kind=StageKind.AGGREGATE)),
        condition=Predicate("x", Op.EXISTS, (True,)),
    )
    assert "between two aggregations" in (spl_rule(a).reason or "")


def test_bucket_span_then_stats_by_time():
    a = Analysis(
        language="spl",
        stages=(Stage(0, "search", "x"),
                Stage(1, "bucket", "| bucket span=5m _time", kind=StageKind.TRANSFORM),
                Stage(2, "stats", "stats count by _time", kind=StageKind.AGGREGATE,
                      by=("_time",))),
        steps=(Bin(1, ("_time",), "5m"),
               Aggregate(2, "stats", ("_time",), (AggFunc("count"),))),
        condition=Predicate("x", Op.EXISTS, (True,)),
        result_condition=Predicate("count", Op.GT, (1,)),
    )
    er = spl_rule(a)
    assert er.runnable, er.reason
    times = ["2020-09-02T01:41:00Z", "2020-09-02T01:44:59Z", "2020-09-02T01:46:00Z"]
    found = list(Engine([er], route=False).run(events(
        [{"x": 1, "TimeCreated": t} for t in times])))
    assert [fd.matched["count"] for fd in found] == [2]


def test_bin_with_other_options_is_not_runnable():
    a = Analysis(
        language="spl",
        stages=(Stage(0, "search", "x"),
                Stage(1, "bin", "bin bins=10 size", kind=StageKind.TRANSFORM),
                Stage(2, "stats", "stats count by size", kind=StageKind.AGGREGATE,
                      by=("size",))),
        condition=Predicate("x", Op.EXISTS, (True,)),
    )
    assert "bin" in (spl_rule(a).reason or "")
