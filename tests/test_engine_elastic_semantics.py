"""Elastic semantics, end to end: EQL/KQL text -> the real lowering (``analyze_eql_query`` /
``analyze_kql_query``) -> ``engine.compile.compile_node`` (through ``compile_elastic``) -> a
hand-made ECS event (flat dotted keys, as ``ecs_view`` gives them). Every expectation was written
by reading Elasticsearch's EQL syntax/function references and Kibana's KQL reference (cited in
docs/elastic-engine.md), not by running the code."""

from __future__ import annotations

from typing import Any

import pytest

from ruleatlas.engine.compile import compile_node
from ruleatlas.engine.elastic_semantics import compile_elastic, elastic_tree
from ruleatlas.languages.eql import analyze_eql_query
from ruleatlas.languages.kql import analyze_kql_query
from ruleatlas.model import Not, Op, Predicate

EV: dict[str, Any] = {
    "event.category": ["process"],
    "event.type": ["start"],
    "process.name": "cmd.exe",
    "process.pid": 4,
    "process.args": ["cmd.exe", "/c", "-enc"],
    "process.executable": "C:\\Windows\\System32\\cmd.exe",
    "file.path": "C:\\Windows\\System32\\cmd.exe",
    "source.ip": "192.168.1.5",
    "destination.port": 445,
    "url.domain": "subdomain.example.com",
    "winlog.event_data.GrantedAccess": "0x140a",
    "process.name.caseless": "cmd.exe",
    "powershell.file.script_block_text":
        "IEX (New-Object Net.WebClient); invoke-mimikatz -DumpCreds",
    "message": "line one\nline two",
}


def eql(query: str, ev: dict[str, Any] = EV) -> bool:
    a = analyze_eql_query(query)
    assert not a.problems, a.problems
    return compile_elastic(a.condition)(ev)


def kql(query: str, ev: dict[str, Any] = EV) -> bool:
    a = analyze_kql_query(query)
    assert not a.problems, a.problems
    return compile_elastic(a.condition)(ev)


# EQL: one row per operator/function and case; (query, expected) on EV.
EQL_CASES = [
    # `:` -- case-insensitive, wildcards * and ?, whole value
    ('process where process.name : "CMD.EXE"', True),
    ('process where process.name : "C*.EXE"', True),
    ('process where process.name : "?md.exe"', True),
    ('process where process.name : "md.exe"', False),
    ('process where process.name : ("x.exe", "CMD*")', True),
    ('file where process.name : "cmd.exe"', False),  # category is part of the query
    ('any where process.name : "cmd.exe"', True),
    # `==` / `!=` -- case-sensitive, * is a plain character
    ('process where process.name == "cmd.exe"', True),
    ('process where process.name == "CMD.EXE"', False),
    ('process where process.name == "cmd*"', False),
    ('process where process.name != "CMD.EXE"', True),
    ('process where process.name != "cmd.exe"', False),
    # like / like~
    ('process where process.name like "cmd*"', True),
    ('process where process.name like "CMD*"', False),
    ('process where process.name like~ "CMD*"', True),
    ('process where process.name like ("x", "c?d.exe")', True),
    # in / in~ / not in / not in~
    ('process where process.name in ("cmd.exe", "x")', True),
    ('process where process.name in ("CMD.EXE")', False),
    ('process where process.name in~ ("CMD.EXE")', True),
    ('process where process.name not in ("CMD.EXE")', True),
    ('process where process.name not in~ ("CMD.EXE")', False),
    ('process where process.pid in (3, 4)', True),
    # regex / regex~ -- Lucene, anchored
    ('process where process.name regex "c.d\\\\.exe"', True),
    ('process where process.name regex "md\\\\.exe"', False),
    ('process where process.name regex "CMD\\\\.exe"', False),
    ('process where process.name regex~ "CMD\\\\.exe"', True),
    ('process where process.name regex "[a-z]{3}\\\\.exe"', True),
    ('process where process.name regex "^cmd.*"', False),  # ^ is a literal in Lucene
    ('process where process.name regex ("x", "cm.*")', True),
    ('process where message regex "line one.line two"', True),  # . matches a line break
    # comparisons
    ('process where process.pid > 3', True),
    ('process where process.pid < 3', False),
    ('process where process.pid >= 4 and process.pid <= 4', True),
    ('process where 3 < process.pid', True),
    # functions lowered to predicates
    ('process where startsWith(process.name, "cmd")', True),
    ('process where startsWith(process.name, "CMD")', False),
    ('process where startsWith~(process.name, "CMD")', True),
    ('process where endsWith(process.executable, "\\\\cmd.exe")', True),
    ('process where endsWith(process.executable, "\\\\CMD.EXE")', False),
    ('process where endsWith~(process.executable, "\\\\CMD.EXE")', True),
    ('process where stringContains(process.executable, "System32")', True),
    ('process where stringContains(process.executable, "system32")', False),
    ('process where stringContains~(process.executable, "system32")', True),
    ('process where cidrMatch(source.ip, "10.0.0.0/8", "192.168.0.0/16")', True),
    ('process where cidrMatch(source.ip, "10.0.0.0/8")', False),
    ('process where startsWith(process.name, "cmd") == false', False),
    # functions kept as Conditions (eql-function-ref.md examples, on EV's values)
    ('process where length(process.name) == 7', True),
    ('process where length(process.name) > 7', False),
    ('process where substring(process.name, 0, 3) == "cmd"', True),
    ('process where substring(process.name, -4) == ".exe"', True),
    ('process where substring(process.name, -4, -1) == ".ex"', True),
    ('process where number(process.pid) == 4', True),
    ('process where number(winlog.event_data.GrantedAccess, 16) == 5130', True),
    ('process where number(winlog.event_data.GrantedAccess) == 5130', True),  # 0x: hex
    ('process where concat(process.name, "|", process.pid) == "cmd.exe|4"', True),
    ('process where between(file.path, "System32\\\\", ".exe") == "cmd"', True),
    ('process where between(file.path, "system32\\\\", ".exe") == "cmd"', False),
    ('process where between~(file.path, "system32\\\\", ".exe") == "cmd"', True),
    ('process where between(file.path, "\\\\", "\\\\") == "Windows"', True),
    ('process where between(file.path, "\\\\", "\\\\", true) == "Windows\\\\System32"', True),
    ('process where indexOf(url.domain, "d") == 3', True),
    ('process where indexOf(url.domain, ".", 10) == 17', True),
    ('process where indexOf(url.domain, "D") == null', True),
    ('process where indexOf~(url.domain, "D") == 3', True),
    ('process where add(process.pid, 1) == 5', True),
    ('process where subtract(process.pid, 6) == -2', True),
    ('process where multiply(process.pid, 2) == 8', True),
    ('process where divide(process.pid, 3) == 1', True),  # integer division rounds down
    ('process where divide(process.pid, 3.0) == 1', False),
    ('process where modulo(process.pid, 3) == 1', True),
    ('process where process.pid * 2 + 1 == 9', True),
    ('process where string(process.pid) == "4"', True),
    ('process where startsWith~(process.name, substring(process.executable, 20, 21))', True),
]


@pytest.mark.parametrize(("query", "expected"), EQL_CASES)
def test_eql_operator(query: str, expected: bool) -> None:
    assert eql(query) is expected


MISSING = {"event.category": ["process"], "process.name": "cmd.exe"}  # no user.name, no pid


@pytest.mark.parametrize(("query", "expected"), [
    ('process where ?user.name == null', True),
    ('process where user.name == null', True),
    ('process where ?user.name != null', False),
    ('process where ?process.name != null', True),
    ('process where process.name == null', False),
    ('process where ?user.name : "x*"', False),
    ('process where ?user.name like~ "*"', False),
    ('process where not ?user.name : "x*"', True),        # must_not: true when missing
    ('process where ?user.name != "x"', True),            # must_not term: true when missing
    ('process where ?user.name not in ("x")', True),
    ('process where ?user.name in ("x")', False),
    ('process where ?process.pid > 0', False),
    ('process where length(?user.name) > 0', False),      # null propagates
    ('process where not length(?user.name) > 0', False),  # NOT null is null (one script)
    ('process where length(?user.name) == null', True),
    ('process where concat(process.name, ?user.name) == "cmd.exe"', False),
    ('process where startsWith~(process.name, substring(?user.name, 0, 1))', False),
])
def test_eql_missing_fields_and_null(query: str, expected: bool) -> None:
    assert eql(query, MISSING) is expected


@pytest.mark.parametrize(("query", "expected"), [
    ('process where process.args : "-ENC"', True),        # any value matches
    ('process where process.args == "-ENC"', False),
    ('process where process.args == "/c"', True),
    ('process where process.args : ("*.ps1")', False),
    ('process where process.args != "-enc"', False),      # must_not: one value is -enc
    ('process where process.args != "x"', True),
    ('process where process.args in ("/c")', True),
    ('process where process.args not in ("/c")', False),
    ('process where process.args regex "-e.c"', True),
    ('process where startsWith(process.args, "/")', True),
    ('process where event.category : "PROCESS"', True),
    ('process where event.type == "start"', True),
    # a script reads a multi-valued field's first doc value (sorted): "-enc"
    ('process where length(process.args) == 4', True),
])
def test_eql_multi_valued(query: str, expected: bool) -> None:
    assert eql(query) is expected


def test_ne_rewrite_is_must_not() -> None:
    """``!=`` becomes ``Not(eq)`` for Elastic; the shared compile keeps SPL's ``ne``."""
    cond = analyze_eql_query('any where user.name != "x"').condition
    assert isinstance(cond, Predicate) and cond.op is Op.NE
    rewritten = elastic_tree(cond)
    assert isinstance(rewritten, Not) and isinstance(rewritten.arg, Predicate)
    assert rewritten.arg.op is Op.EQ and rewritten.arg.cased
    assert compile_node(cond)({}) is False            # SPL field!=x: needs the field
    assert compile_elastic(cond)({}) is True          # Elasticsearch: must_not term


def test_predicates_compile_the_same_without_the_layer() -> None:
    """Plain predicates (no ``!=``, no Condition) go through compile_node unchanged."""
    for q, expected in EQL_CASES[:30]:
        cond = analyze_eql_query(q).condition
        if "!=" in q:
            continue
        assert compile_node(cond)(EV) is expected, q


def test_unknown_eql_function_is_not_runnable() -> None:
    from ruleatlas.engine.compile import NotRunnable

    a = analyze_eql_query('process where arrayContains(process.args, "x")')
    with pytest.raises(NotRunnable, match="arrayContains"):
        compile_elastic(a.condition)


# KQL on keyword fields: exact and case-sensitive (Kibana's KQL reference); text fields contain.
KQL_CASES = [
    ("process.name: cmd.exe", True),
    ('process.name: "cmd.exe"', True),
    ("process.name: CMD.EXE", False),
    ("process.name: cmd*", True),
    ("process.name: CMD*", False),
    ("process.name: *md.exe", True),
    ("process.name: md.exe", False),
    ("process.name: ?md.exe", False),          # ? is a literal character in KQL
    ('process.name: "cmd*"', False),           # quoted * is a literal
    ("process.name: *", True),
    ("user.name: *", False),
    ("not user.name: *", True),
    ("not user.name: x", True),
    ("process.name: (x.exe or cmd.exe)", True),
    ("process.name: (x.exe and cmd.exe)", False),
    ("process.args: -enc", True),               # any value of a list
    ("process.args: -ENC", False),
    ("not process.args: /c", False),
    ("process.name.caseless: CMD.EXE", True),   # lowercase normalizer
    ("powershell.file.script_block_text: Invoke-Mimikatz", True),   # text: contains, any case
    ('powershell.file.script_block_text: "net.webclient"', True),
    ("powershell.file.script_block_text: Invoke-Kerberoast", False),
    ("destination.port: 445", True),            # "445" meets the number 445
    ("destination.port > 400 and destination.port <= 445", True),
    ("destination.port < 445", False),
    ("source.ip: 192.168.0.0/16", True),
    ("source.ip: 10.0.0.0/8", False),
    ("event.category: process and process.name: cmd.exe", True),
    ("event.category: PROCESS", False),
]


@pytest.mark.parametrize(("query", "expected"), KQL_CASES)
def test_kql_operator(query: str, expected: bool) -> None:
    assert kql(query) is expected


def test_corpus_eql_rules_all_compile() -> None:
    """Every EQL rule and building block of the Elastic corpus compiles with Elastic's
    semantics (1,081 queries; 220 sequences/samples build a runner). Ratchet: may not drop."""
    import tomllib

    from conftest import ELASTIC
    from ruleatlas.engine.sequence import build_runner

    n = seqs = 0
    files = [*ELASTIC.glob("rules/**/*.toml"), *ELASTIC.glob("rules_building_block/**/*.toml")]
    for p in sorted(files):
        rule = tomllib.loads(p.read_text(encoding="utf-8")).get("rule", {})
        if rule.get("language") != "eql":
            continue
        a = analyze_eql_query(rule["query"])
        if a.sequence is not None:
            build_runner(a.sequence, compile_elastic)
            seqs += 1
        else:
            compile_elastic(a.condition)
        n += 1
    assert n >= 1081 and seqs >= 220


def test_prefilter_keeps_elastic_rules_on_multi_valued_fields() -> None:
    """engine/matcher.py's literal pre-filter on the Elastic trees: an anchor found in any value
    of a list keeps the rule a candidate: the candidates hold every rule that matches."""
    from ruleatlas.engine.matcher import Prefilter, anchors

    queries = ['process where process.args : "-ENC"',
               'process where process.args == "/c" and process.name != "x.exe"',
               'process where process.args regex~ "-E.C"',
               'process where process.args : "*.ps1"']
    trees = [elastic_tree(analyze_eql_query(q).condition) for q in queries]
    pf = Prefilter([anchors(t) for t in trees])
    got = pf.candidates(EV)
    assert [i for i in got if compile_elastic(trees[i])(EV)] == [0, 1, 2]
    assert not compile_elastic(trees[3])(EV)  # ".ps1" is in no value
    assert set(range(3)) <= set(got)
