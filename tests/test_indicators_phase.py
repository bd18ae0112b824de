"""Indicators of every predicate a rule matches, with its phase: a ``join``'s subsearch, and
content tests after an aggregation on fields carried unchanged from events.

Expectations are written by reading the ESCU YAML (quoted in each test), not copied from the
code's output.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from conftest import EXAMPLE_ID, SPLUNK
from ruleatlas.indicators import Skipped, explain
from ruleatlas.languages import AnalysisContext, analyze
from ruleatlas.languages.spl.analyze import analyze_query
from ruleatlas.model import (
    Indicator,
    IndicatorValue,
    Phase,
    Rule,
    indicator_from_dict,
    indicator_to_dict,
    stage_from_dict,
    stage_to_dict,
    sub_analyses,
)
from ruleatlas.sources import SOURCES

QAKBOT = "detections/endpoint/windows_modify_registry_qakbot_binary_data_registry.yml"


@functools.cache
def _ctx() -> AnalysisContext:
    side = SOURCES["splunk"].side_tables(SPLUNK)
    return AnalysisContext(macros=side.macros, data_sources=side.data_sources)


def _escu(path: str) -> tuple[Rule, tuple[Indicator, ...], tuple[Skipped, ...]]:
    (rule,) = SOURCES["splunk"].load_file(SPLUNK, SPLUNK / path).rules
    inds, skipped = explain(rule, analyze(rule, _ctx()))
    return rule, inds, skipped


def _row(inds: tuple[Indicator, ...], field: str, op: str, negated: bool = False) -> Indicator:
    rows = [i for i in inds if (i.field, i.op, i.negated) == (field, op, negated)]
    assert len(rows) == 1, (field, op, negated, inds)
    return rows[0]


# --------------------------------------------------------------------------------------------
# A join's subsearch
# --------------------------------------------------------------------------------------------


def test_qakbot_join_subsearch_process_names_are_event_indicators() -> None:
    # `| join process_guid, _time [| tstats ... where Processes.process_name IN ("explorer.exe",
    # "wermgr.exe","dxdiag.exe", "OneDriveSetup.exe", "mobsync.exe", "msra.exe", "xwizard.exe")
    # by ... ]`: the subsearch's filter is the rule's too; process_name is an image's base name.
    rule, inds, _ = _escu(QAKBOT)
    assert rule.title == "Windows Modify Registry Qakbot Binary Data Registry"
    row = _row(inds, "Processes.process_name", "in")
    assert row.phase is Phase.EVENT
    assert row.field_key == "Image"
    names = ["explorer.exe", "wermgr.exe", "dxdiag.exe", "OneDriveSetup.exe", "mobsync.exe",
             "msra.exe", "xwizard.exe"]
    assert [v.value for v in row.values] == [f'"{n}"' for n in names]
    assert [v.key for v in row.values] == ["*\\" + n.lower() for n in names]
    # the main search's own tstats filter is still there
    assert _row(inds, "Registry.registry_value_data", "eq").values[0].key == "binary data"


def test_qakbot_subsearch_sits_at_the_join_stage() -> None:
    rule, _, _ = _escu(QAKBOT)
    a = analyze(rule, _ctx())
    (sub,) = sub_analyses(a)
    # stages: 0 tstats, 1 drop_dm_object_name, 2 eval, 3 eval, 4 regex, 5 where, 6 join
    assert (sub.stage, sub.command) == (6, "join")
    assert a.stages[6].command == "join"
    assert sub.analysis.stages[0].command == "tstats"


def test_qakbot_result_phase_regex_on_a_group_by_field_and_computed_tests_skipped() -> None:
    # `by ... Registry.registry_value_name ... | drop_dm_object_name(Registry) | ... |
    # regex registry_value_name="^[0-9a-fA-F]{8}"`: a by field, renamed: event content.
    # `where registry_key_name_len < 80 AND registry_value_name_len == 8` (eval len()) and
    # `where registry_value_name_count >= 5` (dc()) test computed values: not indicators.
    _, inds, skipped = _escu(QAKBOT)
    row = _row(inds, "registry_value_name", "regex")
    assert row.phase is Phase.RESULT
    assert [v.key for v in row.values] == ["re:/^[0-9a-fA-F]{8}/"]
    result = {(s.field, s.op) for s in skipped if s.reason == "result phase"}
    assert result == {("registry_key_name_len", "lt"), ("registry_value_name_len", "eq"),
                      ("registry_value_name_count", "ge")}


# --------------------------------------------------------------------------------------------
# Content filters after an aggregation (hand-checked ESCU rules)
# --------------------------------------------------------------------------------------------


def test_where_match_after_tstats_on_a_by_field() -> None:
    # Linux Ingress Tool Transfer with Curl: `by ... Processes.process ... |
    # drop_dm_object_name(Processes) | ... | where match(process, "(?i)(-O|-sO|-ksO|--output)")`
    _, inds, _ = _escu("detections/endpoint/linux_ingress_tool_transfer_with_curl.yml")
    row = _row(inds, "process", "regex")
    assert row.phase is Phase.RESULT
    assert [v.key for v in row.values] == ["re:/(?i)(-O|-sO|-ksO|--output)/"]
    assert _row(inds, "Processes.process_name", "eq").phase is Phase.EVENT


def test_where_match_on_a_values_output_and_by_field() -> None:
    # RunDLL Loading DLL By Ordinal: `tstats values(Processes.process) as process ... by ...
    # Processes.process ... | where match(process,"rundll32.+\#\d+")`
    _, inds, _ = _escu("detections/endpoint/rundll_loading_dll_by_ordinal.yml")
    row = _row(inds, "process", "regex")
    assert row.phase is Phase.RESULT
    assert len(row.values) == 1 and row.values[0].key.startswith("re:/rundll32.+")


def test_where_like_after_stats_on_renamed_by_fields() -> None:
    # CrowdStrike Privilege Escalation For Non-Admin User: `rename ... event.UserName as user,
    # ... event.IncidentType as type ... | stats count ... by src_ip, src_host, user,
    # description, type, ... | where LIKE(type,"%Privilege escalation%") AND NOT LIKE(user,
    # "%adm%") AND NOT LIKE(user, "%svc%") AND NOT LIKE(user, "%admin%")`; where is cased.
    _, inds, _ = _escu("detections/endpoint/crowdstrike_privilege_escalation_for_non_admin_user"
                       ".yml")
    kind = _row(inds, "type", "wildcard")
    assert kind.phase is Phase.RESULT
    assert [v.key for v in kind.values] == ["*Privilege escalation*"]
    user = _row(inds, "user", "wildcard", negated=True)
    assert user.phase is Phase.RESULT
    assert [v.key for v in user.values] == ["!*adm*", "!*svc*", "!*admin*"]


def test_regex_command_after_tstats_and_search_after_values() -> None:
    # Detect RTLO In File Name: `by ... Filesystem.file_name ... | regex file_name =
    # "\\x{202E}"`; Create or delete windows shares using net exe: `by Processes.process ... |
    # search process=*share*`.
    _, inds, _ = _escu("detections/endpoint/detect_rtlo_in_file_name.yml")
    assert _row(inds, "file_name", "regex").phase is Phase.RESULT
    _, inds, _ = _escu("detections/endpoint/create_or_delete_windows_shares_using_net_exe.yml")
    row = _row(inds, "process", "wildcard")
    assert row.phase is Phase.RESULT and [v.key for v in row.values] == ["*share*"]


def test_like_on_an_eval_output_is_not_an_indicator() -> None:
    # Windows Replication Through Removable Media: `eval root_drive =
    # mvindex(dropped_file_path,0) | where LIKE(root_drive, "%:") AND ... root_drive!= "C:"`
    _, inds, skipped = _escu("detections/endpoint/windows_replication_through_removable_media"
                             ".yml")
    assert not [i for i in inds if i.phase is Phase.RESULT]
    assert ("root_drive", "wildcard") in {(s.field, s.op) for s in skipped
                                          if s.reason == "result phase"}


def test_carried_fields_rules() -> None:
    a = analyze_query(
        "index=x | eval y=lower(z) | stats count dc(u) as n values(p) as p latest(q) as q "
        "values(y) as y min(_time) as first by host, user span=1h | rename user as account "
        "| eval p=upper(p) | where n > 3", {})
    last = a.stages[-1]
    # by fields and values()/latest() of event fields, renamed; not dc(), not an eval output,
    # not a field an eval rewrote, never _time
    assert set(last.carried) == {"host", "account", "q"}
    assert stage_from_dict(json.loads(json.dumps(stage_to_dict(last)))) == last


# --------------------------------------------------------------------------------------------
# The model and the store
# --------------------------------------------------------------------------------------------


def test_indicator_phase_json_round_trip() -> None:
    ind = Indicator("process", "regex", (IndicatorValue("/x/", "re:/x/"),), "CommandLine",
                    phase=Phase.RESULT)
    d = json.loads(json.dumps(indicator_to_dict(ind)))
    assert d["phase"] == "result"
    assert indicator_from_dict(d) == ind
    plain = Indicator("a", "eq", (), "a")
    assert indicator_from_dict(indicator_to_dict(plain)).phase is Phase.EVENT


@pytest.mark.slow
def test_catalog_rows_counts_and_example_unchanged(corpus_db: Path) -> None:
    from ruleatlas.api.documents import rule_document
    from ruleatlas.store import Catalog

    with Catalog.open(corpus_db, readonly=True) as cat:
        (rid,) = [r[0] for r in cat.conn.execute(
            "SELECT id FROM rules WHERE path = ?", (QAKBOT,))]
        doc = rule_document(cat, rid)
        rows = {(r["field"], r["op"]): r for r in doc["indicators"]}
        assert rows[("Processes.process_name", "in")]["phase"] == "event"
        assert rows[("registry_value_name", "regex")]["phase"] == "result"
        join = doc["stages"][6]
        assert join["command"] == "join"
        sub = [p for p in join["predicates"] if p.get("subsearch")]
        assert [p["field"] for p in sub] == ["Processes.process_name"]
        assert sub[0]["values"][0] == "explorer.exe"
        # measured: 100 ESCU rules have indicators tested after an aggregation (164 values)
        (n, v) = cat.conn.execute(
            "SELECT COUNT(DISTINCT rule_id), COUNT(*) FROM indicators "
            "WHERE source = 'splunk' AND phase = 'result'").fetchone()
        assert (n, v) == (100, 164)
        ex = {(r["field"], r["op"]): r for r in rule_document(cat, EXAMPLE_ID)["indicators"]}
        code = ex[("EventCode", "eq")]
        assert code["phase"] == "event"
        assert code["values"][0]["corpus"]["splunk"] == 102
        wmi = ex[("ScriptBlockText", "in")]
        hit = [v for v in wmi["values"] if v["key"] == "*invoke-wmiexec*"]
        assert hit and hit[0]["corpus"]["total"] == 2


@pytest.mark.slow
def test_cli_and_page_mark_after_aggregation(corpus_db: Path) -> None:
    from ruleatlas.cli.app import app
    from ruleatlas.web.app import create_app

    res = CliRunner().invoke(app, ["indicators", "Windows Modify Registry Qakbot Binary Data "
                                   "Registry", "--db", str(corpus_db)], env={"COLUMNS": "300"})
    assert res.exit_code == 0, res.output
    assert "(after aggregation)" in res.output
    assert "wermgr.exe" in res.output
    res = CliRunner().invoke(app, ["indicators", "Windows Modify Registry Qakbot Binary Data "
                                   "Registry", "--db", str(corpus_db), "--format", "json"])
    got: dict[str, Any] = json.loads(res.output)
    assert {r["phase"] for r in got["indicators"]} == {"event", "result"}
    client = TestClient(create_app(corpus_db))
    (rid,) = [r["field"] for r in got["indicators"] if r["phase"] == "result"]
    assert rid == "registry_value_name"
    html = client.get(f"/rules/{got['rule']}").text
    assert "after aggregation" in html and "subsearch" in html
