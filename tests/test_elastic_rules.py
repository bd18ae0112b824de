"""Elastic rule types on real corpus rules: the stages each rule type adds, hand-checked against
the TOML (expectations written by reading the rule files under ../shared/corpus/elastic)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from conftest import ELASTIC
from ruleatlas.languages.elastic import (
    SQL_REASON,
    analyze_elastic_rule,
    has_opaque,
    kql_incompatibilities,
    kql_incompatibility,
)
from ruleatlas.languages.elastic.embed import kql_text
from ruleatlas.languages.eql import analyze_eql_query
from ruleatlas.languages.esql import analyze_esql_query
from ruleatlas.languages.kql import analyze_kql_query
from ruleatlas.model import (
    Analysis,
    And,
    Call,
    Condition,
    FieldRef,
    Not,
    Op,
    Opaque,
    Or,
    Pattern,
    Phase,
    Predicate,
    Rule,
    StageKind,
    Wild,
    walk,
)
from ruleatlas.sources.elastic import ElasticSource

ANALYZERS = {"eql": analyze_eql_query, "kql": analyze_kql_query, "esql": analyze_esql_query}


def analyze_query(language: str, text: str) -> Analysis:
    return ANALYZERS[language](text)


def load(rel: str) -> Rule:
    res = ElasticSource().load_file(ELASTIC, ELASTIC / rel)
    assert not res.errors, res.errors
    (rule,) = res.rules
    return rule


def analyze(rel: str) -> Analysis:
    return analyze_elastic_rule(load(rel), None, analyze_query)


def P(field: str, op: Op, *values, cased: bool = True, **kw) -> Predicate:
    return Predicate(field, op, tuple(values), cased=cased, **kw)


# --- threshold ---------------------------------------------------------------------------------


def test_threshold_groups_by_its_fields_and_counts_at_least_its_value():
    a = analyze("rules/linux/impact_process_kill_threshold.toml")
    assert a.language == "kql"
    query, th = a.stages
    # event.category:process and host.os.type:linux and event.type:start and (
    #   (process.name:"pkill" and process.args:"-f") or (process.name:kill and
    #   process.args:"-9") or (process.name:killall))
    assert query.condition == And((
        P("event.category", Op.EQ, "process"),
        P("host.os.type", Op.EQ, "linux"),
        P("event.type", Op.EQ, "start"),
        Or((
            And((P("process.name", Op.EQ, "pkill"), P("process.args", Op.EQ, "-f"))),
            And((P("process.name", Op.EQ, "kill"), P("process.args", Op.EQ, "-9"))),
            P("process.name", Op.EQ, "killall"),
        )),
    ))
    # [rule.threshold] field = ["host.id", "process.executable", "user.name"], value = 15
    assert (th.index, th.command, th.kind, th.phase) == (
        1, "threshold", StageKind.AGGREGATE, Phase.RESULT)
    assert th.by == a.group_by == ("host.id", "process.executable", "user.name")
    count = Predicate("count", Op.GE, (15,))
    assert th.condition == a.result_condition == count
    assert th.condition.phase is Phase.RESULT and th.condition.stage == 1
    assert th.text == ('[rule.threshold]\nfield = ["host.id", "process.executable", '
                       '"user.name"]\nvalue = 15')
    assert th.notes == ("one alert per group by host.id, process.executable, user.name with at "
                        "least 15 events",)
    assert a.condition == query.condition
    assert a.problems == ()


def test_threshold_with_cardinality_adds_a_distinct_count():
    a = analyze("rules/network/discovery_potential_syn_port_scan_detected.toml")
    th = a.stages[-1]
    # field = ["destination.ip", "source.ip"], value = 1; cardinality destination.port >= 250
    assert th.by == ("destination.ip", "source.ip")
    assert th.condition == And((Predicate("count", Op.GE, (1,)),
                                Predicate("cardinality(destination.port)", Op.GE, (250,))))
    assert "[[rule.threshold.cardinality]]" in th.text
    assert th.notes[1] == "and at least 250 distinct values of destination.port"
    assert a.extra["threshold"]["cardinality"] == [{"field": "destination.port", "value": 250}]


# --- new_terms ---------------------------------------------------------------------------------


def test_new_terms_is_a_stage_with_its_fields_and_history_window():
    a = analyze("rules/windows/command_and_control_new_terms_commonly_abused_rmm.toml")
    nt = a.stages[-1]
    # [rule.new_terms] value = ["host.id", "process.name"]; history_window_start = "now-7d";
    # from = "now-9m"
    assert (nt.command, nt.kind, nt.phase) == ("new_terms", StageKind.AGGREGATE, Phase.RESULT)
    assert nt.by == a.group_by == ("host.id", "process.name")
    assert nt.condition is None
    assert a.extra["new_terms"] == {"fields": ["host.id", "process.name"],
                                    "history_window_start": "now-7d",
                                    "history_window_seconds": 7 * 86400}
    assert nt.notes[1] == ("history window: from now-7d to the start of the rule's window "
                           "(from = now-9m)")
    assert nt.text.startswith("[rule.new_terms]\nfield = \"new_terms_fields\"")
    # the query's first three lines
    first = a.stages[0].condition
    assert isinstance(first, And)
    assert first.args[:3] == (P("host.os.type", Op.EQ, "windows"),
                              P("event.category", Op.EQ, "process"),
                              P("event.type", Op.EQ, "start"))


# --- threat_match ------------------------------------------------------------------------------


def test_threat_match_stage_holds_the_mapping():
    a = analyze("rules/threat_intel/threat_intel_indicator_match_address.toml")
    query, tm = a.stages
    # query = source.ip:* or destination.ip:*
    assert query.condition == Or((P("source.ip", Op.EXISTS, cased=False),
                                  P("destination.ip", Op.EXISTS, cased=False)))
    # [[rule.threat_mapping]] source.ip = threat.indicator.ip; destination.ip = threat.indicator.ip
    expr = Call("threat_match", (
        Call("==", (FieldRef("source.ip"), FieldRef("threat.indicator.ip"))),
        Call("==", (FieldRef("destination.ip"), FieldRef("threat.indicator.ip"))),
    ))
    assert (tm.command, tm.kind) == ("threat_match", StageKind.FILTER)
    assert isinstance(tm.condition, Condition)
    assert tm.condition.expr == expr
    assert tm.condition.fields == tm.by == ("source.ip", "destination.ip")
    assert a.condition == And((query.condition, tm.condition))
    assert tm.notes[:3] == (
        "indicator index: filebeat-*, logs-ti_*",
        'indicator query (kql): @timestamp >= "now-30d/d" and event.module:(threatintel or '
        'ti_*) and threat.indicator.ip:* and not\nlabels.is_ioc_transform_source:"true"',
        "event matches an indicator when source.ip = threat.indicator.ip or destination.ip = "
        "threat.indicator.ip",
    )
    assert tm.text.startswith("[[rule.threat_mapping]]")
    assert a.extra["threat_match"]["indicator_path"] == "threat.indicator"
    assert a.problems == ()  # the threat query parses


# --- machine learning --------------------------------------------------------------------------


def test_machine_learning_rule_names_its_job_and_has_no_query():
    a = analyze("rules/ml/execution_ml_windows_anomalous_script.toml")
    # anomaly_threshold = 50; machine_learning_job_id = ["v3_windows_anomalous_script_ea"]
    assert a.language == "ml"
    (st,) = a.stages
    assert (st.command, st.kind, st.condition) == ("machine_learning", StageKind.GENERATE, None)
    assert st.text == ('machine_learning_job_id = ["v3_windows_anomalous_script_ea"]\n'
                       "anomaly_threshold = 50")
    assert st.notes == ("alerts on anomaly records of v3_windows_anomalous_script_ea with an "
                        "anomaly score >= 50",)
    assert a.condition is None
    (p,) = a.problems
    assert (p.severity, p.code) == ("unsupported", "machine-learning")
    assert p.message.startswith("a machine-learning job has no query")
    assert a.extra["machine_learning"] == {"job_ids": ["v3_windows_anomalous_script_ea"],
                                           "anomaly_threshold": 50}


# --- lucene ------------------------------------------------------------------------------------


def test_the_corpus_lucene_rule_is_opaque_with_its_reasons():
    a = analyze("rules/_deprecated/privilege_escalation_setgid_bit_set_via_chmod.toml")
    # event.category:process AND event.type:(start or process_started) AND process.name:chmod
    # AND process.args:(g+s OR /2[0-9]{3}/) AND NOT user.name:root
    assert a.language == "lucene"
    (st,) = a.stages
    assert st.kind is StageKind.OPAQUE
    assert isinstance(a.condition, Opaque)
    assert "lower-case 'or' (a search word in Lucene, an operator in KQL)" in a.condition.reason
    assert "a Lucene regular expression (KQL has none): /2[0-9]{3}/" in a.condition.reason
    (p,) = a.problems
    assert (p.severity, p.code) == ("unsupported", "lucene")


def test_compatible_lucene_is_read_by_the_kql_analyzer():
    rule = Rule(id="l", source="elastic", path="x.toml", title="t", language="lucene",
                query="process.name:chmod AND NOT user.name:root", body="", type="query")
    a = analyze_elastic_rule(rule, None, analyze_query)
    assert a.language == "lucene" and a.problems == ()
    assert a.condition == And((P("process.name", Op.EQ, "chmod"),
                               Not(P("user.name", Op.EQ, "root"))))
    assert a.stages[0].command == "lucene"


def test_lucene_incompatibilities():
    assert kql_incompatibility('process.name:"a b" AND (x:1 OR y:2*)') is None
    assert kql_incompatibilities("a:b c:d") == [
        "two terms with no operator between them (Lucene ORs them), before 'c'"]
    assert kql_incompatibilities("a:b~2") == ["a Lucene fuzzy or proximity operator '~': b~2"]
    assert kql_incompatibilities("a:[1 TO 5]")[0].startswith("a Lucene range [a TO b]")
    assert kql_incompatibilities("a:b?c") == ["a Lucene '?' wildcard (KQL has only '*'): b?c"]
    assert kql_incompatibilities("+a:b") == ["a Lucene required-term prefix '+': +a"]
    assert kql_incompatibility(r'a:"x?~" AND b:c\?d') is None  # quoted, escaped


# --- Kibana filters ----------------------------------------------------------------------------


def test_kibana_filters_are_and_ed_with_the_query():
    a = analyze("rules/windows/defense_evasion_posh_compressed.toml")
    query, filters = a.stages
    # [[rule.filters]] negate = true; wildcard file.path case_insensitive = true, value =
    # "?:\\\\ProgramData\\\\Microsoft\\\\Windows Defender Advanced Threat Protection\\\\
    #  Downloads\\\\*" (TOML string: each \\\\ is an escaped backslash of the wildcard syntax)
    path = Pattern((Wild.ONE, ":\\ProgramData\\Microsoft\\Windows Defender Advanced Threat "
                    "Protection\\Downloads\\", Wild.ANY))
    expected = Not(Predicate("file.path", Op.WILDCARD, (path,), cased=False))
    assert (filters.command, filters.kind, filters.condition) == (
        "filters", StageKind.FILTER, expected)
    assert isinstance(query.condition, And)
    assert a.condition == And((*query.condition.args, expected))


# --- ES|QL kql() -------------------------------------------------------------------------------


def test_esql_kql_call_becomes_kql_predicates_located_in_the_esql_text():
    rule = load("rules/cross-platform/command_and_control_curl_activity_llm_triage.toml")
    a = analyze_elastic_rule(rule, None, analyze_query)
    # | WHERE KQL("""event.category:process and event.type:start and not event.action:fork
    #   and process.name:(curl or curl.exe)""") AND process.args IS NOT NULL
    where = a.stages[1]
    assert where.condition == And((
        P("event.category", Op.EQ, "process"),
        P("event.type", Op.EQ, "start"),
        Not(P("event.action", Op.EQ, "fork")),
        P("process.name", Op.IN, "curl", "curl.exe"),
        P("process.args", Op.EXISTS),
    ))
    first = where.condition.args[0]  # type: ignore[union-attr]
    assert first.stage == 1 and first.span is not None
    assert rule.query[first.span.start:first.span.end] == "event.category:process"
    assert a.extra["kql_calls"] == 1
    left = [n for st in a.stages for n in walk(st.condition)
            if isinstance(n, Condition) and kql_text(n) is not None]
    assert left == []


# --- hunting -----------------------------------------------------------------------------------


def test_hunting_file_with_two_esql_queries():
    rule = load("hunting/windows/queries/pe_file_transfer_via_smb_admin_shares_by_agent.toml")
    a = analyze_elastic_rule(rule, None, analyze_query)
    # two queries, each: from | where | where | stats | where
    assert [s.command.lower() for s in a.stages] == ["from", "where", "where", "stats",
                                                      "where"] * 2
    assert [s.index for s in a.stages] == list(range(10))
    assert [s.name for s in a.stages] == ["query 1"] * 5 + ["query 2"] * 5
    assert a.stages[3].by == a.stages[8].by == ("user.name",)
    # | where agents == 1 and total <= 3   /   | where agents >= 10
    assert a.stages[4].condition == And((P("agents", Op.EQ, 1), P("total", Op.LE, 3)))
    assert a.stages[9].condition == P("agents", Op.GE, 10)
    assert a.stages[9].condition.stage == 9  # type: ignore[union-attr]
    second_from = a.stages[5].span
    assert second_from is not None
    assert rule.query[second_from.start:].startswith("from logs-endpoint.events.file-*")
    # both queries filter the same events: the Or of two equal conditions is one condition
    assert a.condition == analyze_esql_query(rule.extra["queries"][0]["query"]).condition
    assert [q["language"] for q in a.extra["queries"]] == ["esql", "esql"]
    assert a.problems == ()


def test_hunting_sql_query_is_one_opaque_stage():
    a = analyze("hunting/linux/queries/persistence_via_policykit.toml")
    # query 1: from | keep | where | where | stats | where | sort | limit; query 2: SELECT ...
    assert [s.name for s in a.stages] == ["query 1"] * 8 + ["query 2"]
    sql = a.stages[8]
    assert (sql.kind, sql.command, sql.notes) == (StageKind.OPAQUE, "sql", (SQL_REASON,))
    assert sql.text.startswith("SELECT\n    f.filename,")
    assert [(p.message, p.severity) for p in a.problems] == [
        ("query 2: SQL hunting query (osquery): no analyzer", "unsupported")]
    # the condition is the ES|QL query's: file.path like "/etc/polkit-1/rules.d/*" or ...
    assert any(p.field == "file.path" for p in _preds(a.condition))


def test_sql_only_hunting_file_has_no_condition():
    a = analyze("hunting/linux/queries/privilege_escalation_via_existing_sudoers.toml")
    (st,) = a.stages
    assert (st.kind, st.text, st.name) == (StageKind.OPAQUE, "SELECT * FROM sudoers", "query 1")
    assert a.condition is None


def _preds(node):
    return [n for n in walk(node) if isinstance(n, Predicate)]


# --- the registry ------------------------------------------------------------------------------


def test_registry_analyzes_elastic_rules_with_their_rule_type():
    from ruleatlas.languages import RULE_ANALYZERS, analyze

    assert "elastic" in RULE_ANALYZERS
    a = analyze(load("rules/linux/impact_process_kill_threshold.toml"))
    assert a.stages[-1].command == "threshold"
    assert a.result_condition == Predicate("count", Op.GE, (15,))
    ml = analyze(load("rules/ml/execution_ml_windows_anomalous_script.toml"))
    assert [p.code for p in ml.problems] == ["machine-learning"]


# --- corpus sweep ------------------------------------------------------------------------------

# Documented in docs/elastic.md ("What stays opaque"): hunting files with osquery SQL queries
# (26) and the one Lucene rule. Four hunting ES|QL queries do not parse (written with `=` for
# `==`, a stray `)`, `by` without stats); they are errors of the ES|QL analysis.
ERROR_RULES = {
    "hunting/aws/queries/servicequotas_discovery_multi_region_get_service_quota_calls.toml",
    "hunting/azure/queries/entra_authentication_attempts_behind_rare_user_agents.toml",
    "hunting/okta/queries/credential_access_rapid_reset_password_requests_for_different_users.toml",
    "hunting/windows/queries/execution_via_windows_scheduled_task_with_low_occurrence_frequency"
    ".toml",
}
LUCENE_RULE = "rules/_deprecated/privilege_escalation_setgid_bit_set_via_chmod.toml"


@cache
def corpus_analyses() -> tuple[tuple[Rule, Analysis], ...]:
    src = ElasticSource()
    out = []
    for path in src.rule_files(ELASTIC):
        for rule in src.load_file(ELASTIC, Path(path)).rules:
            out.append((rule, analyze_elastic_rule(rule, None, analyze_query)))
    return tuple(out)


def test_every_corpus_rule_analyzes():
    pairs = corpus_analyses()
    assert len(pairs) == 2332
    assert [r.path for r, a in pairs if any(p.code == "crash" for p in a.problems)] == []


def test_opaque_rules_are_the_sql_hunts_the_unparsed_hunts_and_the_lucene_rule():
    pairs = corpus_analyses()
    opaque = {r.path for r, a in pairs if has_opaque(a)}
    sql_hunts = {r.path for r, _ in pairs if r.type == "hunt"
                 and any(q["language"] == "sql" for q in r.extra["queries"])}
    assert len(sql_hunts) == 26
    # a query that does not parse is an opaque stage too
    assert opaque == sql_hunts | ERROR_RULES | {LUCENE_RULE}


def test_errors_only_in_the_listed_hunting_queries():
    pairs = corpus_analyses()
    errors = {r.path for r, a in pairs if any(p.severity == "error" for p in a.problems)}
    assert errors <= ERROR_RULES  # may only go down
    assert len(errors) == len(ERROR_RULES)


def test_rule_types_add_their_stage_everywhere():
    pairs = corpus_analyses()
    last = {}
    for r, a in pairs:
        last.setdefault(r.type, set()).add(a.stages[-1].command if a.stages else None)
    assert last["threshold"] == {"threshold"}
    assert last["new_terms"] == {"new_terms"}
    assert last["threat_match"] == {"threat_match"}
    assert last["machine_learning"] == {"machine_learning"}
    kql_left = [r.path for r, a in pairs for st in a.stages for n in walk(st.condition)
                if isinstance(n, Condition) and kql_text(n) is not None]
    assert kql_left == []


def test_threshold_without_fields_counts_all_matching_events_as_one_group():
    a = analyze("rules/integrations/azure/credential_access_entra_id_excessive_account_lockouts"
                ".toml")
    th = a.stages[-1]
    # field = [], value = 30; cardinality user.name >= 25
    assert th.by == a.group_by == ()
    assert th.condition == And((Predicate("count", Op.GE, (30,)),
                                Predicate("cardinality(user.name)", Op.GE, (25,))))
    assert th.notes[0] == ("one alert per group over all matching events (no group-by) with at "
                           "least 30 events")
