"""ES|QL rules replayed on events (engine/esql_semantics.py, esql_functions.py, esql_extract.py).

Hand-made ECS rows go through the real lowering (``languages/esql``), ``runner.prepare`` and the
real :class:`Engine` (its ECS view replaced by the rows as written). Every expectation was
written by reading Elastic's ES|QL reference (operators, null and multi-valued semantics,
commands; see docs/esql.md "Running ES|QL rules"), not by running the code.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import ELASTIC, OTRF
from ruleatlas.engine import runner
from ruleatlas.engine.esql_extract import dissect_regex, grok_regex
from ruleatlas.engine.events import Event
from ruleatlas.engine.readers import read_events
from ruleatlas.languages import analyze
from ruleatlas.model import Rule
from ruleatlas.sources.elastic import load_elastic_file


def esql_rule(query: str) -> runner.EngineRule:
    r = Rule(id="t", source="elastic", path="t.toml", title="t", language="esql",
             query=query, body="", type="esql")
    return runner.prepare(r, analyze(r))


@pytest.fixture
def rows_view(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The engine's ECS view is the event's fields as written (hand-made ECS rows)."""
    monkeypatch.setattr(runner, "ecs_view", lambda fields, key=None, only=None: dict(fields))
    yield


def run(query: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The findings' rows (a non-aggregating rule: the matched fields it reads; an aggregating
    one: its result rows)."""
    er = esql_rule(query)
    assert er.runnable, er.reason
    evs = [Event(dict(r), "t.json", i + 1) for i, r in enumerate(rows)]
    return [dict(f.matched) for f in runner.Engine([er]).run(evs)]


def hits(query: str, rows: list[dict[str, Any]]) -> list[int]:
    """The positions (1-based) of the rows a non-aggregating rule reports."""
    er = esql_rule(query)
    assert er.runnable, er.reason
    evs = [Event(dict(r), "t.json", i + 1) for i, r in enumerate(rows)]
    return [f.event.position for f in runner.Engine([er]).run(evs)]


Q = "from logs-* | where "

# --------------------------------------------------------------------------------------------
# where: three-valued logic, case, like/rlike, in, multi-values
# --------------------------------------------------------------------------------------------

NULLS = [{"f": "x"}, {"f": "y"}, {}]


@pytest.mark.parametrize(("cond", "expected"), [
    ('f == "x"', [1]),
    ('f != "x"', [2]),  # null != "x" is null: the row without f is dropped
    ('not f == "x"', [2]),  # not null is null
    ('f is null', [3]),
    ('f is not null', [1, 2]),
    ('not f == "x" or f is null', [2, 3]),  # the corpus rules' own workaround
    ('f == "x" or g == "z"', [1]),  # null or false is null: dropped; true or null is true
    ('not (f == "x" and g == "z")', [2]),  # x row: not (true and null) = null
    ('f in ("x", "q")', [1]),
    ('f not in ("x")', [2]),
])
def test_three_valued_where(rows_view: None, cond: str, expected: list[int]) -> None:
    assert hits(Q + cond, NULLS) == expected


def test_equality_is_case_sensitive_and_eq_tilde_is_not(rows_view: None) -> None:
    rows = [{"p": "CMD.EXE"}, {"p": "cmd.exe"}]
    assert hits(Q + 'p == "cmd.exe"', rows) == [2]
    assert hits(Q + 'p =~ "cmd.exe"', rows) == [1, 2]
    assert hits(Q + 'to_lower(p) == "cmd.exe"', rows) == [1, 2]
    assert hits(Q + 'to_lower(p) == "CMD.EXE"', rows) == []  # lowered value vs upper literal


def test_like_and_rlike_match_the_whole_value(rows_view: None) -> None:
    rows = [{"c": "powershell -enc abc"}, {"c": "x powershell"}, {"c": "a?c"}]
    assert hits(Q + 'c like "powershell*"', rows) == [1]
    assert hits(Q + 'c like "*powershell"', rows) == [2]
    assert hits(Q + 'c like "a?c"', rows) == [3]  # ? is one character
    assert hits(Q + 'c like "a\\\\?c"', rows) == [3]  # \? is a literal ?
    assert hits(Q + 'c rlike "power.*"', rows) == [1]  # anchored: not a search
    assert hits(Q + 'c rlike ".*enc.*"', rows) == [1]
    assert hits(Q + 'c like ("x*", "a*")', rows) == [2, 3]
    assert hits(Q + 'c LIKE "POWERSHELL*"', rows) == []  # case-sensitive


def test_multi_valued_field_gives_null_except_mv_functions(rows_view: None) -> None:
    rows = [{"args": ["-enc", "abc"]}, {"args": ["-enc"]}, {"args": "abc"}]
    # "functions return null when applied to a multivalued field"; a one-value list is a value
    assert hits(Q + 'args == "-enc"', rows) == [2]
    assert hits(Q + 'mv_contains(args, "abc")', rows) == [1, 3]
    assert hits(Q + "mv_count(args) == 2", rows) == [1]
    assert hits(Q + 'length(args) > 0', rows) == [2, 3]


def test_numbers_written_as_text_meet_numbers(rows_view: None) -> None:
    rows = [{"event.code": "4104", "n": 5}, {"event.code": "1", "n": "12"}]
    assert hits(Q + 'event.code == "4104"', rows) == [1]
    assert hits(Q + "n > 10", rows) == [2]


def test_look_back_window_on_timestamp_is_true(rows_view: None) -> None:
    rows = [{"@timestamp": "2019-05-01T00:00:00Z", "a": 1}]
    assert hits(Q + "@timestamp > now() - 7 day and a == 1", rows) == [1]
    assert hits(Q + "a == 1 | where @timestamp < now() - 5m", rows) == [1]


def test_unknown_function_is_not_runnable_with_the_reason() -> None:
    er = esql_rule(Q + 'json_extract(m, "$.a") == "b"')
    assert er.reason is not None and "json_extract" in er.reason
    er = esql_rule(Q + 'qstr("cmd AND exe")')  # a Lucene query string: not run
    assert er.reason is not None and "qstr" in er.reason


def test_generating_row_command_is_not_runnable() -> None:
    er = esql_rule('row a = 1 | where a == 1')
    assert er.reason is not None and "generating" in er.reason


# --------------------------------------------------------------------------------------------
# eval, functions, rename, keep, dissect, grok, mv_expand
# --------------------------------------------------------------------------------------------


def test_eval_then_where_on_the_computed_field(rows_view: None) -> None:
    rows = [{"s": "a``b``c``d"}, {"s": "ab"}]
    q = ('from logs-* | eval n = length(s) - length(replace(s, "`", "")) '
         "| where n >= 6")
    assert hits(q, rows) == [1]


@pytest.mark.parametrize(("expr", "row", "expected"), [
    ('substring(s, 2, 3) == "bcd"', {"s": "abcdef"}, True),  # 1-based
    ('substring(s, -2) == "ef"', {"s": "abcdef"}, True),
    ('concat(a, "-", b) == "x-y"', {"a": "x", "b": "y"}, True),
    ('concat(a, "-", b) is null', {"a": "x"}, True),  # a null argument: null
    ('coalesce(a, b) == "y"', {"b": "y"}, True),
    ('case(a == "x", "one", "other") == "other"', {"a": "z"}, True),
    ('case(a == "x", "one") is null', {"a": "z"}, True),
    ('starts_with(a, "ab") and ends_with(a, "yz")', {"a": "abxyz"}, True),
    ('to_upper(a) == "AB"', {"a": "aB"}, True),
    ('cidr_match(to_ip(ip), "10.0.0.0/8")', {"ip": "10.1.2.3"}, True),
    ('not cidr_match(to_ip(ip), "127.0.0.0/8", "::1")', {"ip": "10.1.2.3"}, True),
    ("date_diff(\"minute\", a, b) == 90",
     {"a": "2024-01-01T00:00:00Z", "b": "2024-01-01T01:30:59Z"}, True),
    ('mv_first(v) == "a" and mv_last(v) == "c"', {"v": ["a", "b", "c"]}, True),
    ('mv_concat(v, ",") == "a,b"', {"v": ["a", "b"]}, True),
    ('locate(a, "c") == 3', {"a": "abc"}, True),
    ("round(x, 1) == 2.3", {"x": 2.34}, True),
])
def test_functions(rows_view: None, expr: str, row: dict[str, Any], expected: bool) -> None:
    assert hits(f"from logs-* | eval r = {expr} | where r", [row]) == ([1] if expected else [])


def test_rename_and_keep(rows_view: None) -> None:
    rows = [{"a": "x", "b": "y", "c": "z"}]
    assert hits("from logs-* | rename a as q | where q == \"x\" and a is null", rows) == [1]
    # keep drops every other column: b is null afterwards
    assert hits('from logs-* | keep a, c | where b is null and c == "z"', rows) == [1]
    assert hits('from logs-* | drop c | where c is null', rows) == [1]


def test_dissect_extracts_and_a_mismatch_leaves_nulls(rows_view: None) -> None:
    rows = [{"m": "verdict=bad confidence=0.9 summary=x y z"}, {"m": "nothing"}]
    q = ('from logs-* | dissect m "verdict=%{v} confidence=%{c} summary=%{s}" '
         '| where v == "bad" and s == "x y z"')
    assert hits(q, rows) == [1]
    q = 'from logs-* | dissect m "verdict=%{v} %{}" | where v is null'
    assert hits(q, rows) == [2]


def test_dissect_regex_keys_and_padding() -> None:
    rx, keys = dissect_regex("%{a->} %{+a} %{?skip}-%{b}")
    assert keys == (("a", "set"), ("a", "append"), ("skip", "skip"), ("b", "set"))
    m = rx.fullmatch("1    2 3-4")
    assert m is not None and m.groups() == ("1", "2", "3", "4")


def test_grok_named_groups_with_dots_and_library_patterns(rows_view: None) -> None:
    rows = [{"cl": "net use \\\\srv https://evil.example.com:8443/x"}]
    q = ('from logs-* | grok cl "%{URIPROTO:proto}://%{URIHOST:host}" '
         '| where proto == "https" and host == "evil.example.com:8443"')
    assert hits(q, rows) == [1]
    q = ('from logs-* | grok cl """(?i:HTTPS?)://(?<Esql.server>[a-z.]+)""" '
         '| where Esql.server == "evil.example.com"')
    assert hits(q, rows) == [1]
    rx, names = grok_regex("%{INT:n:int}")
    assert [x[1:] for x in names] == [("n", "int")] and rx.search("a 42") is not None


def test_mv_expand_one_row_per_value_then_stats_counts_rows(rows_view: None) -> None:
    rows = [{"h": "A", "act": ["a", "b"]}, {"h": "A", "act": "a"}]
    got = run("from logs-* | mv_expand act | stats n = count(*) by act | sort act", rows)
    assert got == [{"n": 2, "act": "a"}, {"n": 1, "act": "b"}]


# --------------------------------------------------------------------------------------------
# stats ... by, then where, sort, limit, inline stats
# --------------------------------------------------------------------------------------------

LOGONS = [
    {"source.ip": "10.0.0.5", "user.name": "admin", "host.id": "h1"},
    {"source.ip": "10.0.0.5", "user.name": "bob", "host.id": "h1"},
    {"source.ip": "10.0.0.5", "user.name": "admin", "host.id": "h2"},
    {"source.ip": "10.0.0.9", "user.name": "eve", "host.id": "h1"},
    {"user.name": "x", "host.id": "h3"},  # no source.ip: the null group
]


def test_stats_by_then_where_count(rows_view: None) -> None:
    q = ("from logs-* | stats c = count(*), u = count_distinct(user.name), "
         "hosts = values(host.id) by source.ip | where c >= 3")
    assert run(q, LOGONS) == [{"c": 3, "u": 2, "hosts": ["h1", "h2"],
                               "source.ip": "10.0.0.5"}]


def test_stats_null_key_is_a_group_and_unnamed_columns_are_their_text(rows_view: None) -> None:
    q = "from logs-* | stats count(*), min(user.name) by source.ip | where source.ip is null"
    assert run(q, LOGONS) == [{"count(*)": 1, "min(user.name)": "x"}]


def test_stats_multi_valued_key_puts_the_row_in_each_group(rows_view: None) -> None:
    rows = [{"k": ["a", "b"], "v": 1}, {"k": "a", "v": 2}]
    got = run("from logs-* | stats s = sum(v) by k | sort k", rows)
    assert got == [{"s": 3, "k": "a"}, {"s": 1, "k": "b"}]


def test_stats_where_filter_per_aggregation(rows_view: None) -> None:
    q = ('from logs-* | stats admins = count(*) where user.name == "admin", '
         "total = count(*) by host.id | where admins >= 1 | sort host.id")
    assert run(q, LOGONS) == [{"admins": 1, "total": 3, "host.id": "h1"},
                              {"admins": 1, "total": 1, "host.id": "h2"}]


def test_sort_and_limit_after_stats(rows_view: None) -> None:
    q = "from logs-* | stats c = count(*) by host.id | sort c desc, host.id | limit 2"
    assert run(q, LOGONS) == [{"c": 3, "host.id": "h1"}, {"c": 1, "host.id": "h2"}]


def test_eval_after_stats_and_keep(rows_view: None) -> None:
    q = ("from logs-* | stats names = values(user.name) by host.id | where host.id == \"h2\" "
         "| eval user.name = mv_first(names) | keep host.id, user.name")
    assert run(q, LOGONS) == [{"host.id": "h2", "user.name": "admin"}]


def test_date_trunc_bucket_as_a_group(rows_view: None) -> None:
    rows = [{"@timestamp": f"2024-01-01T00:00:{s:02d}Z", "a": 1} for s in (1, 30, 59)]
    rows.append({"@timestamp": "2024-01-01T00:01:05Z", "a": 1})
    q = ("from logs-* | eval w = date_trunc(60 seconds, @timestamp) "
         "| stats n = count(*) by w | where n > 2")
    assert run(q, rows) == [{"n": 3, "w": "2024-01-01T00:00:00.000Z"}]


def test_inline_stats_keeps_each_row_with_its_group(rows_view: None) -> None:
    q = ("from logs-* | inline stats n = count(*) by source.ip "
         '| where n >= 3 and user.name == "bob"')
    got = run(q, LOGONS)
    assert len(got) == 1 and got[0]["n"] == 3 and got[0]["user.name"] == "bob"


def test_rule_through_the_plan_cache_round_trip(rows_view: None) -> None:
    """A prepared ES|QL rule stored as plan data (engine/plans.py) runs the same."""
    from ruleatlas.engine.plan import RulePlan, plan_rule
    from ruleatlas.engine.plans import dumps, loads

    r = Rule(id="t", source="elastic", path="t.toml", title="t", language="esql",
             query="from logs-* | stats c = count(*) by source.ip | where c >= 3", body="",
             type="esql")
    p = runner.checked(plan_rule(r, analyze(r)))
    assert p.runnable, p.reason
    back = runner.engine_rule(loads(dumps(p), RulePlan))
    evs = [Event(dict(r), "t.json", i + 1) for i, r in enumerate(LOGONS)]
    assert [dict(f.matched) for f in runner.Engine([back]).run(evs)] == [
        {"c": 3, "source.ip": "10.0.0.5"}]


# --------------------------------------------------------------------------------------------
# The corpus
# --------------------------------------------------------------------------------------------


def corpus_prepared() -> dict[str, runner.EngineRule]:
    out = {}
    for p in sorted(ELASTIC.rglob("*.toml")):
        for r in load_elastic_file(ELASTIC, p).rules:
            if r.language == "esql":
                out[r.path] = runner.prepare(r, analyze(r))
    return out


def test_corpus_runnable_counts_ratchet() -> None:
    """docs/esql.md "Running ES|QL rules": 36 of 212 rules and 19 of 123 hunting files run
    (none did before); most of the others read non-Windows data (a routed source, or index
    patterns no Windows document has)."""
    got = corpus_prepared()
    rules = [er for er in got.values() if er.rule.type != "hunt"]
    hunts = [er for er in got.values() if er.rule.type == "hunt"]
    assert (len(rules), len(hunts)) == (212, 123)
    assert sum(er.runnable for er in rules) >= 36
    assert sum(er.runnable for er in hunts) >= 19
    windows = [er for p, er in got.items() if "/windows/" in p]
    assert sum(er.runnable for er in windows) >= 43


def corpus_findings(rule_path: str, data: Path) -> list[runner.Finding]:
    rule = load_elastic_file(ELASTIC, ELASTIC / rule_path).rules[0]
    er = runner.prepare(rule, analyze(rule))
    assert er.runnable, er.reason
    errors: list[Any] = []
    evs = list(read_events([str(data)], errors=errors))
    assert not errors
    return list(runner.Engine([er]).run(evs))


OTRF_WIN = OTRF / "datasets" / "atomic" / "windows"


def test_hunt_rundll32_by_command_line_on_comsvcs_minidump() -> None:
    """psh_lsass_memory_dump_comsvcs: powershell runs ``rundll32.exe comsvcs.dll MiniDump 756
    C:\\Users\\wardog\\...\\lsass-comsvcs.dmp full`` (Sysmon 1 #107 and Security 4688 #17, host
    WORKSTATION5); no exclusion of the hunt's rlike applies. The two ``replace`` calls make
    the user folder ``C:\\users\\user\\`` (Java replacement: ``\\\\`` is one backslash) and drop
    runs of 3+ digits/dots (``32.`` of rundll32.exe, ``756``): one group, 2 events, 1 host."""
    got = corpus_findings("hunting/windows/queries/rundll32_execution_aggregated_by_cmdline.toml",
                          OTRF_WIN / "credential_access/host/psh_lsass_memory_dump_comsvcs.zip")
    assert [dict(f.matched) for f in got] == [{
        "cmdline": ('"C:\\Windows\\System32\\rundllexe" C:\\windows\\System32\\comsvcs.dll '
                    "MiniDump  C:\\users\\user\\AppData\\Local\\Temp\\lsass-comsvcs.dmp full"),
        "process.parent.name": "powershell.exe", "hosts": 1, "total": 2}]


def test_hunt_interpreter_from_unusual_parent_on_psexec() -> None:
    """empire_psexec_dcerpc_tcp_svcctl: services.exe -> cmd.exe -> powershell.exe ->
    conhost.exe, each in Sysmon 1 and Security 4688 (host WORKSTATION6), every parent under
    C:\\Windows\\System32: three parents, 2 events each (cc <= 10), one host."""
    got = corpus_findings(
        "hunting/windows/queries/windows_command_and_scripting_interpreter_from_unusual_parent"
        ".toml", OTRF_WIN / "lateral_movement/host/empire_psexec_dcerpc_tcp_svcctl.zip")
    assert sorted((f.matched["process.parent.name"], f.matched["cc"], f.matched["hosts"])
                  for f in got) == [("cmd.exe", 2, 1), ("powershell.exe", 2, 1),
                                    ("services.exe", 2, 1)]


def test_hunt_lolbin_dns_lookups_on_schtask_modification() -> None:
    """schtask_modification: powershell.exe resolves raw.githubusercontent.com twice (Sysmon 22
    #1921, #1924) and WORKSTATION6 twice; the rlike ``.+\\.[a-z-A-Z]{2,3}`` matches the whole
    value, so the dotless host name is out: one row, 2 occurrences, 1 host."""
    got = corpus_findings(
        "hunting/windows/queries/domain_names_queried_via_lolbins_and_with_low_occurrence_"
        "frequency.toml", OTRF_WIN / "lateral_movement/host/schtask_modification.zip")
    assert [dict(f.matched) for f in got] == [{
        "process.name": "powershell.exe", "dns.question.name": "raw.githubusercontent.com",
        "occurrences": 2, "hosts": 1}]


def test_kql_inside_esql_and_its_fields_reach_the_view(rows_view: None) -> None:
    rows = [{"process.name": "cmd.exe", "a": 1}, {"process.name": "x.exe", "a": 1}]
    q = 'from logs-* | where kql("process.name: cmd.exe") and a == 1'
    assert hits(q, rows) == [1]
    assert "process.name" in esql_rule(q).fields


def test_now_after_stats_is_the_last_matched_event_time(rows_view: None) -> None:
    """The newly-observed rules: ``date_diff("minute", first_seen, now()) <= 6``; now() is the
    time of the last event the rule matched (docs/esql.md)."""
    rows = [{"@timestamp": "2024-01-01T00:00:00Z", "s": "old"},
            {"@timestamp": "2024-01-01T01:00:00Z", "s": "new"},
            {"@timestamp": "2024-01-01T01:05:00Z", "s": "new"}]
    q = ("from logs-* | stats first = min(@timestamp) by s "
         '| eval recent = date_diff("minute", first, now()) | where recent <= 6 | keep s')
    assert run(q, rows) == [{"s": "new"}]
    er = esql_rule('from logs-* | eval d = date_diff("minute", @timestamp, now())')
    assert er.reason is not None and "now()" in er.reason


def test_kql_inside_esql_is_case_insensitive(rows_view: None) -> None:
    """ES|QL's kql() compares keywords case-insensitively (docs/elastic-engine.md)."""
    assert hits('from logs-* | where kql("process.name: CMD.EXE")',
                [{"process.name": "cmd.exe"}]) == [1]


def test_sort_puts_nulls_last_ascending_and_first_descending(rows_view: None) -> None:
    """ES|QL's SORT: a null is larger than any value, unless NULLS FIRST/LAST says."""
    rows = [{"k": "a", "v": 2}, {"k": "b"}, {"k": "c", "v": 1}]
    base = "from logs-* | stats m = max(v) by k | sort m"
    keys = [r["k"] for r in run(base, rows)]
    assert keys == ["c", "a", "b"]
    assert [r["k"] for r in run(base + " desc", rows)] == ["b", "a", "c"]
    assert [r["k"] for r in run(base + " desc nulls last", rows)] == ["a", "c", "b"]
    assert [r["k"] for r in run(base + " nulls first", rows)] == ["b", "c", "a"]


def test_prefilter_anchors_keep_every_finding_of_the_windows_rules() -> None:
    """The head's anchors come from the lowered predicate trees: a necessary condition of the
    ES|QL condition, so the pre-filter changes no finding (every runnable Windows rule and
    hunting file, on one recording, with and without it)."""
    ers = [er for p, er in corpus_prepared().items() if "/windows/" in p and er.runnable]
    assert len(ers) >= 41
    errors: list[Any] = []
    evs = list(read_events([str(OTRF_WIN / "lateral_movement/host/"
                                "empire_psexec_dcerpc_tcp_svcctl.zip")], errors=errors))

    def found(prefilter: bool) -> list[tuple[str, Any, str]]:
        fresh = [runner.prepare(er.rule, analyze(er.rule)) for er in ers]
        return sorted((f.rule.rule.id, f.event.position, repr(sorted(f.matched.items())))
                      for f in runner.Engine(fresh, prefilter=prefilter).run(evs))

    with_anchors = found(True)
    assert with_anchors == found(False)
    assert len(with_anchors) >= 3


def test_match_operator_on_analysed_text_and_keywords(rows_view: None) -> None:
    """``f : "q"`` is a match query: on PowerShell script text (the integration's pattern
    analyzer ``[\\W&&[^-]]+``, lower-cased) any query token among the text's tokens; on a
    keyword field the whole value."""
    rows = [{"powershell.file.script_block_text": "$a = [Char]65 + 'x'"},
            {"powershell.file.script_block_text": "$chars = 1"},
            {"powershell.file.script_block_text": "New-Object Net.WebClient"},
            {"process.name": "svchost.exe"}]
    s = "powershell.file.script_block_text"
    assert hits(Q + f'{s} : "char"', rows) == [1]  # "chars" is another token
    assert hits(Q + f'{s} : "rahc|new-object"', rows) == [3]  # OR of tokens; - stays inside
    assert hits(Q + 'process.name : "svchost.exe"', rows) == [4]
    er = esql_rule(Q + 'match(process.name, "svchost.exe", {"fuzziness": 1})')
    assert er.reason is not None and "fuzziness" in er.reason
