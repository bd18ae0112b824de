"""The SQL backends (Spark in local mode, DuckDB) find what the local engine finds.

Hand-made edge cases (the matcher's unit tests in test_engine_sigma.py / test_engine_spl.py /
test_engine_transforms.py, plus the places where SQL engines differ from Python: LIKE
specials, quotes and backslashes in values, Unicode, number forms, Python-vs-Java/RE2 regex,
IPv4 parsing, list fields) each carry the expected answer per event, written by reading the
input; the local engine, Spark and DuckDB must all give it. Rules the SQL compiler cannot
express must fall back with a reason, never run wrong. End to end: every event-level Sigma rule
on the Sigma regression EVTX files (converted to Parquet) gives the local engine's findings,
finding by finding. Spark and Java are required: these tests fail, never skip, without them.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlglot
from tests.conftest import SIGMA

from ruleatlas.engine.events import Event
from ruleatlas.engine.runner import Engine, EngineRule, prepare
from ruleatlas.engine.sql import duckdb as duck
from ruleatlas.engine.sql import spark as sp
from ruleatlas.engine.sql.backend import SqlFinding, needs_plan
from ruleatlas.engine.sql.columnar import ParquetSink, event_row, kind_key, kind_text
from ruleatlas.engine.sql.compiler import SparkCompiler, Table, like_pattern
from ruleatlas.engine.sql.regex import JAVA, RE2, RegexUnsupported
from ruleatlas.languages import analyze
from ruleatlas.languages.sigma import rule_from_text
from ruleatlas.model import (
    Analysis,
    Call,
    Condition,
    FieldRef,
    Node,
    Not,
    Op,
    Pattern,
    Predicate,
    Regex,
    Rule,
    Wild,
)

SYSMON = "Microsoft-Windows-Sysmon/Operational"


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One Spark session (local[2]) for the whole test run; the CLI tests reuse it (the
    command's ``getOrCreate`` returns the active session)."""
    session, _ = sp.start("local[2]")
    yield session


# ------------------------------------------------------------------------------ the cases


@dataclass(frozen=True)
class Case:
    name: str
    rule: EngineRule
    rows: tuple[tuple[dict[str, Any], bool], ...]
    fallback: frozenset[str] = frozenset()  # backends expected to fall back ("spark", "duckdb")


def sigma(name: str, detection: str, rows: list[tuple[dict[str, Any], bool]],
          fallback: tuple[str, ...] = (), logsource: str = "    category: process_creation\n"
          "    product: windows") -> Case:
    text = (f"title: {name}\nid: {name}\nstatus: test\nlogsource:\n{logsource}\n"
            f"detection:\n{detection}\nlevel: high\n")
    rule = rule_from_text(text)
    rule = dataclasses.replace(rule, id=name)
    er = prepare(rule, analyze(rule))
    assert er.runnable, (name, er.reason)
    return Case(name, er, tuple(rows), frozenset(fallback))


def spl(name: str, node: Node, rows: list[tuple[dict[str, Any], bool]],
        fallback: tuple[str, ...] = ()) -> Case:
    rule = Rule(id=name, source="splunk", path=f"detections/{name}.yml", title=name,
                language="spl", query="x", body="b")
    er = prepare(rule, Analysis(language="spl", condition=node))
    assert er.runnable, (name, er.reason)
    return Case(name, er, tuple(rows), frozenset(fallback))


def sel(body: str, cond: str = "selection") -> str:
    return "    selection:\n" + "".join(f"        {ln}\n" for ln in body.splitlines()) + (
        f"    condition: {cond}")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


BOTH = ("spark", "duckdb")
CASES: list[Case] = [
    # plain values, case, wildcards, escapes (test_engine_sigma.py)
    sigma("case_insensitive", sel("Image|endswith: '\\cmd.exe'"),
          [({"Image": "C:\\WINDOWS\\CMD.EXE"}, True), ({"Image": "C:\\cmd.exe.bak"}, False)]),
    sigma("cased", sel("Image|cased|endswith: '\\cmd.exe'"),
          [({"Image": "C:\\x\\cmd.exe"}, True), ({"Image": "C:\\x\\CMD.exe"}, False)]),
    sigma("star_question", sel("CommandLine: 'a*b?d'"),
          [({"CommandLine": "aXXXbcd"}, True), ({"CommandLine": "abxd"}, True),
           ({"CommandLine": "abd"}, False), ({"CommandLine": "a\nline\nbcd"}, True),
           ({"CommandLine": "ab\nd"}, True)]),
    sigma("escaped_star", sel("CommandLine: 'a\\*b'"),
          [({"CommandLine": "a*b"}, True), ({"CommandLine": "axb"}, False)]),
    sigma("backslash_then_wildcard", sel("CommandLine: 'a\\\\*'"),
          [({"CommandLine": "a\\anything"}, True), ({"CommandLine": "a*"}, False)]),
    sigma("trailing_backslash", sel("Image|endswith: 'C:\\Temp\\'"),
          [({"Image": "x C:\\temp\\"}, True), ({"Image": "C:\\temp"}, False)]),
    sigma("like_specials_literal", sel("CommandLine: '*50%_off!*x'"),
          [({"CommandLine": "get 50%_OFF!now x"}, True), ({"CommandLine": "get 50a_off!x"},
                                                            False),
           ({"CommandLine": "get 50%xoff!x"}, False), ({"CommandLine": "50%_off!x"}, True)]),
    sigma("quotes_backslashes", sel("CommandLine|contains: \"it's \\\\x\\n'\""),
          [({"CommandLine": "say it's \\x\n' now"}, True),
           ({"CommandLine": "say its \\x\n"}, False)]),
    sigma("empty_value", sel("CommandLine: ''"),
          [({"CommandLine": ""}, True), ({"CommandLine": "x"}, False), ({}, False)]),
    sigma("null_value", sel("CommandLine: null"),
          [({}, True), ({"CommandLine": None}, True), ({"CommandLine": ""}, False)]),
    sigma("exists_true", sel("CommandLine|exists: true"),
          [({"CommandLine": ""}, True), ({}, False), ({"CommandLine": ["a"]}, True)]),
    sigma("exists_false", sel("CommandLine|exists: false"),
          [({}, True), ({"CommandLine": "x"}, False)]),
    sigma("unicode_lower", sel("CommandLine|contains: 'ÄÖÜ'"),
          [({"CommandLine": "x äöü y"}, True), ({"CommandLine": "x aou y"}, False)]),
    sigma("list_or", sel("CommandLine|contains:\n    - foo\n    - bar"),
          [({"CommandLine": "bar"}, True), ({"CommandLine": "baz"}, False)]),
    sigma("all_and", sel("CommandLine|contains|all:\n    - foo\n    - bar"),
          [({"CommandLine": "foo bar"}, True), ({"CommandLine": "bar"}, False),
           ({"CommandLine": ["foo", "bar"]}, False), ({"CommandLine": ["x", "bar foo"]}, True)]),
    sigma("many_substrings", sel("CommandLine|contains:\n    - 'a.b'\n    - 'x\\*(y'\n"
                                 "    - 'É|z'\n    - '[q]{2}'\n    - 'p$^'\n    - 'k+?#&-~ w'"),
          [({"CommandLine": "--A.B--"}, True), ({"CommandLine": "aXb"}, False),
           ({"CommandLine": "X*(Y"}, True), ({"CommandLine": "é|Z"}, True),
           ({"CommandLine": "[Q]{2}"}, True), ({"CommandLine": "qq"}, False),
           ({"CommandLine": "P$^"}, True), ({"CommandLine": "K+?#&-~ W"}, True),
           ({"CommandLine": ["n", "x*(y"]}, True)]),
    sigma("many_prefixes", sel("Image|startswith:\n    - 'c:\\a'\n    - 'c:\\b.'\n"
                               "    - 'd:'\n    - 'e:'\n    - 'f:'"),
          [({"Image": "C:\\B.exe"}, True), ({"Image": "x c:\\a"}, False),
           ({"Image": "F:"}, True)]),
    sigma("many_suffixes", sel("Image|endswith:\n    - '.a'\n    - '.b'\n    - '.c'\n"
                               "    - '.d'\n    - '.e'"),
          [({"Image": "x.E"}, True), ({"Image": "x.e "}, False), ({"Image": "x.e\n"}, False)]),
    sigma("eventid_int_str", sel("EventID: 1\nImage|endswith: '\\a.exe'"),
          [({"EventID": 1, "Image": "c:\\a.exe"}, True),
           ({"EventID": "1", "Image": "c:\\a.exe"}, True)]),
    sigma("numbers_gt", sel("Count|gt: 5"),
          [({"Count": 6}, True), ({"Count": "7"}, True), ({"Count": 5}, False),
           ({"Count": "abc"}, False), ({"Count": " 12\t"}, True), ({"Count": "1e1"}, True),
           ({"Count": "0x10"}, True), ({"Count": "1_000"}, True), ({"Count": "nan"}, False),
           ({"Count": "inf"}, True), ({"Count": "-inf"}, False), ({"Count": "5."}, False),
           ({"Count": ".6e1"}, True), ({"Count": 5.5}, True), ({"Count": True}, False),
           ({"Count": ["1", "9"]}, True), ({"Count": "0x"}, False), ({"Count": "1__0"}, False)]),
    sigma("numbers_lte_hex", sel("Count|lte: 5"),
          [({"Count": "0x5"}, True), ({"Count": "0X_6"}, False), ({"Count": "-1"}, True)]),
    sigma("missing_field_not_filter",
          "    selection:\n        Image|endswith: '\\a.exe'\n"
          "    filter:\n        ParentImage|endswith: '\\b.exe'\n"
          "    condition: selection and not filter",
          [({"Image": "c:\\a.exe"}, True),
           ({"Image": "c:\\a.exe", "ParentImage": "c:\\b.exe"}, False)]),
    sigma("multivalue", sel("Data: two"),
          [({"Data": ["one", "two"]}, True), ({"Data": ["one", None]}, False),
           ({"Data": "two"}, True)]),
    sigma("multivalue_not", "    selection:\n        Data: two\n    condition: not selection",
          [({"Data": ["one", "two"]}, False), ({"Data": ["one"]}, True), ({}, True)]),
    # modifiers
    sigma("re_cased", sel("CommandLine|re: 'Invoke-[A-Z]'"),
          [({"CommandLine": "x Invoke-Mimikatz"}, True),
           ({"CommandLine": "x invoke-mimikatz"}, False)]),
    sigma("re_i", sel("CommandLine|re|i: 'invoke-[a-z]'"), [({"CommandLine": "INVOKE-X"}, True)]),
    sigma("re_search", sel("CommandLine|re: 'b+c'"),
          [({"CommandLine": "abbbcd"}, True), ({"CommandLine": "acd"}, False)]),
    sigma("re_dollar_final_newline", sel("CommandLine|re: 'end$'"),
          [({"CommandLine": "the end\n"}, True), ({"CommandLine": "the end\nx"}, False),
           ({"CommandLine": "the end\r\n"}, False)]),
    sigma("re_dot_cr", sel("CommandLine|re: 'a.b'"),
          [({"CommandLine": "a\rb"}, True), ({"CommandLine": "a\nb"}, False),
           ({"CommandLine": "a\u2028b"}, True)]),
    sigma("re_unicode_classes", sel("CommandLine|re: '^\\w+\\s\\d$'"),
          [({"CommandLine": "héllo\u00a0\u0663"}, True), ({"CommandLine": "a-b 1"}, False),
           ({"CommandLine": "ab\x1c1"}, True)]),
    spl("re_python_syntax", Predicate("CommandLine", Op.REGEX, (Regex("(?P<x>ab)(?P=x)\\Z"),)),
        [({"CommandLine": "zabab"}, True), ({"CommandLine": "abab\n"}, False)],
        fallback=("duckdb",)),
    sigma("re_literal_brace", sel("CommandLine|re: 'a{b}[[]&&c'"),
          [({"CommandLine": "a{b}[&&c"}, True), ({"CommandLine": "ab[c"}, False)]),
    sigma("re_boundary", sel("CommandLine|re: '\\bcmd\\b'"),
          [({"CommandLine": "run cmd now"}, True), ({"CommandLine": "runcmd"}, False),
           ({"CommandLine": "écmd"}, False)], fallback=("duckdb",)),
    spl("re_lookahead", Predicate("CommandLine", Op.REGEX, (Regex("a(?!b)"),)),
        [({"CommandLine": "ab ac"}, True), ({"CommandLine": "ab"}, False)],
        fallback=("duckdb",)),
    sigma("re_on_list", sel("Data|re: '^t.o$'"),
          [({"Data": ["one", "two"]}, True), ({"Data": ["one"]}, False)]),
    sigma("cidr_v4", sel("DestinationIp|cidr: '10.0.0.0/8'"),
          [({"DestinationIp": "10.1.2.3"}, True), ({"DestinationIp": "11.1.2.3"}, False),
           ({"DestinationIp": "not an ip"}, False), ({"DestinationIp": " 10.0.0.1\n"}, True),
           ({"DestinationIp": "010.0.0.1"}, False), ({"DestinationIp": "10.0.0.256"}, False),
           ({"DestinationIp": "10.255.255.255"}, True), ({"DestinationIp": "10.0.0"}, False)]),
    sigma("cidr_v4_many", sel("DestinationIp|cidr:\n    - '192.168.0.0/16'\n    - '8.8.8.8/32'"),
          [({"DestinationIp": "8.8.8.8"}, True), ({"DestinationIp": "8.8.8.9"}, False),
           ({"DestinationIp": "192.168.255.1"}, True)]),
    sigma("cidr_v6", sel("DestinationIp|cidr: 'fe80::/10'"),
          [({"DestinationIp": "fe80::1"}, True)], fallback=BOTH),
    *[sigma(f"windash_{i}", sel("CommandLine|windash|contains: ' -enc '"),
            [({"CommandLine": f"powershell {d}enc AAAA"}, True),
             ({"CommandLine": "powershell +enc AAAA"}, False)])
      for i, d in enumerate(["-", "/", "\u2013", "\u2014", "\u2015"])],
    sigma("windash_inner", sel("CommandLine|windash|contains: '-foo-bar'"),
          [({"CommandLine": "/foo-bar"}, True), ({"CommandLine": "/foo/bar"}, False)]),
    sigma("base64offset", sel("CommandLine|base64offset|contains: 'Invoke-Expression'"),
          [({"CommandLine": f"powershell -e {b64(p + b'Invoke-Expression(x)')}"}, True)
           for p in (b"", b"a", b"ab", b"abc")]
          + [({"CommandLine": f"-e {b64(b'Invoke-Express')}"}, False)]),
    sigma("base64_plain", sel("CommandLine|base64: 'http://'"),
          [({"CommandLine": b64(b"http://")}, True), ({"CommandLine": "http://"}, False)]),
    *[sigma(f"utf16_{mod}", sel(f"CommandLine|{mod}|base64offset|contains: 'IEX'"),
            [({"CommandLine": f"-enc {b64(bom + 'IEX (New'.encode(codec))}"}, True),
             ({"CommandLine": f"-enc {b64(b'IEX (New')}"}, mod == "x")])
      for mod, codec, bom in (("wide", "utf-16le", b""), ("utf16le", "utf-16le", b""),
                              ("utf16be", "utf-16be", b""), ("utf16", "utf-16le", b"\xff\xfe"))],
    sigma("wide_plain", sel("Payload|wide|contains: 'ab'"),
          [({"Payload": "xa\x00b\x00y"}, True), ({"Payload": "xaby"}, False)]),
    sigma("fieldref", sel("SubjectUserName|fieldref: TargetUserName"),
          [({"SubjectUserName": "Bob", "TargetUserName": "bob"}, True),
           ({"SubjectUserName": "Bob", "TargetUserName": "alice"}, False),
           ({"SubjectUserName": "Bob"}, False)]),
    sigma("keywords", "    keywords:\n        - 'mimikatz'\n    condition: keywords",
          [({"CommandLine": "run MimiKatz.exe"}, True), ({"Other": "x mimikatz"}, True),
           ({"CommandLine": "nothing"}, False), ({"Data": ["a", "b mimikatz"]}, True)]),
    sigma("keywords_wildcard", "    keywords:\n        - 'run*.exe'\n    condition: keywords",
          [({"CommandLine": "RUN x.exe"}, True), ({"CommandLine": "a run x.exe"}, False),
           ({"Data": ["run1.exe", "z"]}, True)]),
    sigma("keywords_number", "    keywords:\n        - 4104\n    condition: keywords",
          [({"X": 4104}, True), ({"X": "a4104b"}, True), ({"X": "41 04"}, False)]),
    sigma("one_of_exact_name",
          "    selection:\n        Image|endswith: '\\a.exe'\n"
          "    selection_x:\n        Image|endswith: '\\b.exe'\n    condition: 1 of selection",
          [({"Image": "c:\\a.exe"}, True), ({"Image": "c:\\b.exe"}, False)]),
    sigma("all_of_pattern",
          "    sel_a:\n        Image|endswith: '\\a.exe'\n"
          "    sel_b:\n        CommandLine|contains: 'x'\n    condition: all of sel_*",
          [({"Image": "c:\\a.exe", "CommandLine": "x"}, True), ({"Image": "c:\\a.exe"}, False)]),
    # routing: Security 4688 reads NewProcessName for Image (test_engine_sigma.py)
    sigma("mapped_field", sel("Image|endswith: '\\evil.exe'"),
          [({"Channel": "Security", "EventID": 4688, "NewProcessName": "C:\\evil.exe"}, True),
           ({"Channel": "Security", "EventID": 4624, "NewProcessName": "C:\\evil.exe"}, False)]),
    sigma("spaced_defender", sel("ThreatName|contains: 'mimikatz'", "selection"),
          [({"Channel": "Microsoft-Windows-Windows Defender/Operational", "EventID": 1116,
             "Threat Name": "HackTool:Win32/Mimikatz"}, True)],
          logsource="    product: windows\n    service: windefend"),
    # SPL search terms and where-level predicates (test_engine_spl.py)
    spl("spl_wildcard", Predicate("process_name", Op.EQ, (Pattern((Wild.ANY, "cmd.exe")),)),
        [({"process_name": "C:\\X\\CMD.EXE"}, True), ({"process_name": "cmd.exe.bak"}, False)]),
    spl("spl_ne", Predicate("user", Op.NE, ("SYSTEM",)),
        [({"user": "bob"}, True), ({"user": "system"}, False), ({}, False)]),
    spl("spl_not_eq", Not(Predicate("user", Op.EQ, ("SYSTEM",))),
        [({}, True), ({"user": "SYSTEM"}, False)]),
    spl("spl_in", Predicate("EventCode", Op.IN, (4624, 4625)),
        [({"EventCode": "4625", "EventID": 4625}, True),
         ({"EventCode": "4634", "EventID": 4634}, False)]),
    spl("spl_cased", Predicate("user", Op.EQ, ("Admin",), cased=True),
        [({"user": "Admin"}, True), ({"user": "admin"}, False)]),
    spl("spl_regex", Predicate("cmd", Op.REGEX, (Regex(r"-e(nc)?\s"),)),
        [({"cmd": "powershell -enc AAA"}, True), ({"cmd": "powershell -ENC AAA"}, False)]),
    spl("spl_regex_flags", Predicate("cmd", Op.REGEX, (Regex(r"^b.c$", frozenset("ims")),)),
        [({"cmd": "a\nB\nC\n"}, True), ({"cmd": "abc"}, False)]),
    spl("spl_field_eq_field", Predicate("a", Op.EQ, (FieldRef("b"),), cased=True),
        [({"a": "x", "b": "x"}, True), ({"a": "x", "b": "X"}, False)]),
    spl("spl_bool_value", Predicate("flag", Op.EQ, (True,)),
        [({"flag": True}, True), ({"flag": "True"}, True), ({"flag": "1"}, False)]),
    spl("spl_condition", Condition(Call(">", (Call("len", (FieldRef("cmd"),)), 5)), "t"),
        [({"cmd": "abcdef"}, True)], fallback=BOTH),
]


def _events(cases: list[Case]) -> list[Event]:
    out = []
    for c in cases:
        for i, (fields, _) in enumerate(c.rows, 1):
            base = {"Channel": SYSMON, "EventID": 1}
            out.append(Event({**base, **fields}, c.name, i))
    return out


def _expected(cases: list[Case], backend: str | None) -> set[tuple[str, str, int]]:
    return {(c.name, c.name, i) for c in cases if backend not in c.fallback
            for i, (_, want) in enumerate(c.rows, 1) if want}


def _local(rules: list[EngineRule], events: list[Event]) -> set[tuple[str, str, int]]:
    return {(f.rule.rule.id, f.event.file, f.event.position) for f in Engine(rules).run(events)}


def _own(found: list[SqlFinding]) -> set[tuple[str, str, int]]:
    """Findings of each case's rule on its own events (rules also see other cases' events)."""
    return {(f.rule_id, f.file, f.position) for f in found if f.rule_id == f.file}


def _on_spark(spark: Any, rules: list[EngineRule], root: str, fmt: str = "parquet") -> Any:
    from ruleatlas.engine.sql.hunt import event_sql

    return event_sql(sp.SparkBackend(spark), rules, root, fmt)


def _on_duckdb(rules: list[EngineRule], root: Path) -> Any:
    from ruleatlas.engine.sql.hunt import event_sql

    return event_sql(duck.DuckDBBackend(duck.connect()), rules, str(root))


@pytest.fixture(scope="module")
def case_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cases")
    sink = ParquetSink(out, batch=7)  # several files per kind: schemas differ, merged on read
    for ev in _events(CASES):
        sink.add(event_row(ev))
    sink.close()
    return out


def test_local_engine_gives_the_hand_checked_answers():
    found = _local([c.rule for c in CASES], _events(CASES))
    assert {f for f in found if f[0] == f[1]} == _expected(CASES, None)


def test_local_findings_across_cases_are_the_sql_ones_too(spark, case_data):
    """Every rule also sees every other case's events: the whole sets must agree."""
    local = _local([c.rule for c in CASES], _events(CASES))
    run = _on_spark(spark, [c.rule for c in CASES], str(case_data))
    fb = set(run.plan.fallback)
    assert {(f.rule_id, f.file, f.position) for f in run.findings} == {
        f for f in local if f[0] not in fb}


@pytest.mark.parametrize("backend", ["spark", "duckdb"])
def test_edge_cases_on_sql_backends(backend, spark, case_data):
    rules = [c.rule for c in CASES]
    if backend == "spark":
        run: Any = _on_spark(spark, rules, str(case_data))
    else:
        run = _on_duckdb(rules, case_data)
    assert _own(run.findings) == _expected(CASES, backend)
    want_fallback = {c.name for c in CASES if backend in c.fallback}
    assert set(run.plan.fallback) == want_fallback, run.plan.fallback
    assert all(run.plan.fallback.values())  # every fallback says why


def test_fallback_reasons_name_the_gap(spark, case_data):
    run = _on_spark(spark, [c.rule for c in CASES], str(case_data))
    assert "IPv6" in run.plan.fallback["cidr_v6"]
    assert "SPL expression" in run.plan.fallback["spl_condition"]
    drun = _on_duckdb([c.rule for c in CASES], case_data)
    assert "look-around" in drun.plan.fallback["re_lookahead"]
    assert "back-reference" in drun.plan.fallback["re_python_syntax"]


def test_json_lines_layout_gives_the_same_findings(spark, tmp_path):
    sink = ParquetSink(tmp_path, fmt="jsonl")
    for ev in _events(CASES):
        sink.add(event_row(ev))
    sink.close()
    run = _on_spark(spark, [c.rule for c in CASES], str(tmp_path), fmt="jsonl")
    assert _own(run.findings) == _expected(CASES, "spark")


def _case_folder(fmt: str, case_data: Path, tmp_path: Path) -> Path:
    """The hand-made cases' converted folder: the shared Parquet one, or written as JSON lines."""
    if fmt != "jsonl":
        return case_data
    root = tmp_path / "jsonl"
    sink = ParquetSink(root, fmt="jsonl", batch=7)
    for ev in _events(CASES):
        sink.add(event_row(ev))
    sink.close()
    return root


@pytest.mark.parametrize(("backend", "fmt"), [("spark", "parquet"), ("duckdb", "parquet"),
                                           ("duckdb", "jsonl")])
def test_hunt_sql_with_fallback_gives_every_hand_checked_answer(backend, fmt, spark, case_data,
                                                                tmp_path):
    """Through the orchestration (engine.sql.hunt): the rules SQL runs and the ones that fall
    back (run by the local engine on the rows read back) together give every expected answer,
    in the local engine's order."""
    from ruleatlas.engine.hunt import HuntReport
    from ruleatlas.engine.sql.hunt import SqlSummary, hunt_sql

    root = _case_folder(fmt, case_data, tmp_path)
    be: Any = sp.SparkBackend(spark) if backend == "spark" else duck.DuckDBBackend(
        duck.connect())
    rules = [c.rule for c in CASES]
    summary = SqlSummary(backend)
    found = list(hunt_sql(rules, [str(root)], HuntReport(), summary, backend=be))
    keys = [(f.rule.rule.id, f.event.file, f.event.position) for f in found]
    assert {k for k in keys if k[0] == k[1]} == _expected(CASES, None)
    local = [(f.rule.rule.id, f.event.file, f.event.position, f.to_dict())
             for f in Engine(rules).run(_events(CASES))]
    assert [(*k, f.to_dict()) for k, f in zip(keys, found, strict=True)] == local
    assert set(summary.fallback) == {c.name for c in CASES if backend in c.fallback}


def test_sigma_pipe_aggregations_are_not_runnable_and_said_so():
    text = ("title: t\nid: agg\nstatus: test\nlogsource:\n    product: windows\n"
            "    service: security\ndetection:\n    selection:\n        EventID: 4625\n"
            "    condition: selection | count() by IpAddress > 10\nlevel: high\n")
    rule = rule_from_text(text)
    from ruleatlas.engine.sql.backend import plan_queries

    er = prepare(rule, analyze(rule))
    p = plan_queries([er], ["EventID"], ["Security|4625"], "spark")
    assert "aggregation (pipe syntax)" in p.not_runnable["agg"]
    assert not p.queries and not p.aggregations and not p.fallback


def test_spl_stats_run_as_sql_or_fall_back_with_the_reason():
    from tests.conftest import spl_rule

    assert needs_plan(spl_rule("index=x EventCode=4625 | stats count by src | where count > 5")
                      ) is None
    why = needs_plan(spl_rule("index=x EventCode=4625 | stats avg(n) as a by src"))
    assert why is not None and "avg(n)" in why
    why = needs_plan(spl_rule("index=x EventCode=4625 | stats count by src | stats count"))
    assert why is not None and "chain" in why


# ------------------------------------------------------------------------------ aggregations

SEC = "Security"
AGG_ROWS: list[dict[str, Any]] = [
    {"Channel": SEC, "EventID": 4625, "EventCode": "4625", "src": "a", "user": "u1",
     "TimeCreated": "2024-01-01T00:00:01Z"},
    {"Channel": SEC, "EventID": 4625, "EventCode": "4625", "src": "b", "user": "u1",
     "TimeCreated": "2024-01-01T00:00:02Z"},
    {"Channel": SEC, "EventID": 4625, "EventCode": "4625", "src": "a", "user": "u2",
     "TimeCreated": "2024-01-01T00:00:03Z"},
    {"Channel": SEC, "EventID": 4625, "EventCode": "4625", "src": "a", "user": "u1",
     "TimeCreated": "2024-01-01T00:00:04.5Z"},
    {"Channel": SEC, "EventID": 4625, "EventCode": "4625", "user": "u3",  # no src: dropped
     "TimeCreated": "2024-01-01T00:00:05Z"},
    {"Channel": SEC, "EventID": 4624, "EventCode": "4624", "src": "b", "user": "u2",
     "TimeCreated": "2024-01-01T00:00:06Z"},
]
HEAD = "index=x EventCode=4625 | "
# (name, search, [(first event's position, matched row)], runs in SQL): read off AGG_ROWS
AGG_CASES: list[tuple[str, str, list[tuple[int, dict[str, Any]]], bool]] = [
    ("agg_threshold", "stats count by src | where count > 2", [(1, {"src": "a", "count": 3})],
     True),
    ("agg_dc", "stats dc(user) as users by src | where users >= 2",
     [(1, {"src": "a", "users": 2})], True),
    ("agg_values", "stats values(user) as users count by src",
     [(1, {"src": "a", "users": ["u1", "u2"], "count": 3}),
      (2, {"src": "b", "users": ["u1"], "count": 1})], True),
    ("agg_no_by", "stats count", [(1, {"count": 5})], True),
    ("agg_time", "stats min(_time) as firstTime max(_time) as lastTime count by src "
                 "| where count > 1",
     [(1, {"src": "a", "firstTime": 1704067201.0, "lastTime": 1704067204.5, "count": 3})],
     True),
    ("agg_rename", "stats count by src | rename src as source | where count > 2",
     [(1, {"count": 3, "source": "a"})], True),
    ("agg_where_cased", 'stats count by src | where src="A"', [], True),
    ("agg_avg_falls_back", "stats avg(EventID) as a by src",
     [(1, {"src": "a", "a": 4625.0}), (2, {"src": "b", "a": 4625.0})], False),
]


def _agg_rules() -> list[EngineRule]:
    from tests.conftest import spl_rule

    out = []
    for name, search, _, _ in AGG_CASES:
        er = spl_rule(HEAD + search)
        assert er.runnable, (name, er.reason)
        er.rule = dataclasses.replace(er.rule, id=name, title=name)
        out.append(er)
    return out


@pytest.fixture(scope="module")
def agg_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("agg")
    sink = ParquetSink(out, batch=4)
    for i, fields in enumerate(AGG_ROWS, 1):
        sink.add(event_row(Event(dict(fields), "agg", i)))
    sink.close()
    return out


def _agg_expected() -> list[tuple[str, int, dict[str, Any]]]:
    return [(name, pos, row) for name, _, found, _ in AGG_CASES for pos, row in found]


def test_local_engine_aggregates_as_read_off_the_rows():
    events = [Event(dict(f), "agg", i) for i, f in enumerate(AGG_ROWS, 1)]
    got = [(f.rule.rule.id, f.event.position, dict(f.matched))
           for f in Engine(_agg_rules()).run(events)]
    assert got == _agg_expected()


@pytest.mark.parametrize("backend", ["spark", "duckdb"])
def test_aggregations_on_sql_backends(backend, spark, agg_data):
    from ruleatlas.engine.hunt import HuntReport
    from ruleatlas.engine.sql.hunt import SqlSummary, hunt_sql

    be: Any = sp.SparkBackend(spark) if backend == "spark" else duck.DuckDBBackend(
        duck.connect())
    summary = SqlSummary(backend)
    got = [(f.rule.rule.id, f.event.position, dict(f.matched))
           for f in hunt_sql(_agg_rules(), [str(agg_data)], HuntReport(), summary, backend=be)]
    assert got == _agg_expected()
    assert set(summary.fallback) == {n for n, _, _, sql in AGG_CASES if not sql}
    assert "avg(EventID)" in summary.fallback["agg_avg_falls_back"]
    assert summary.aggregations == sum(sql for *_, sql in AGG_CASES)


def test_threshold_runs_as_having_in_sql():
    from ruleatlas.engine.sql.backend import plan_queries

    rules = _agg_rules()
    for dialect in ("spark", "duckdb"):
        p = plan_queries(rules, ["EventCode", "src", "user", "_seq", "_epoch"],
                         ["Security|4625"], dialect)
        q = {a.rule.rule.id: a for a in p.aggregations}
        assert q["agg_threshold"].having and "GROUP BY" in q["agg_threshold"].sql
        assert not q["agg_rename"].having  # rename then where: Python runs the steps


# ------------------------------------------------------------------------------ units


@pytest.mark.parametrize(("pattern", "flags", "java"), [
    ("a.b", "", "(?d)a.b"),
    ("a$", "", "(?d)a$"),
    (r"\d+", "", "(?d)(?:[\\p{Nd}])+"),
    ("(?P<n>x)(?P=n)", "", "(?d)(x)(?:\\1)"),
    ("x\\Z", "i", "(?d)(?iu)x\\z"),
    ("a{b}", "", "(?d)a\\x{7b}b\\x{7d}"),
])
def test_regex_java_translation(pattern, flags, java):
    assert JAVA.translate(pattern, frozenset(flags)) == java


def test_regex_re2_translation_and_gaps():
    assert RE2.translate("a$", frozenset()) == "a(?:\\n?\\z)"
    assert RE2.translate("a$", frozenset("m")) == "(?m)a$"
    for bad, why in (("a(?=b)", "look-around"), (r"(a)\1", "back-reference"),
                     (r"\bx", "\\b"), ("(?>a)", "atomic")):
        with pytest.raises(RegexUnsupported, match=why.replace("\\", "\\\\")):
            RE2.translate(bad, frozenset())
    with pytest.raises(RegexUnsupported, match="conditional"):
        JAVA.translate(r"(a)?(?(1)b|c)", frozenset())


def test_like_pattern_escapes_its_specials():
    assert like_pattern(("50%_!", Wild.ANY, "x", Wild.ONE)) == "50!%!_!!%x_"


def test_values_are_escaped_literals_not_pasted_text():
    value = "a' OR 1=1 --\\"
    p = Predicate("CommandLine", Op.EQ, (value,), cased=True)
    got = SparkCompiler(Table(frozenset({"CommandLine"}))).compile(p)
    sql = got.expression.sql("spark")
    lits = [x.this for x in sqlglot.parse_one(sql, read="spark").find_all(sqlglot.exp.Literal)
            if x.is_string]
    assert lits == [value]


def test_absent_fields_are_constants():
    c = SparkCompiler(Table(frozenset({"Image"})))
    assert c.compile(Predicate("Nope", Op.EQ, ("x",))).expression.sql("spark") == "FALSE"
    assert c.compile(Not(Predicate("Nope", Op.EQ, ("x",)))).expression.sql("spark") == "TRUE"
    assert c.compile(Predicate("Nope", Op.EQ, (None,))).expression.sql("spark") == "TRUE"


def test_kind_text_round_trips():
    for key in (("Sysmon", "1"), ("Security", None), (None, "4"), ("aws:cloudtrail", "x|y")):
        assert kind_key(kind_text(key)) == key or "|" in (key[1] or "")


# ------------------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_sigma_rules_on_regression_evtx_match_the_local_engine(spark, tmp_path):
    from ruleatlas.engine.catalog import from_repos, is_retired
    from ruleatlas.engine.readers import read_events
    from ruleatlas.engine.sql.columnar import convert

    loaded = [lr for lr in from_repos([SIGMA]) if not is_retired(lr.rule)]
    rules = [prepare(lr.rule, lr.analysis) for lr in loaded]
    files = sorted(str(p) for p in (SIGMA / "regression_data").rglob("*.evtx"))
    errors: list[Any] = []
    events = list(read_events(files, errors))
    local = _local([r for r in rules if r.runnable], events)
    rep = convert(files, tmp_path / "pq")
    assert rep.events == len(events) > 150
    run = _on_spark(spark, rules, str(tmp_path / "pq"))
    fb = run.plan.fallback
    got = {(f.rule_id, f.file, f.position) for f in run.findings}
    assert got == {f for f in local if f[0] not in fb}
    ran = {er.rule.id for er in run.plan.rules}
    assert len(ran) >= 150  # event-level rules that compiled and ran on the regression kinds
    assert len({f[0] for f in got}) >= 150
    # every fallback is loud; none hides a rule that found something without a reason
    assert all(fb.values())
    drun = _on_duckdb(rules, tmp_path / "pq")
    dgot = {(f.rule_id, f.file, f.position) for f in drun.findings}
    assert dgot == {f for f in local if f[0] not in drun.plan.fallback}


# ------------------------------------------------------------------------------ the command


def test_convert_command_writes_kinds_and_is_documented(tmp_path):
    import json

    import typer.main
    from typer.testing import CliRunner

    from ruleatlas.cli import app

    files = sorted(str(p) for p in (SIGMA / "regression_data").rglob("*.evtx"))[:3]
    out = tmp_path / "pq"
    res = CliRunner().invoke(app, ["convert", *files, str(out), "--batch", "50"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout[res.stdout.index("{"):])
    assert summary["events"] == sum(summary["kinds"].values()) > 0
    dirs = {p.name for p in out.iterdir()}
    assert dirs == {f"_kind={quote(k, safe='')}" for k in summary["kinds"]}
    again = CliRunner().invoke(app, ["convert", *files, str(out)])
    assert again.exit_code == 2 and "--force" in again.output
    docs = (Path(__file__).resolve().parent.parent / "docs" / "spark.md").read_text()
    cmd = typer.main.get_command(app).commands["convert"]  # type: ignore[attr-defined]
    assert "`ruleatlas convert" in docs
    for p in cmd.params:
        for opt in getattr(p, "opts", ()):
            if opt.startswith("--") and opt != "--help":
                assert opt in docs, opt


def test_convert_exit_codes_say_what_was_read(tmp_path):
    """Like `hunt`: 0 every input read, 1 some skipped (the rest written), 2 nothing read."""
    from typer.testing import CliRunner

    from ruleatlas.cli import app

    empty = tmp_path / "empty.json"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.evtx"
    junk.write_bytes(bytes(range(256)) * 64)
    good = str(sorted((SIGMA / "regression_data").rglob("*.evtx"))[0])
    runner = CliRunner()
    nothing = runner.invoke(app, ["convert", str(empty), str(junk), str(tmp_path / "a")])
    assert nothing.exit_code == 2, nothing.output
    assert '"read_errors": 2' in nothing.output
    partly = runner.invoke(app, ["convert", good, str(empty), str(tmp_path / "b")])
    assert partly.exit_code == 1, partly.output
    assert list((tmp_path / "b").iterdir())
    whole = runner.invoke(app, ["convert", good, str(tmp_path / "c")])
    assert whole.exit_code == 0, whole.output


# ------------------------------------------------------------------------------ hunt --engine

OTRF_PICKS = ("cmd_psexec_lsa_secrets_dump.zip",
              "mimikatz_CVE-2020-1472_Unauthenticated_NetrServerAuthenticate2.zip",
              "schtask_create.zip", "covenant_persistwmi.tar.gz")


def _hunt(args: list[str]) -> tuple[int, list[dict[str, Any]], str]:
    import json

    from typer.testing import CliRunner

    from ruleatlas.cli import app

    res = CliRunner().invoke(app, ["hunt", "--format", "jsonl", *args])
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    found = [json.loads(ln) for ln in res.stdout.splitlines() if ln.startswith("{")]
    return res.exit_code, found, res.stderr


def _key(d: dict[str, Any]) -> tuple[str, str, Any]:
    return (d["rule_id"], d["file"], d["record_id"])


@pytest.mark.slow
def test_hunt_engine_flag_gives_the_local_findings(spark, tmp_path):
    """Sigma, Splunk and Elastic rules over the regression EVTX files and four OTRF archives,
    through the command: ``--engine spark`` (the logs staged) and ``--engine duckdb`` (a folder
    ``convert`` wrote) print what ``--engine local`` prints, finding by finding, the same JSON
    in the same order."""
    from tests.conftest import ELASTIC, OTRF, SPLUNK
    from typer.testing import CliRunner

    from ruleatlas.cli import app

    windows = OTRF / "datasets" / "atomic" / "windows"
    logs = sorted(str(p) for p in (SIGMA / "regression_data").rglob("*.evtx"))
    logs += [str(next(windows.rglob(n))) for n in OTRF_PICKS]
    repos = ["--repo", str(SIGMA), "--repo", str(SPLUNK), "--repo", str(ELASTIC)]
    code, local, _ = _hunt([*repos, "--engine", "local", "--jobs", "1", *logs])
    assert code == 0 and len(local) > 400
    assert {d["source"] for d in local} >= {"sigma", "splunk"}
    code, on_spark, err = _hunt([*repos, "--engine", "spark", "--spark-master", "local[2]",
                                 *logs])
    assert code == 0, err
    assert on_spark == local  # the same JSON, in the same order
    assert "rules ran as plans in Spark's Python workers" in err
    code, in_sql, err = _hunt([*repos, "--engine", "spark", "--spark-master", "local[2]",
                               "--spark-mode", "sql", *logs])
    assert code == 0, err
    assert in_sql == local
    assert "rules ran as SQL" in err and "fell back" in err
    pq = tmp_path / "pq"
    conv = CliRunner().invoke(app, ["convert", *logs, str(pq)])
    assert conv.exit_code == 0, conv.output
    code, on_duck, err = _hunt([*repos, "--engine", "duckdb", str(pq)])
    assert code == 0, err
    # DuckDB's names are case-insensitive: Sysmon's ProcessID and ProcessId stay apart anyway
    assert on_duck == local


def test_hunt_engine_exit_codes_and_summary(tmp_path):
    """As `hunt`'s: 0 read whole, 1 some inputs skipped, 2 nothing read; the JSON summary says
    what ran as SQL and what fell back, by reason."""
    import json

    from typer.testing import CliRunner

    from ruleatlas.cli import app

    empty = tmp_path / "empty.json"
    empty.write_bytes(b"")
    good = str(sorted((SIGMA / "regression_data").rglob("*.evtx"))[0])
    rule = ("title: Any process\nid: any-proc\nstatus: test\nlogsource:\n"
            "    category: process_creation\n    product: windows\ndetection:\n"
            "    selection:\n        Image|endswith: '.exe'\n    condition: selection\n"
            "level: low\n")
    repo = tmp_path / "repo" / "rules"
    repo.mkdir(parents=True)
    (repo / "r.yml").write_text(rule)
    base = ["--repo", str(tmp_path / "repo"), "--engine", "duckdb"]
    assert _hunt([*base, str(empty)])[0] == 2
    assert _hunt([*base, good, str(empty)])[0] == 1
    res = CliRunner().invoke(app, ["hunt", *base, "--format", "json", good])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)["summary"]
    assert summary["engine"]["engine"] == "duckdb"
    assert summary["engine"]["rules_in_sql"] + summary["engine"]["fell_back"] == summary[
        "rules_run"]
    layout = tmp_path / "converted"
    (layout / "_kind=x").mkdir(parents=True)
    code, _, err = _hunt([*base, good, str(layout)])  # a converted folder and logs: refused
    assert code == 2 and "not both" in err


def test_hunt_engine_options_are_documented():
    import typer.main

    from ruleatlas.cli import app

    docs = (Path(__file__).resolve().parent.parent / "docs" / "spark.md").read_text()
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert "ruleatlas hunt LOGS --engine spark" in readme
    cmd = typer.main.get_command(app).commands["hunt"]  # type: ignore[attr-defined]
    for opt in ("--engine", "--spark-master", "--spark-mode"):
        assert any(opt in getattr(p, "opts", ()) for p in cmd.params)
        assert opt in docs, opt


def _eql_rules() -> list[EngineRule]:
    """An EQL event rule and an EQL sequence (Elastic semantics, the ECS view)."""
    def eql(rid: str, query: str) -> EngineRule:
        r = Rule(id=rid, source="elastic", path="rules/windows/x.toml", title=rid,
                 language="eql", query=query, body="b")
        er = prepare(r, analyze(r))
        assert er.runnable, er.reason
        return er

    return [eql("eql_one", 'process where process.name == "cmd.exe"'),
            eql("eql_seq", 'sequence by host.id [process where process.name == "a.exe"] '
                           '[process where process.name == "b.exe"]')]


def _eql_events(out: Path, batch: int = 20_000) -> None:
    """Four Sysmon process starts on host h1 (a.exe, cmd.exe, b.exe, CMD.EXE), converted."""
    sink = ParquetSink(out, batch=batch)
    for i, n in enumerate(["a.exe", "cmd.exe", "b.exe", "CMD.EXE"], 1):
        sink.add(event_row(Event({"Channel": SYSMON, "EventID": 1, "Image": f"C:\\x\\{n}",
                                  "Computer": "h1", "TimeCreated": f"2024-01-01T00:00:0{i}Z"},
                                 "el", i)))
    sink.close()


def test_elastic_rules_fall_back_with_the_reason_and_find_what_the_local_engine_finds(tmp_path):
    """Elastic rules run locally on the ECS view; SQL does not compile that view yet: they fall
    back, say why, and run on the same events (read back from the table)."""
    from ruleatlas.engine.hunt import HuntReport
    from ruleatlas.engine.sql.hunt import SqlSummary, hunt_sql

    rules = _eql_rules()
    _eql_events(tmp_path)
    summary = SqlSummary("duckdb")
    got = [(f.rule.rule.id, f.event.position) for f in hunt_sql(
        rules, [str(tmp_path)], HuntReport(), summary, backend=duck.DuckDBBackend(
            duck.connect()))]
    # EQL == is case-sensitive (CMD.EXE is no match); the sequence a.exe then b.exe on host
    # h1 is found at its first event
    assert got == [("eql_one", 2), ("eql_seq", 1)]
    assert summary.in_sql == 0
    assert all("Elastic rule" in why for why in summary.fallback.values())
    assert set(summary.fallback) == {"eql_one", "eql_seq"}


# ------------------------------------------------------- plans in Spark's Python workers


def _plans_hunt(spark: Any, rules: list[EngineRule], root: Path, fmt: str = "parquet",
                limits: Any = None) -> tuple[list[Any], Any, Any]:
    from ruleatlas.engine.hunt import HuntReport
    from ruleatlas.engine.sql.hunt import SqlSummary, hunt_sql

    summary = SqlSummary("spark", mode="plans")
    report = HuntReport()
    found = list(hunt_sql(rules, [str(root)], report, summary, limits,
                          backend=sp.SparkBackend(spark)))
    return found, summary, report


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_plans_on_spark_give_every_hand_checked_answer_in_order(fmt, spark, case_data,
                                                                tmp_path):
    """Every case, the ones Spark SQL cannot express too: the plans run by the local matcher
    in Spark's workers give the local engine's findings, the same JSON in the same order."""
    root = _case_folder(fmt, case_data, tmp_path)
    rules = [c.rule for c in CASES]
    found, summary, report = _plans_hunt(spark, rules, root, fmt)
    keys = [(f.rule.rule.id, f.event.file, f.event.position) for f in found]
    assert {k for k in keys if k[0] == k[1]} == _expected(CASES, None)
    local = [(f.rule.rule.id, f.event.file, f.event.position, f.to_dict())
             for f in Engine(rules).run(_events(CASES))]
    assert [(*k, f.to_dict()) for k, f in zip(keys, found, strict=True)] == local
    assert summary.on_workers == len(rules) and not summary.fallback
    assert report.events == len(_events(CASES))
    assert report.inputs and all(i.errors == 0 for i in report.inputs)  # one per file
    assert "rules ran as plans in Spark's Python workers" in summary.lines()[0]


def test_aggregations_as_plans_on_spark(spark, agg_data):
    """SPL stats over rows spread over several files (tasks): the groups, their values and
    their first events are the local engine's, the one SQL cannot run (avg) too."""
    found, _, _ = _plans_hunt(spark, _agg_rules(), agg_data)
    assert [(f.rule.rule.id, f.event.position, dict(f.matched)) for f in found] == (
        _agg_expected())


def test_a_group_takes_its_earliest_event_whatever_order_the_rows_come_in():
    """A task's rows come in any order: a recorded group's first event is its earliest row's
    (the smallest number), as with one process reading in order."""
    from ruleatlas.engine.jobs import UnitResult, UnitWorker
    from ruleatlas.engine.sql.tasks import merge

    rules = _agg_rules()
    events = [Event(dict(f), "agg", i) for i, f in enumerate(AGG_ROWS, 1)]
    worker = UnitWorker(rules)
    late, early = UnitResult(1), UnitResult(0)
    worker.run([(i, ev) for i, ev in enumerate(events) if i >= 3][::-1], late)  # 5, 4, 3
    worker.run([(i, ev) for i, ev in enumerate(events) if i < 3][::-1], early)  # 2, 1, 0
    got = [(f.rule.rule.id, f.event.position, dict(f.matched))
           for f in merge(rules, [late, early], [])]
    assert got == _agg_expected()


def test_elastic_rules_run_as_plans_on_spark(tmp_path, spark):
    """EQL rules (the ECS view, a sequence across files) in Spark's workers."""
    rules = _eql_rules()
    _eql_events(tmp_path, batch=1)  # one event per file: the sequence spans tasks
    found, summary, _ = _plans_hunt(spark, rules, tmp_path)
    assert [(f.rule.rule.id, f.event.position) for f in found] == [("eql_one", 2),
                                                                    ("eql_seq", 1)]
    assert summary.on_workers == 2


def test_a_broken_file_is_a_located_read_error_and_the_rest_is_hunted(spark, case_data,
                                                                      tmp_path):
    import shutil

    root = tmp_path / "pq"
    shutil.copytree(case_data, root)
    victim = sorted(root.rglob("*.parquet"))[0]
    victim.write_bytes(b"PAR1 this is not parquet")
    rules = [c.rule for c in CASES]
    found, _, report = _plans_hunt(spark, rules, root)
    assert [e.file for e in report.errors] == [str(victim)]
    assert "columnar layout" in report.errors[0].reason
    assert report.exit_code() == 1
    bad = [i for i in report.inputs if i.errors]
    assert [(i.file, i.events) for i in bad] == [(str(victim), 0)]
    assert len(report.inputs) == len(list(root.rglob("*.parquet")))  # every file accounted
    assert found  # the other files were hunted


def test_batch_events_is_row_event_for_every_row(tmp_path):
    """The column-wise rebuild of a batch gives what row_event gives row by row: the regression
    EVTX files, and hand-made rows with typed values, None, lists with typed items and an
    alias the converter added."""
    import pyarrow.parquet as pq

    from ruleatlas.engine.readers import read_events
    from ruleatlas.engine.sql.columnar import batch_events, row_event

    files = sorted(str(p) for p in (SIGMA / "regression_data").rglob("*.evtx"))
    events = list(read_events(files, []))
    events += [Event({"Channel": "x", "EventID": 7, "Flag": True, "Ratio": 0.5, "Gone": None,
                      "Items": ["a", 2, None], "Obj": {"k": 1}}, "hand", 1),
               Event({"Channel": "x", "EventID": "7", "Names": ["a", "b"]}, "hand", 2),
               Event({"Channel": "Microsoft-Windows-Windows Defender/Operational",
                      "EventID": 1116, "Threat Name": "EICAR"}, "hand", 3),
               # one kind whose Task is an int on one row and a string on another, whose Desc
               # is None on one row, and a number past 64 bits (Arrow cannot cast it)
               Event({"Channel": "y", "EventID": 1, "Task": 5, "Desc": None}, "hand", 4),
               Event({"Channel": "y", "EventID": 1, "Task": "Process Access", "Desc": "d",
                      "Big": 1}, "hand", 5),
               Event({"Channel": "y", "EventID": 1, "Task": 7, "Big": 2**70}, "hand", 6)]
    sink = ParquetSink(tmp_path, batch=50)
    for ev in events:
        sink.add(event_row(ev))
    sink.close()
    n = 0
    for path in sorted(tmp_path.rglob("*.parquet")):
        table = pq.read_table(path)
        for b in table.to_batches():
            for (seq, ev), row in zip(batch_events(b), b.to_pylist(), strict=True):
                want = row_event(row)
                assert seq == row["_seq"]
                assert (ev.file, ev.position) == (want.file, want.position)
                assert list(ev.fields.items()) == list(want.fields.items())
                n += 1
    assert n == len(events)
    hand = {e.position: e for e in events if e.file == "hand"}
    got = {}
    for path in sorted(tmp_path.rglob("*.parquet")):
        for b in pq.read_table(path).to_batches():
            got.update({ev.position: ev for _, ev in batch_events(b) if ev.file == "hand"})
    assert got[1].fields == hand[1].fields  # typed values, None and list items come back
    assert got[2].fields == hand[2].fields
    for i in (4, 5, 6):
        assert got[i].fields == hand[i].fields
        assert {k: type(v) for k, v in got[i].fields.items()} == {
            k: type(v) for k, v in hand[i].fields.items()}


def test_plans_on_spark_refuse_empty_huge_and_bomb_inputs_with_located_errors(spark, case_data,
                                                                              tmp_path):
    """An empty converted folder, files over ``columnar_file_bytes`` (never read: Spark filters
    on their length) and a Parquet file whose footer declares more decoded data than the limit
    (a 60 MB column compressed to a few KB: refused before decompressing): each a read error
    naming the file, the exit code saying so, the other files hunted."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from ruleatlas.limits import Limits

    rules = [c.rule for c in CASES]
    empty = tmp_path / "empty"
    (empty / "_kind=x").mkdir(parents=True)
    found, _, report = _plans_hunt(spark, rules, empty)
    assert found == [] and report.exit_code() == 2
    assert [e.reason for e in report.errors] == ["no parquet file of the columnar layout here"]

    files = sorted(case_data.rglob("*.parquet"))
    small = min(f.stat().st_size for f in files)
    cap = Limits(columnar_file_bytes=small)  # every file but the smallest is over it
    found, _, report = _plans_hunt(spark, rules, case_data, limits=cap)
    over = sorted(e.file for e in report.errors)
    assert over == sorted(str(f) for f in files if f.stat().st_size > small)
    assert all(e.reason.startswith("converted file exceeds") for e in report.errors)
    assert report.exit_code() == 1
    assert report.events == sum(pq.read_metadata(f).num_rows for f in files
                                if f.stat().st_size <= small)

    bomb_root = tmp_path / "bomb"
    shutil.copytree(case_data, bomb_root)
    bomb = bomb_root / "_kind=x" / "part-99999.parquet"
    bomb.parent.mkdir()
    table = pa.table({"_file": ["b"], "_position": pa.array([1], pa.int64()),
                      "_seq": pa.array([10_000], pa.int64()), "CommandLine": ["a" * (60 << 20)]})
    pq.write_table(table, bomb, compression="zstd")
    assert bomb.stat().st_size < 1 << 20
    found, _, report = _plans_hunt(spark, rules, bomb_root,
                                   limits=Limits(columnar_file_bytes=16 << 20))
    assert [(e.file, e.reason.split(" (")[0]) for e in report.errors] == [
        (str(bomb), "converted file exceeds 16 MB decoded")]
    assert report.exit_code() == 1
    assert {k for k in ((f.rule.rule.id, f.event.file, f.event.position) for f in found)
            if k[0] == k[1]} == _expected(CASES, None)


def test_plans_on_spark_report_an_empty_file(spark, case_data, tmp_path):
    """A 0-byte file in a converted folder (which Spark hands to no task) is a read error of
    that file, and a file with a space and a ``%`` in its name is matched to the listing: the
    rest is hunted as before, every file an input of the report."""
    import shutil

    root = tmp_path / "with empty"
    shutil.copytree(case_data, root)
    empty = root / "_kind=x%25 y" / "part 0.parquet"
    empty.parent.mkdir()
    empty.write_bytes(b"")
    found, _, report = _plans_hunt(spark, [c.rule for c in CASES], root)
    assert [(e.file, e.reason) for e in report.errors] == [(str(empty), "empty file (0 bytes)")]
    assert report.exit_code() == 1
    assert len(report.inputs) == len(list(root.rglob("*.parquet")))
    assert {k for k in ((f.rule.rule.id, f.event.file, f.event.position) for f in found)
            if k[0] == k[1]} == _expected(CASES, None)
