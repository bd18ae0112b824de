"""Elastic rules in the engine, end to end: a rule's TOML text -> the Elastic source reader ->
the real analysis -> ``engine.runner.prepare`` -> :class:`Engine` over RAW Windows events (as
the readers give them), matched through the ECS view.

Every expectation was written by reading the rule and the event (and Elastic's documentation,
cited in docs/elastic-engine.md), not by running the engine."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from ruleatlas.cli import app
from ruleatlas.engine.events import Event
from ruleatlas.engine.hunt import HuntReport, run
from ruleatlas.engine.runner import Engine, EngineRule, prepare
from ruleatlas.languages import analyze
from ruleatlas.model import Rule
from ruleatlas.sources.elastic import rule_from_toml

SYSMON = "Microsoft-Windows-Sysmon/Operational"


def elastic_rule(query: str, *, language: str = "eql", rtype: str = "eql",
                 index: tuple[str, ...] = ("winlogbeat-*", "logs-windows.sysmon_operational-*"),
                 extra: str = "", rule_id: str = "00000000-0000-4000-8000-000000000001") -> Rule:
    idx = ", ".join(f'"{i}"' for i in index)
    text = f'''[metadata]
creation_date = "2025/01/01"
maturity = "production"

[rule]
author = ["Rule Atlas tests"]
description = "test"
from = "now-9m"
index = [{idx}]
language = "{language}"
name = "test rule {rule_id[-4:]}"
risk_score = 21
rule_id = "{rule_id}"
severity = "low"
type = "{rtype}"
query = \'\'\'
{query}
\'\'\'
{extra}
'''
    got = rule_from_toml(tomllib.loads(text), "rules/windows/test.toml", text, "https://x")
    assert isinstance(got, Rule), got
    return got


def prepared(rule: Rule) -> EngineRule:
    return prepare(rule, analyze(rule))


def proc(image: str, command_line: str, *, t: str = "2024-05-01T10:00:00Z", host: str = "WS1",
         guid: str = "{A}", parent: str = "C:\\Windows\\explorer.exe", rec: int = 1) -> Event:
    """A Sysmon 1 (process creation) event as the EVTX reader flattens it."""
    fields: dict[str, Any] = {
        "Channel": SYSMON, "EventID": 1, "Computer": host, "TimeCreated": t,
        "EventRecordID": rec, "Image": image, "CommandLine": command_line,
        "ProcessGuid": guid, "ProcessId": 100 + rec, "ParentImage": parent,
        "ParentCommandLine": parent, "User": "CORP\\alice",
        "OriginalFileName": image.rsplit("\\", 1)[-1],
    }
    return Event(fields, "test.evtx", rec)


def fire(er: EngineRule, events: list[Event]) -> list[int]:
    """Record numbers of the rule's findings (a sequence's: its first event)."""
    assert er.runnable, er.reason
    return [int(f.event.position) for f in Engine([er]).run(events)]


CERTUTIL = "C:\\Windows\\System32\\certutil.exe"


# --------------------------------------------------------------------------------------------
# Event rules: the ECS view and Elasticsearch's case rules
# --------------------------------------------------------------------------------------------


def test_eql_rule_matches_raw_sysmon_through_the_ecs_view() -> None:
    # process.name is the basename of Image; ':' is case-insensitive; process.args is the
    # command line split as Windows splits it
    er = prepared(elastic_rule('process where event.type == "start" and '
                               'process.name : "CERTUTIL.EXE" and process.args : "-urlcache"'))
    assert er.view == "ecs" and er.semantics == "elastic"
    events = [proc(CERTUTIL, "certutil.exe -urlcache -f http://x/a a.exe", rec=1),
              proc(CERTUTIL, "certutil.exe -encode a b", rec=2),
              proc("C:\\Windows\\System32\\cmd.exe", "cmd.exe /c -urlcache", rec=3)]
    assert fire(er, events) == [1]


def test_eql_double_equals_is_case_sensitive() -> None:
    er = prepared(elastic_rule('process where process.name == "certutil.exe"'))
    events = [proc(CERTUTIL, "certutil", rec=1),
              proc("C:\\Windows\\System32\\CertUtil.exe", "CertUtil", rec=2)]
    assert fire(er, events) == [1]


def test_eql_not_equal_is_true_on_a_missing_field() -> None:
    # Elasticsearch: f != "x" is must_not term: a document without f matches
    er = prepared(elastic_rule('process where process.name : "certutil.exe" and '
                               'process.parent.name != "cmd.exe"'))
    no_parent = proc(CERTUTIL, "certutil", rec=1)
    del no_parent.fields["ParentImage"]
    events = [no_parent, proc(CERTUTIL, "certutil", parent="C:\\Windows\\cmd.exe", rec=2),
              proc(CERTUTIL, "certutil", rec=3)]
    assert fire(er, events) == [1, 3]


def test_kql_keyword_values_are_case_sensitive() -> None:
    # Kibana's KQL reference: on keyword fields the value must match exactly, case included
    er = prepared(elastic_rule('event.category:process and process.name:"certutil.exe"',
                               language="kuery", rtype="query"))
    assert er.semantics == "elastic"
    events = [proc(CERTUTIL, "certutil", rec=1),
              proc("C:\\Windows\\System32\\CERTUTIL.EXE", "x", rec=2)]
    assert fire(er, events) == [1]


def test_rule_runs_only_on_the_kinds_its_route_selects() -> None:
    er = prepared(elastic_rule('process where process.name : "certutil.exe"'))
    other = Event({"Channel": SYSMON, "EventID": 11, "Computer": "WS1",
                   "TimeCreated": "2024-05-01T10:00:00Z", "Image": CERTUTIL,
                   "TargetFilename": "C:\\x"}, "test.evtx", 9)
    assert fire(er, [other, proc(CERTUTIL, "certutil", rec=1)]) == [1]


# --------------------------------------------------------------------------------------------
# Sequences (EQL reference: "Sequences", "maxspan", "by keyword", "until")
# --------------------------------------------------------------------------------------------

SEQ = '''sequence by host.id with maxspan=1m
  [process where process.name : "a.exe"]
  [process where process.name : "b.exe"]'''


def test_sequence_by_host_within_maxspan() -> None:
    er = prepared(elastic_rule(SEQ))
    assert er.sequence is not None
    events = [
        proc("C:\\a.exe", "a", t="2024-05-01T10:00:00Z", host="WS1", rec=1),
        proc("C:\\b.exe", "b", t="2024-05-01T10:00:30Z", host="WS2", rec=2),  # other host
        proc("C:\\b.exe", "b", t="2024-05-01T10:00:40Z", host="WS1", rec=3),  # completes 1
        proc("C:\\a.exe", "a", t="2024-05-01T10:05:00Z", host="WS1", rec=4),
        proc("C:\\b.exe", "b", t="2024-05-01T10:06:01Z", host="WS1", rec=5),  # 61 s: too late
    ]
    findings = list(Engine([er]).run(events))
    assert [int(f.event.position) for f in findings] == [1]
    assert [e["record_id"] for e in findings[0].matched["sequence.events"]] == [1, 3]
    assert findings[0].matched["sequence.by"] == ["WS1"]


def test_sequence_needs_the_order_of_time_not_of_input() -> None:
    er = prepared(elastic_rule(SEQ))
    b_first = [proc("C:\\b.exe", "b", t="2024-05-01T10:00:10Z", rec=1),
               proc("C:\\a.exe", "a", t="2024-05-01T10:00:00Z", rec=2)]
    assert fire(er, b_first) == [2]  # a (10:00:00) then b (10:00:10): a match
    er = prepared(elastic_rule(SEQ))
    wrong = [proc("C:\\b.exe", "b", t="2024-05-01T10:00:00Z", rec=1),
             proc("C:\\a.exe", "a", t="2024-05-01T10:00:10Z", rec=2)]
    assert fire(er, wrong) == []


def test_sequence_until_ends_the_pending_one() -> None:
    q = SEQ + '\nuntil [process where process.name : "stop.exe"]'
    er = prepared(elastic_rule(q))
    events = [proc("C:\\a.exe", "a", t="2024-05-01T10:00:00Z", rec=1),
              proc("C:\\stop.exe", "s", t="2024-05-01T10:00:05Z", rec=2),
              proc("C:\\b.exe", "b", t="2024-05-01T10:00:10Z", rec=3)]
    assert fire(er, events) == []


def test_sequence_across_files_and_jobs(tmp_path: Path) -> None:
    """A sequence whose members are in two files matches with one process and with two (the
    workers send what they collected to the parent)."""
    def line(image: str, t: str, rec: int) -> str:
        return json.dumps({"Channel": SYSMON, "EventID": 1, "Computer": "WS1",
                           "TimeCreated": t, "EventRecordID": rec, "Image": image,
                           "CommandLine": image, "ProcessGuid": "{G}"})
    a = tmp_path / "a.jsonl"
    b = tmp_path / "b.jsonl"
    a.write_text(line("C:\\a.exe", "2024-05-01T10:00:00Z", 1) + "\n")
    b.write_text(line("C:\\b.exe", "2024-05-01T10:00:20Z", 2) + "\n")
    got = []
    for jobs in (1, 2):
        report = HuntReport()
        found = list(run([prepared(elastic_rule(SEQ))], [str(a), str(b)], report, jobs=jobs))
        got.append([(f.event.file, f.event.position, f.matched["sequence.by"]) for f in found])
    assert got[0] == got[1] == [(str(a), 1, ["WS1"])]


# --------------------------------------------------------------------------------------------
# Threshold and new terms (Elastic's rule types)
# --------------------------------------------------------------------------------------------


def test_threshold_counts_per_host() -> None:
    th = '[rule.threshold]\nfield = ["host.name"]\nvalue = 3\n'
    er = prepared(elastic_rule("event.category:process", language="kuery", rtype="threshold",
                               extra=th))
    assert er.rule_type is not None and er.rule_type.kind == "threshold"
    events = [proc(CERTUTIL, "c", host="WS1", rec=1), proc(CERTUTIL, "c", host="WS2", rec=2),
              proc(CERTUTIL, "c", host="WS1", rec=3), proc(CERTUTIL, "c", host="WS1", rec=4),
              proc(CERTUTIL, "c", host="WS2", rec=5)]
    findings = list(Engine([er]).run(events))
    assert [(int(f.event.position), f.matched["host.name"], f.matched["count"])
            for f in findings] == [(1, "WS1", 3)]


def test_threshold_cardinality() -> None:
    th = ('[rule.threshold]\nfield = ["host.name"]\nvalue = 2\n'
          '[[rule.threshold.cardinality]]\nfield = "process.name"\nvalue = 2\n')
    er = prepared(elastic_rule("event.category:process", language="kuery", rtype="threshold",
                               extra=th))
    events = [proc(CERTUTIL, "c", host="WS1", rec=1), proc(CERTUTIL, "c", host="WS1", rec=2),
              proc(CERTUTIL, "c", host="WS2", rec=3), proc("C:\\x.exe", "x", host="WS2", rec=4)]
    findings = list(Engine([er]).run(events))
    assert [(f.matched["host.name"], f.matched["cardinality(process.name)"])
            for f in findings] == [("WS2", 2)]


def test_new_terms_against_the_history_of_the_input() -> None:
    # the rule's window is its look-back (from = now-9m) before the input's last event; a
    # term seen in the history (7 days before the window) is not new
    nt = ('[rule.new_terms]\nfield = "new_terms_fields"\nvalue = ["process.name"]\n'
          '[[rule.new_terms.history_window_start]]\nfield = "history_window_start"\n'
          'value = "now-7d"\n')
    er = prepared(elastic_rule("event.category:process", language="kuery", rtype="new_terms",
                               extra=nt))
    assert er.rule_type is not None and er.rule_type.kind == "new_terms", er.reason
    assert er.rule_type.window == 540 and er.rule_type.history == 7 * 86400
    events = [proc("C:\\old.exe", "o", t="2024-04-30T10:00:00Z", rec=1),
              proc("C:\\old.exe", "o", t="2024-05-01T10:00:00Z", rec=2),
              proc("C:\\new.exe", "n", t="2024-05-01T10:01:00Z", rec=3),
              proc("C:\\new.exe", "n", t="2024-05-01T10:02:00Z", rec=4)]
    findings = list(Engine([er]).run(events))
    assert [(int(f.event.position), f.matched["process.name"]) for f in findings] == [
        (3, "new.exe")]


# --------------------------------------------------------------------------------------------
# What does not run says why
# --------------------------------------------------------------------------------------------


def test_machine_learning_and_non_windows_rules_are_not_runnable_with_a_reason() -> None:
    text = '''[metadata]
creation_date = "2025/01/01"
[rule]
name = "ml"
rule_id = "00000000-0000-4000-8000-0000000000aa"
type = "machine_learning"
machine_learning_job_id = ["job"]
anomaly_threshold = 50
'''
    ml = rule_from_toml(tomllib.loads(text), "rules/ml.toml", text, "https://x")
    assert isinstance(ml, Rule)
    er = prepared(ml)
    assert er.reason is not None and er.reason.startswith("machine-learning rule")
    aws = prepared(elastic_rule('event.dataset:aws.cloudtrail and event.action:"StopLogging"',
                                language="kuery", rtype="query", index=("logs-aws*",)))
    assert aws.reason is not None and "ECS view is of Windows event logs" in aws.reason


def test_cli_hunt_reports_elastic_findings_with_their_source(tmp_path: Path) -> None:
    """``ruleatlas hunt --repo`` on a folder holding one Elastic rule, over a JSON-lines log."""
    repo = tmp_path / "detection-rules"
    (repo / "rules" / "windows").mkdir(parents=True)
    (repo / "detection_rules").mkdir()
    rule = elastic_rule('process where process.name : "certutil.exe"')
    (repo / "rules" / "windows" / "certutil.toml").write_text(rule.body)
    log = tmp_path / "log.jsonl"
    log.write_text(json.dumps(proc(CERTUTIL, "certutil -urlcache").fields) + "\n")
    res = CliRunner().invoke(app, ["hunt", "--repo", str(repo), "--format", "json", "-j1",
                                   "--db", str(tmp_path / "c.db"), str(log)])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output[res.output.index("{"):])
    assert [(f["rule_id"], f["source"]) for f in out["findings"]] == [(rule.id, "elastic")]


def test_index_patterns_of_other_data_are_not_run_on_windows_events() -> None:
    """A rule the routing table cannot place (its index patterns are unknown to it) still
    names its data: ``logs-aws_bedrock.invocation-*`` holds no Windows document, so the rule
    is not runnable (its ``IS NULL`` tests would otherwise be true of every Windows event);
    ``logs-*`` may hold them."""
    q = "from logs-aws_bedrock.invocation-* | where gen_ai.guardrail_id is null"
    er = prepared(elastic_rule(q, language="esql", rtype="esql", index=()))
    assert er.reason is not None and "not Windows event logs" in er.reason
    kql = 'process.name:"certutil.exe"'
    assert prepared(elastic_rule(kql, language="kuery", rtype="query",
                                 index=("logs-*",))).runnable
    other = prepared(elastic_rule(kql, language="kuery", rtype="query",
                                  index=("logs-nginx.access-*",)))
    assert other.reason is not None and "logs-nginx.access-*" in other.reason


def test_rules_the_windows_view_can_never_satisfy_are_not_runnable() -> None:
    """Elastic Defend's own values and fields: ``event.action == "start"`` (Sysmon 1 says
    "Process creation", Security 4688 "created-process") and an ML pipeline's score field, which
    no Windows event's view has, can never be true: not runnable, with the reason, instead of
    a rule that runs on every event and never fires."""
    defend = prepared(elastic_rule('process where event.action == "start" and '
                                   'process.name : "ping.exe"'))
    assert defend.reason is not None and defend.reason.startswith("cannot match the ECS view")
    ml = prepared(elastic_rule("ml_is_dga.malicious_prediction > 0.98", language="kuery",
                               rtype="query", index=("logs-*",)))
    assert ml.reason is not None and "any Windows event" in ml.reason
    sysmon = prepared(elastic_rule('process where event.action == "Process creation" and '
                                   'process.name : "ping.exe"'))
    assert sysmon.runnable and sysmon.route.keys == frozenset({("Sysmon", "1")})
