"""The Elastic detection-rules reader on the real corpus, hand-checked rules, broken files, a
fuzz test of ``load_file`` and a build of the whole Elastic corpus.

Expected values below were written by reading the TOML files named in each test."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ELASTIC, SIGMA, SPLUNK
from ruleatlas.model import FileResult, Rule
from ruleatlas.sources import SOURCES, detect
from ruleatlas.sources.elastic import HUNT_QUERY_SEPARATOR, ElasticSource
from ruleatlas.store.codec import rule_from_json, rule_to_json

SRC = ElasticSource()
GH = "https://github.com/elastic/detection-rules/blob/main/"


@pytest.fixture(scope="module")
def results() -> dict[str, FileResult]:
    return {r.path: r for r in (SRC.load_file(ELASTIC, p) for p in SRC.rule_files(ELASTIC))}


def _rule(results: dict[str, FileResult], path: str) -> Rule:
    res = results[path]
    assert res.errors == ()
    (rule,) = res.rules
    return rule


# --------------------------------------------------------------------------------------------
# Layout, files and counts
# --------------------------------------------------------------------------------------------


def test_detects_layout():
    assert detect(ELASTIC) is SOURCES["elastic"]
    assert detect(SIGMA) is SOURCES["sigma"]
    assert detect(SPLUNK) is SOURCES["splunk"]


def test_rule_files_are_the_toml_files():
    files = [p.relative_to(ELASTIC).as_posix() for p in SRC.rule_files(ELASTIC)]
    assert len(files) == 2332 and files == sorted(files)
    assert all(f.endswith(".toml") for f in files)
    tops = Counter(f.split("/")[0] for f in files)
    assert tops == {"rules": 2064, "rules_building_block": 128, "hunting": 140}
    # Stray files of the rule folders exist and are not rule files.
    for stray in ("rules/README.md", "rules/integrations/aws/NOTICE.txt",
                  "rules_building_block/.gitkeep", "hunting/index.yml"):
        assert (ELASTIC / stray).is_file() and stray not in files


def test_every_file_is_one_rule(results: dict[str, FileResult]):
    assert len(results) == 2332
    assert [p for p, r in results.items() if r.errors or len(r.rules) != 1] == []


def test_counts_match_the_issue(results: dict[str, FileResult]):
    by: Counter[tuple[str, str]] = Counter()
    for res in results.values():
        for r in res.rules:
            bb = "bb" if r.path.startswith("rules_building_block/") else r.path.split("/")[0]
            by[(bb, r.language)] += 1
    assert by[("rules", "eql")] == 1011 and by[("bb", "eql")] == 70
    assert by[("rules", "kql")] == 737 and by[("bb", "kql")] == 55
    assert by[("rules", "esql")] == 209 and by[("bb", "esql")] == 3
    assert by[("rules", "lucene")] == 1 and by[("rules", "ml")] == 106
    assert sum(n for (top, _), n in by.items() if top == "hunting") == 140
    types = Counter(r.type for res in results.values() for r in res.rules)
    assert types == {"eql": 1081, "query": 508, "new_terms": 245, "esql": 212, "hunt": 140,
                     "machine_learning": 106, "threshold": 31, "threat_match": 9}


def test_building_blocks(results: dict[str, FileResult]):
    bb = [r for res in results.values() for r in res.rules if r.extra.get("building_block")]
    assert len(bb) == 133  # 128 in rules_building_block/ + 5 deprecated ones in rules/
    outside = sorted(r.path for r in bb if not r.path.startswith("rules_building_block/"))
    assert len(outside) == 5 and all(p.startswith("rules/_deprecated/") for p in outside)
    assert all(r.extra["building_block_type"] == "default" for r in bb)


def test_status_is_maturity(results: dict[str, FileResult]):
    st_ = Counter(r.status for res in results.values() for r in res.rules)
    assert st_ == {"production": 2068, "deprecated": 124, None: 140}
    assert all(r.status == "deprecated" for res in results.values() for r in res.rules
               if r.path.startswith("rules/_deprecated/"))


def test_ml_rules_have_no_query(results: dict[str, FileResult]):
    ml = [r for res in results.values() for r in res.rules if r.type == "machine_learning"]
    assert len(ml) == 106
    assert all(r.language == "ml" and r.query == "" for r in ml)
    assert all(isinstance(r.extra["machine_learning_job_id"], list)
               and r.extra["machine_learning_job_id"] for r in ml)


def test_records_round_trip_through_json(results: dict[str, FileResult]):
    for res in results.values():
        for r in res.rules:
            assert rule_from_json(rule_to_json(r)) == r, r.path


def test_hunting_query_languages_are_declared(results: dict[str, FileResult]):
    langs: Counter[str] = Counter()
    for res in results.values():
        for r in res.rules:
            if r.type != "hunt":
                continue
            for q in r.extra["queries"]:
                assert q["language"] in r.extra["languages"], r.path
                langs[q["language"]] += 1
            assert r.language in r.extra["languages"]
    assert langs == {"esql": 165, "sql": 61, "eql": 13}


# --------------------------------------------------------------------------------------------
# Hand-checked rules
# --------------------------------------------------------------------------------------------


def test_threshold_rule(results: dict[str, FileResult]):
    path = "rules/network/discovery_potential_syn_port_scan_detected.toml"
    r = _rule(results, path)
    assert (r.id, r.title) == ("bbaa96b9-f36c-4898-ace2-581acb00a409",
                               "Potential SYN-Based Port Scan Detected")
    assert (r.source, r.type, r.language, r.status, r.severity) == (
        "elastic", "threshold", "kql", "production", "low")
    assert (r.author, r.date, r.modified, r.version, r.line) == (
        "Elastic", "2023-05-17", "2026-02-24", None, 1)
    assert r.source_url == GH + path
    assert r.query == ("event.action:(network_flow or flow_started) and destination.port:* and "
                       "network.packets <= 2 and source.ip:(10.0.0.0/8 or 172.16.0.0/12 or "
                       "192.168.0.0/16)\n")
    assert r.body == (ELASTIC / path).read_text(encoding="utf-8")
    assert r.description.startswith("This rule identifies a potential SYN-Based port scan.")
    assert r.description.endswith("while limiting the number of packets per port.")
    assert r.attack == ("T1046", "T1595", "T1595.001")
    assert r.tags == ("Domain: Network", "Tactic: Discovery", "Tactic: Reconnaissance",
                      "Use Case: Network Security Monitoring", "Data Source: PAN-OS",
                      "Resources: Investigation Guide")
    assert r.data_sources == ("network_traffic", "panw")
    assert r.references == () and r.falsepositives == ()
    x = r.extra
    assert x["threshold"] == {"field": ["destination.ip", "source.ip"], "value": 1,
                              "cardinality": [{"field": "destination.port", "value": 250}]}
    assert x["index"] == ["logs-network_traffic.*", "packetbeat-*", "filebeat-*",
                          "logs-panw.panos*"]
    assert (x["risk_score"], x["max_signals"], x["from"], x["license"]) == (
        21, 5, "now-9m", "Elastic License v2")
    assert x["timestamp_override"] == "event.ingested"
    assert x["integration"] == ["network_traffic", "panw"]
    assert x["tactics"] == ["TA0007", "TA0043"]
    assert x["threat"] == [
        {"framework": "MITRE ATT&CK", "tactic": "TA0007",
         "techniques": [{"id": "T1046", "subtechniques": []}]},
        {"framework": "MITRE ATT&CK", "tactic": "TA0043",
         "techniques": [{"id": "T1595", "subtechniques": ["T1595.001"]}]},
    ]
    assert x["note"].startswith("## Triage and analysis\n\n> **Disclaimer**:")
    assert "building_block" not in x and "interval" not in x


def test_new_terms_rule(results: dict[str, FileResult]):
    r = _rule(results, "rules/_deprecated/execution_suspicious_jar_child_process.toml")
    assert (r.id, r.type, r.language, r.status, r.severity) == (
        "8acb7614-1d92-4359-bfcf-478b6d9de150", "new_terms", "kql", "deprecated", "medium")
    assert r.title == "Deprecated - Suspicious JAVA Child Process"
    assert r.extra["new_terms"] == {"fields": ["host.id", "process.command_line"],
                                    "history_window_start": "now-14d"}
    assert r.attack == ("T1059", "T1059.007")
    assert r.extra["tactics"] == ["TA0002"]
    assert (r.date, r.modified, r.extra["deprecation_date"]) == (
        "2021-01-19", "2025-01-17", "2025/01/17")
    assert r.references[0] == "https://www.lunasec.io/docs/blog/log4j-zero-day/"
    assert len(r.references) == 5
    assert r.extra["setup"].startswith("## Setup\n")
    assert r.query.startswith('event.category:process and event.type:("start" or ')
    assert r.data_sources == ("endpoint",)


def test_threat_match_rule(results: dict[str, FileResult]):
    r = _rule(results, "rules/_deprecated/threat_intel_filebeat7x.toml")
    assert (r.id, r.type, r.language, r.severity) == (
        "dc672cb7-d5df-4d1f-a6d7-0841b1caafb9", "threat_match", "kql", "critical")
    x = r.extra
    assert x["threat_index"] == ["filebeat-*"]
    assert x["threat_language"] == "kql"
    assert x["threat_indicator_path"] == "threatintel.indicator"
    assert x["threat_query"].startswith('@timestamp >= "now-30d" and event.module:threatintel')
    assert len(x["threat_mapping"]) == 8
    assert x["threat_mapping"][0] == {"entries": [{
        "value": "threatintel.indicator.file.hash.md5", "field": "file.hash.md5",
        "type": "mapping"}]}
    assert x["threat_mapping"][4]["entries"][0]["field"] == "source.ip"
    assert len(x["threat_filters"]) == 4
    assert (x["interval"], x["from"], x["risk_score"]) == ("1h", "now-65m", 99)
    assert x["timeline_title"] == "Generic Threat Match Timeline"
    # No [[rule.threat]] and no metadata.integration: no ATT&CK, data sources = index patterns.
    assert r.attack == () and "tactics" not in x
    assert r.data_sources == ("auditbeat-*", "endgame-*", "filebeat-*", "logs-*",
                              "packetbeat-*", "winlogbeat-*")


def test_machine_learning_rule(results: dict[str, FileResult]):
    r = _rule(results, "rules/integrations/aws/ml_cloudtrail_error_message_spike.toml")
    assert (r.id, r.title, r.type, r.language, r.query) == (
        "78d3d8d9-b476-451d-a9e0-7a5addd70670", "Spike in AWS Error Messages",
        "machine_learning", "ml", "")
    assert r.extra["machine_learning_job_id"] == ["high_distinct_count_error_message"]
    assert r.extra["anomaly_threshold"] == 50
    assert (r.extra["from"], r.extra["interval"]) == ("now-60m", "15m")
    assert r.attack == ("T1526", "T1580")
    assert r.extra["tactics"] == ["TA0007", "TA0004", "TA0008"]  # two tactics without technique
    assert len(r.falsepositives) == 1
    assert r.falsepositives[0].startswith("Spikes in error message activity can also be due to")
    assert r.falsepositives[0].endswith("changes to IAM\nprivileges.")
    assert r.references == ("https://www.elastic.co/guide/en/security/current/"
                            "prebuilt-ml-jobs.html",)
    assert "index" not in r.extra and r.data_sources == ("aws",)


def test_building_block_rule(results: dict[str, FileResult]):
    r = _rule(results, "rules_building_block/collection_files_staged_in_recycle_bin_root.toml")
    assert (r.id, r.type, r.language, r.severity) == (
        "57bccf1d-daf5-4e1a-9049-ff79b5254704", "eql", "eql", "low")
    assert r.extra["building_block"] is True
    assert r.extra["building_block_type"] == "default"
    assert (r.extra["from"], r.extra["interval"]) == ("now-119m", "60m")
    assert r.attack == ("T1074", "T1074.001", "T1564", "T1564.001")
    assert r.extra["tactics"] == ["TA0009", "TA0005"]
    assert r.data_sources == ("endpoint", "windows")
    assert "Rule Type: BBR" in r.tags
    assert r.query == ('file where host.os.type == "windows" and event.type == "creation" and\n'
                       '  file.path : "?:\\\\$RECYCLE.BIN\\\\*" and\n'
                       '  not file.path : "?:\\\\$RECYCLE.BIN\\\\*\\\\*" and\n'
                       '  not file.name : "desktop.ini"\n')


def test_deprecated_building_block_outside_its_folder(results: dict[str, FileResult]):
    r = _rule(results, "rules/_deprecated/persistence_creation_of_kernel_module.toml")
    assert r.extra["building_block"] is True and r.status == "deprecated"


def test_exceptions_and_mappings(results: dict[str, FileResult]):
    r = _rule(results, "rules/integrations/endpoint/execution_elastic_malicious_file_detected.toml")
    assert (r.id, r.type, r.language) == ("f2c3caa6-ea34-11ee-a417-f661ea17fbce", "query", "kql")
    x = r.extra
    assert x["exceptions_list"] == [{"id": "endpoint_list", "list_id": "endpoint_list",
                                     "namespace_type": "agnostic", "type": "endpoint"}]
    assert x["risk_score_mapping"] == [{"field": "event.risk_score", "operator": "equals",
                                        "value": ""}]
    assert [m["severity"] for m in x["severity_mapping"]] == ["low", "medium", "high",
                                                               "critical"]
    assert (x["enabled"], x["max_signals"], x["promotion"]) == (False, 1000, True)
    assert r.attack == ("T1204", "T1204.002")
    assert r.query == ("event.kind : alert and event.code : malicious_file and (event.type : "
                       "allowed or (event.type: denied and event.outcome: failure))\n")


def test_esql_rule_with_alert_suppression(results: dict[str, FileResult]):
    r = _rule(results, "rules/cross-platform/command_and_control_wget_activity_llm_triage.toml")
    assert (r.id, r.type, r.language, r.severity) == (
        "2fc14da3-03d1-4d8e-b42b-942566bf69b4", "esql", "esql", "medium")
    assert r.query.startswith("FROM logs-endpoint.events.process-* METADATA _id, _version, "
                              "_index\n| WHERE KQL(")
    x = r.extra
    assert x["alert_suppression"] == {"group_by": ["host.name", "Esql.dest_host"],
                                      "missing_fields_strategy": "suppress",
                                      "duration": {"unit": "h", "value": 6}}
    assert x["min_stack_version"] == "9.3.0"
    assert x["min_stack_comments"].startswith("ES|QL COMPLETION and INLINE STATS require")
    assert r.attack == ("T1105", "T1048", "T1005")
    assert x["tactics"] == ["TA0011", "TA0010", "TA0009"]
    assert "index" not in x  # an ES|QL rule names its indices in FROM


def test_lucene_rule(results: dict[str, FileResult]):
    r = _rule(results, "rules/_deprecated/privilege_escalation_setgid_bit_set_via_chmod.toml")
    assert (r.id, r.type, r.language) == ("3a86e085-094c-412d-97ff-2439731e59cb", "query",
                                          "lucene")
    assert r.extra["license"] == "Elastic License"
    assert r.attack == ("T1548", "T1548.001")
    assert r.extra["tactics"] == ["TA0004", "TA0003"]
    assert r.data_sources == ("auditbeat-*", "logs-endpoint.events.*")  # no integration


def test_hunting_file_with_several_queries(results: dict[str, FileResult]):
    path = "hunting/linux/queries/persistence_via_cron.toml"
    r = _rule(results, path)
    assert r.id == "hunt-e1cffb7c-4acf-4e7a-8d72-b8b7657cf7b8"
    assert r.extra["uuid"] == "e1cffb7c-4acf-4e7a-8d72-b8b7657cf7b8"
    assert (r.title, r.type, r.language, r.status, r.author) == (
        "Persistence via Cron", "hunt", "esql", None, "Elastic")
    assert r.attack == ("T1053.003", "T1053.005")
    assert r.extra["mitre"] == ["T1053.003", "T1053.005"]
    assert r.data_sources == ("endpoint",)
    assert r.extra["languages"] == ["esql", "sql"]
    qs = r.extra["queries"]
    assert [q["language"] for q in qs] == ["esql", "esql", "sql", "sql"]
    assert qs[0]["query"].startswith("from logs-endpoint.events.file-*\n| where @timestamp > ")
    assert qs[1]["query"].startswith("from logs-endpoint.events.process-*\n")
    assert qs[2]["query"].startswith("SELECT\n    f.filename,")
    assert qs[3]["query"] == "SELECT * FROM crontab\n"
    assert r.query == HUNT_QUERY_SEPARATOR.join(q["query"].rstrip() for q in qs)
    assert r.query.count(HUNT_QUERY_SEPARATOR) == 3
    assert len(r.extra["notes"]) == 6
    assert r.extra["notes"][-1].startswith("OSQuery queries are provided")
    assert r.extra["license"] == "Elastic License v2"
    assert r.source_url == GH + path


def test_hunting_stray_fence_tags(results: dict[str, FileResult]):
    r = _rule(results, "hunting/linux/queries/persistence_via_policykit.toml")
    qs = r.extra["queries"]
    assert [(q["language"], q["stray_tag"]) for q in qs] == [("esql", "sql"), ("sql", "sql")]
    assert qs[0]["query"].startswith("from logs-endpoint.events.file-*\n| keep @timestamp,")
    assert qs[1]["query"].startswith("SELECT\n    f.filename,")
    assert r.query.startswith("sql\nfrom logs-endpoint.events.file-*")  # as written
    assert r.attack == ("T1543",)


def test_hunting_eql_single_query(results: dict[str, FileResult]):
    r = _rule(results,
              "hunting/macos/queries/execution_suspicious_executable_file_modification_via_docker"
              ".toml")
    assert (r.id, r.language) == ("hunt-f5b1afc4-207c-11f0-aa05-f661ea17fbcd", "eql")
    assert r.query.startswith('file where event.action == "modification" and\n')
    assert r.extra["queries"] == [{"language": "eql", "query": r.query}]
    assert r.attack == ("T1105", "T1204.002")
    assert len(r.references) == 5


def test_hunting_atlas_ids_stay_out_of_attack(results: dict[str, FileResult]):
    r = _rule(results, "hunting/llm/queries/aws_bedrock_latency_anomalies_detection.toml")
    assert r.attack == () and r.extra["mitre"] == ["AML.T0029"]
    assert r.data_sources == ("aws_bedrock.invocation",)


def test_hunting_uuid_equal_to_a_rule_id_does_not_collide(results: dict[str, FileResult]):
    uuid = "0d3d2254-2b4a-11f0-a019-f661ea17fbcc"
    rule = _rule(results, "rules/integrations/azure/"
                 "initial_access_entra_id_graph_single_session_from_multiple_addresses.toml")
    hunt = _rule(results, "hunting/azure/queries/entra_suspicious_odata_client_requests.toml")
    assert rule.id == uuid and hunt.id == "hunt-" + uuid


# --------------------------------------------------------------------------------------------
# Broken files
# --------------------------------------------------------------------------------------------

GOOD = """\
[metadata]
creation_date = "2024/01/02"
maturity = "production"
updated_date = "2024/02/03"

[rule]
author = ["Someone", "Else"]
description = "Good rule."
name = "Good rule"
risk_score = 21
rule_id = "11111111-1111-4111-8111-111111111111"
severity = "low"
type = "eql"
language = "eql"
query = '''
process where process.name == "cmd.exe"
'''
"""

HUNT = """\
[hunt]
author = "Elastic"
name = "A hunt"
uuid = "22222222-2222-4222-8222-222222222222"
language = ["ES|QL"]
query = ['''
from logs-*
| limit 10
''']
"""


def _write(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            p.write_text(content, encoding="utf-8")
        else:
            p.write_bytes(content)
    return root


BROKEN: dict[str, str | bytes] = {
    "rules/good.toml": GOOD,
    "rules/bad_toml.toml": GOOD.replace('severity = "low"', 'severity = low'),
    "rules/unterminated.toml": GOOD.rsplit("'''", 1)[0],
    "rules/missing_rule_id.toml": GOOD.replace(
        'rule_id = "11111111-1111-4111-8111-111111111111"\n', ""),
    "rules/rule_id_not_string.toml": GOOD.replace(
        'rule_id = "11111111-1111-4111-8111-111111111111"', "rule_id = 7"),
    "rules/missing_query.toml": GOOD.split("query = ")[0],
    "rules/ml_no_job.toml": GOOD.replace('type = "eql"', 'type = "machine_learning"'),
    "rules/latin1.toml": GOOD.replace("Good rule.", "Caf\u00e9").encode("latin-1"),
    "rules/empty.toml": "",
    "rules/comments.toml": "# nothing\n",
    "rules/yaml.toml": "title: a Sigma rule\nid: 1\ndetection:\n  sel: x\n",
    "rules/no_table.toml": '[something]\nname = "x"\n',
    "rules/README.md": "# not a rule file\n",
    "rules_building_block/.gitkeep": "",
    "hunting/good.toml": HUNT,
    "hunting/no_query.toml": HUNT.split("query = ")[0],
    "hunting/index.yml": "x: 1\n",
}


def test_broken_repository(tmp_path: Path):
    root = _write(tmp_path, BROKEN)
    assert detect(root) is SOURCES["elastic"]
    files = [p.relative_to(root).as_posix() for p in SRC.rule_files(root)]
    assert "rules/README.md" not in files and "hunting/index.yml" not in files
    assert "rules_building_block/.gitkeep" not in files
    res = {r.path: r for r in (SRC.load_file(root, p) for p in SRC.rule_files(root))}
    assert len(res) == 14

    good = res["rules/good.toml"].rules[0]
    assert (good.author, good.date, good.modified, good.query) == (
        "Someone, Else", "2024-01-02", "2024-02-03", 'process where process.name == "cmd.exe"\n')
    assert res["hunting/good.toml"].rules[0].query == "from logs-*\n| limit 10\n"

    def err(path: str) -> tuple[str, int | None, int | None]:
        r = res[path]
        assert r.rules == ()
        (e,) = r.errors
        assert e.path == path and e.source == "elastic"
        return e.kind, e.line, e.col

    assert err("rules/bad_toml.toml") == ("toml", 12, 12)
    assert err("rules/unterminated.toml") == ("toml", 17, 1)
    assert err("rules/missing_rule_id.toml") == ("schema", 6, None)
    assert "rule.rule_id" in res["rules/missing_rule_id.toml"].errors[0].reason
    assert err("rules/rule_id_not_string.toml") == ("schema", 11, None)
    assert err("rules/missing_query.toml") == ("schema", 6, None)
    assert err("rules/ml_no_job.toml") == ("schema", 6, None)
    assert err("rules/latin1.toml") == ("encoding", 8, 19)
    assert err("rules/empty.toml")[0] == "empty"
    assert err("rules/comments.toml")[0] == "empty"
    assert err("rules/yaml.toml") == ("toml", 1, 6)
    assert err("rules/no_table.toml") == ("schema", 1, None)
    assert err("hunting/no_query.toml") == ("schema", 1, None)


def test_toml_error_at_end_of_document_is_located(tmp_path: Path):
    root = _write(tmp_path, {"rules/a.toml": 'x = [1,\n  2,\n'})
    (e,) = SRC.load_file(root, root / "rules/a.toml").errors
    assert (e.kind, e.line, e.col) == ("toml", 3, 1)
    assert "end of document" in e.reason


def test_broken_repository_builds_with_duplicates(tmp_path: Path):
    from ruleatlas.build import build
    from ruleatlas.store.catalog import Catalog

    repo = _write(tmp_path / "repo", {
        **BROKEN,
        "rules/dup_a.toml": GOOD.replace("Good rule", "Dup A").replace(
            "11111111-1111-4111-8111-111111111111", "33333333-3333-4333-8333-333333333333"),
        "rules/dup_b.toml": GOOD.replace("Good rule", "Dup B").replace(
            "11111111-1111-4111-8111-111111111111", "33333333-3333-4333-8333-333333333333"),
    })
    db = tmp_path / "c.db"
    build([repo], db, workers=1)
    cat = Catalog.open(db, readonly=True)
    try:
        stats = cat.stats()["sources"]["elastic"]
        assert (stats["files"], stats["rules"], stats["errors"], stats["accounted"]) == (
            16, 3, 13, True)
        errs = {row[0]: (row[1], row[2]) for row in cat.conn.execute(
            "SELECT path, kind, reason FROM load_errors")}
        kind, reason = errs["rules/dup_b.toml"]
        assert kind == "duplicate-id" and "rules/dup_a.toml" in reason
    finally:
        cat.close()


# --------------------------------------------------------------------------------------------
# Fuzzing: load_file never raises and never hits its last-resort handler
# --------------------------------------------------------------------------------------------

_KEYS = ("rule_id", "name", "type", "language", "query", "author", "tags", "threat",
         "threshold", "new_terms", "machine_learning_job_id", "false_positives", "references",
         "index", "related_integrations", "description", "severity", "threat_language")
_VALUES = ('"x"', '"eql"', '"machine_learning"', "5", "1.5", "true", "1979-05-27",
           "07:32:00", "1979-05-27T07:32:00Z", "[]", '[1, "a"]', "{a = 1}", "[{id = 3}]",
           '[{tactic = {id = "TA0002"}, technique = [{id = "t1059", subtechnique = 5}]}]',
           '{field = 3, value = [1], cardinality = "x"}', '{history_window_start = 1}',
           '[{package = 1}, "x"]', "nan", "inf")
_TABLE = st.dictionaries(st.sampled_from(_KEYS), st.sampled_from(_VALUES), max_size=12)


def _doc(rule: dict[str, str], meta: dict[str, str], table: str) -> str:
    lines = ["[metadata]"] + [f"{k} = {v}" for k, v in meta.items()]
    lines += [f"[{table}]"] + [f"{k} = {v}" for k, v in rule.items()]
    return "\n".join(lines) + "\n"


def _check(res: FileResult) -> None:
    assert len(res.rules) + len(res.errors) == 1
    assert all(e.kind != "internal" for e in res.errors), res.errors
    assert all(e.line is not None for e in res.errors if e.kind in ("toml", "schema"))
    for r in res.rules:
        assert rule_to_json(r)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=400))
def test_fuzz_bytes_never_raise(data: bytes):
    _check(SRC.load_file(Path("/repo"), Path("/repo/rules/x.toml"), data))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule=_TABLE, meta=st.dictionaries(
    st.sampled_from(("creation_date", "updated_date", "maturity", "integration", "rule")),
    st.sampled_from(_VALUES), max_size=4), table=st.sampled_from(("rule", "hunt")))
def test_fuzz_typed_values_never_raise(rule: dict[str, str], meta: dict[str, str], table: str):
    if table == "hunt":
        rule = {("uuid" if k == "rule_id" else k): v for k, v in rule.items()}
    text = _doc(rule, meta, table)
    _check(SRC.load_file(Path("/repo"), Path("/repo/rules/x.toml"), text.encode()))


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(0, len(GOOD)), junk=st.text(max_size=8))
def test_fuzz_edited_rule_never_raises(cut: int, junk: str):
    data = (GOOD[:cut] + junk + GOOD[cut:]).encode("utf-8", "surrogatepass")
    _check(SRC.load_file(Path("/repo"), Path("/repo/rules/x.toml"), data))


# --------------------------------------------------------------------------------------------
# Build of the whole Elastic corpus
# --------------------------------------------------------------------------------------------


def test_build_elastic_corpus(tmp_path: Path):
    from ruleatlas.build import build
    from ruleatlas.store.catalog import Catalog

    db = tmp_path / "catalog.db"
    build([ELASTIC], db)
    cat = Catalog.open(db, readonly=True)
    try:
        stats = cat.stats()
        el = stats["sources"]["elastic"]
        # Two pairs of upstream hunting files share a uuid: the later file of each pair is a
        # duplicate-id error; every other file is one rule.
        assert (el["files"], el["rules"], el["errors"], el["accounted"]) == (
            2332, 2330, 2, True)
        assert stats["rules_by_folder"]["elastic"] == {
            "rules": 2064, "rules_building_block": 128, "hunting": 138}
        dups = sorted(tuple(r) for r in cat.conn.execute(
            "SELECT path, kind FROM load_errors WHERE source = 'elastic'"))
        assert dups == [
            ("hunting/macos/queries/execution_suspicious_python_app_execution_via_streamlit.toml",
             "duplicate-id"),
            ("hunting/macos/queries/execution_unsigned_or_untrusted_binary_execution_via_python"
             ".toml", "duplicate-id"),
        ]
        (n,) = cat.conn.execute(
            "SELECT count(*) FROM rule_attack a JOIN rules r ON r.id = a.rule_id "
            "WHERE r.source = 'elastic' AND a.technique = 'T1595.001'").fetchone()
        assert n >= 1
    finally:
        cat.close()
