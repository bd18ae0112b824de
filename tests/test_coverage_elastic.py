"""Event coverage of Elastic rules: index patterns, ECS categories, event.code and fields into the
same EventRef vocabulary as Sigma and Splunk (expectations read from the rule files)."""

from __future__ import annotations

import pytest

from ruleatlas.coverage import events_for, sigma_events, splunk_events
from ruleatlas.coverage.ecs import index_patterns
from ruleatlas.coverage.table import compile_table
from ruleatlas.model import EventRef
from test_elastic_rules import analyze, corpus_analyses, load

PS_4104 = EventRef("Microsoft-Windows-PowerShell/Operational", "4104")


def events(rel: str) -> tuple[EventRef, ...]:
    return events_for(load(rel), analyze(rel))


def test_script_block_text_rule_covers_powershell_4104():
    # index = ["logs-windows.powershell*", "winlogbeat-*"]; event.category:process and
    # host.os.type:windows and powershell.file.script_block_text:(...) -- no event.code
    assert events("rules/windows/execution_posh_psreflect.toml") == (PS_4104,)


def test_kql_event_code_4104_rule():
    # index = ["winlogbeat-*", "logs-windows.powershell*"]; event.code: "4104" and ...
    assert events("rules/windows/defense_evasion_amsi_bypass_rpc_ndrclientcall.toml") == (
        PS_4104,)


def test_esql_rule_reads_its_from():
    rel = "rules/windows/defense_evasion_posh_obfuscation_backtick.toml"
    # from logs-windows.powershell_operational* metadata _id, _version, _index
    # | where event.code == "4104" and powershell.file.script_block_text like "*`*"
    assert index_patterns(load(rel), analyze(rel)) == ["logs-windows.powershell_operational*"]
    assert events(rel) == (PS_4104,)


def test_elastic_4104_rules_sit_beside_sigma_and_splunk():
    """The /events page groups rules by EventRef: Sigma ps_script, the Splunk data source of the
    example rule and Elastic's 4104 rules name the same one."""
    assert PS_4104 in sigma_events({"product": "windows", "category": "ps_script"})
    assert splunk_events(["Powershell Script Block Logging 4104"]) == (PS_4104,)
    elastic = {r.path for r, a in corpus_analyses() if PS_4104 in events_for(r, a)}
    assert "rules/windows/execution_posh_psreflect.toml" in elastic
    assert len(elastic) >= 40  # 46 rules read script_block_text; the count may only go up


def test_process_category_over_windows_indexes():
    # index: endpoint process, endgame, winlogbeat, forwarded, sysmon_operational, security;
    # host.os.type: "windows" and event.category: "process" and event.type: "start"
    rel = "rules/windows/command_and_control_new_terms_commonly_abused_rmm.toml"
    assert events(rel) == (EventRef("Sysmon", "1"), EventRef("Security", "4688"))


def test_linux_process_rule():
    # index = ["logs-endpoint.events.*", "endgame-*", "auditbeat-*",
    #          "logs-auditd_manager.auditd-*", "logs-crowdstrike.fdr*"]
    # event.category:process and host.os.type:linux and event.type:start and ...
    assert events("rules/linux/impact_process_kill_threshold.toml") == (
        EventRef("Linux-Sysmon/Operational", "1"), EventRef("linux:audit"))


def test_eql_registry_rule_over_sysmon():
    # registry where host.os.type == "windows" and ... (index: sysmon_operational, endpoint
    # registry, winlogbeat, ...)
    assert events("rules/windows/command_and_control_outlook_home_page.toml") == (
        EventRef("Sysmon", "12"), EventRef("Sysmon", "13"), EventRef("Sysmon", "14"))


def test_security_event_code():
    # index = ["winlogbeat-*", "logs-system.security*", "logs-windows.*"]; event.code : "4662"
    assert events("rules_building_block/defense_evasion_write_dac_access.toml") == (
        EventRef("Security", "4662"),)


def test_cloudtrail_event_action_is_the_event_name():
    # index = ["filebeat-*", "logs-aws.cloudtrail-*"]; data_stream.dataset:aws.cloudtrail and
    # event.provider:signin.amazonaws.com and event.action:ConsoleLogin and ...
    assert events("rules/integrations/aws/initial_access_console_login_root.toml") == (
        EventRef("aws:cloudtrail", "ConsoleLogin"),)


def test_machine_learning_rule_reads_no_event():
    assert events("rules/ml/execution_ml_windows_anomalous_script.toml") == ()


def test_table_rows_are_checked():
    from ruleatlas.coverage.table import CoverageTableError

    with pytest.raises(CoverageTableError, match=r"elastic.indexes\[0\]: needs one of"):
        compile_table({"elastic": {"indexes": [{"index": "x-*"}]}})
    with pytest.raises(CoverageTableError, match="needs an 'index' glob"):
        compile_table({"elastic": {"indexes": [{"events": ["Sysmon"]}]}})


def test_corpus_coverage_counts():
    """How many Elastic rules name at least one event (docs/coverage.md); may only go up."""
    pairs = corpus_analyses()
    covered = [r for r, a in pairs if events_for(r, a)]
    ml = [r for r, _ in pairs if r.type == "machine_learning"]
    assert len(ml) == 106
    assert len(covered) >= 1950
