"""ES|QL rules of the Elastic corpus analyzed, checked by hand against the rule text.

Each expectation was written by reading the rule's query in ../shared/corpus/elastic (file named
in the test), not copied from the analyzer's output.
"""

from __future__ import annotations

import json
import tomllib
from collections import Counter

from conftest import ELASTIC
from ruleatlas.languages import AnalysisContext, language
from ruleatlas.languages.esql import analyze_esql_query
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
    Regex,
    Rule,
    StageKind,
    Wild,
    analysis_from_dict,
    analysis_to_dict,
    predicates,
    walk,
)
from test_esql_parser import corpus_queries

ANY = Wild.ANY
G, F, T, AG = StageKind.GENERATE, StageKind.FILTER, StageKind.TRANSFORM, StageKind.AGGREGATE


def P(field: str, op: Op, *values: object, cased: bool = True) -> Predicate:
    return Predicate(field, op, tuple(values), cased=cased)  # type: ignore[arg-type]


def W(*parts: str | Wild) -> Pattern:
    return Pattern(tuple(parts))


def rule(path: str) -> Analysis:
    d = tomllib.loads((ELASTIC / path).read_text(encoding="utf-8"))
    return analyze_esql_query(d["rule"]["query"])


def hunt(path: str, n: int) -> Analysis:
    d = tomllib.loads((ELASTIC / path).read_text(encoding="utf-8"))
    return analyze_esql_query(d["hunt"]["query"][n])


def kinds(a: Analysis) -> list[StageKind]:
    return [s.kind for s in a.stages]


# ---- rules, by hand ------------------------------------------------------------------------


def test_widespread_malware_infection() -> None:
    a = rule("rules/cross-platform/execution_potential_widespread_malware_infection.toml")
    assert a.condition == And((
        P("event.code", Op.IN, "malicious_file", "memory_signature", "shellcode_thread"),
        P("rule.name", Op.EXISTS),
    ))
    assert a.result_condition == P("Esql.host_id_count_distinct", Op.GE, 3)
    assert isinstance(a.result_condition, Predicate)
    assert a.result_condition.phase is Phase.RESULT
    assert a.group_by == ("rule.name", "event.code")
    assert kinds(a) == [G, F, T, AG, F]
    assert a.stages[3].by == ("rule.name", "event.code")
    assert a.extra["indices"] == ["logs-endpoint.alerts-*"]
    assert a.extra["computed_fields"] == ["Esql.host_id_count_distinct"]


def test_bedrock_phantom_user_upper_case_keywords() -> None:
    a = rule("rules/integrations/aws/privilege_escalation_bedrock_phantom_user_credentials_added"
             ".toml")
    assert a.condition == And((
        P("event.provider", Op.EQ, "iam.amazonaws.com"),
        P("event.action", Op.IN, "CreateAccessKey", "CreateLoginProfile", "UpdateLoginProfile"),
        P("event.outcome", Op.EQ, "success"),
        P("user.target.name", Op.WILDCARD, W("BedrockAPIKey-", ANY)),
    ))
    assert [s.command for s in a.stages] == ["from", "where", "keep"]
    assert a.extra["indices"] == ["logs-aws.cloudtrail-*"]
    assert a.extra["metadata"] == ["_id", "_version", "_index"]
    assert a.result_condition is None and a.group_by == ()


def test_github_workflow_injection_match_function_is_a_condition() -> None:
    a = rule("rules/integrations/github/initial_access_github_actions_workflow_injection_blocked"
             ".toml")
    text = ('match(github.reasons.message::STRING, "refusing to allow a GitHub App to create or '
            'update workflow")')
    assert a.condition == And((
        P("data_stream.dataset", Op.EQ, "github.audit"),
        P("event.action", Op.EQ, "protected_branch.rejected_ref_update"),
        P("github.category", Op.EQ, "protected_branch"),
        P("github.reasons.code", Op.EQ, "workflow_updates"),
        Condition(Call("match", (Call("::", (FieldRef("github.reasons.message"), "string")),
                                 "refusing to allow a GitHub App to create or update workflow")),
                  text, ("github.reasons.message",)),
    ))


def test_whitespace_padding_eval_then_filter_on_the_computed_field() -> None:
    a = rule("rules/cross-platform/defense_evasion_whitespace_padding_command_line.toml")
    assert a.condition == And((
        P("event.category", Op.EQ, "process"),
        P("event.type", Op.EQ, "start"),
        P("event.action", Op.NE, "fork"),
        P("multi_spaces", Op.GT, 0),
    ))
    assert kinds(a) == [G, F, T, F, T]
    assert a.stages[3].phase is Phase.EVENT
    assert a.extra["indices"] == ["logs-*"]
    assert a.extra["computed_fields"] == ["multi_spaces"]


def test_agent_spoofing_is_not_null_and_group_by() -> None:
    a = rule("rules/cross-platform/defense_evasion_agent_spoofing_multiple_hosts.toml")
    assert a.condition == And((P("event.agent_id_status", Op.EXISTS), P("agent.id", Op.EXISTS)))
    assert a.group_by == ("agent.id",)
    assert a.result_condition == P("Esql.count_distinct_host_ids", Op.GE, 2)
    assert a.extra["indices"] == ["logs-endpoint.*"]
    assert a.extra["metadata"] == ["_id"]


def test_cobalt_strike_beacon_rlike_is_an_anchored_regex() -> None:
    """Anchored with ``\\Z``, not ``$`` (which also accepts a trailing newline): Elasticsearch's
    regexp syntax, "the pattern provided must match the entire string" (here and below)."""
    a = rule("rules/network/command_and_control_cobalt_strike_beacon.toml")
    assert a.extra["indices"] == ["packetbeat-*", "filebeat-*", "logs-network_traffic.*"]
    assert a.condition == And((
        Or((
            And((P("event.category", Op.IN, "network", "network_traffic"),
                 P("network.protocol", Op.IN, "tls", "http"))),
            P("data_stream.dataset", Op.IN, "network_traffic.tls", "network_traffic.http"),
        )),
        P("destination.domain", Op.REGEX,
          Regex(r"^(?:[a-z]{3}\.stage\.[0-9]{8}\..*)\Z", frozenset({"s"}))),
    ))


def test_azure_openai_numbers_stay_numbers_and_strings_strings() -> None:
    a = rule("rules/integrations/azure_openai/azure_openai_insecure_output_handling_detection"
             ".toml")
    assert a.condition == And((
        P("azure.open_ai.properties.response_length", Op.EQ, 0),
        P("azure.open_ai.result_signature", Op.EQ, "200"),
        P("azure.open_ai.operation_name", Op.EQ, "ChatCompletions_Create"),
    ))
    assert a.group_by == ("azure.resource.name",)
    assert a.result_condition == P("Esql.event_count", Op.GE, 10)
    assert kinds(a) == [G, F, T, AG, F, T]


def test_bedrock_guardrails_bare_boolean_field() -> None:
    a = rule("rules/integrations/aws_bedrock/aws_bedrock_guardrails_multiple_violations_by"
             "_single_user.toml")
    assert a.condition == P("gen_ai.compliance.violation_detected", Op.EQ, True)
    assert a.group_by == ("user.id", "gen_ai.request.model.id", "cloud.account.id")
    assert a.result_condition == P("Esql.ml_violations_count", Op.GT, 1)


def test_halfbaked_beacon_integer_in_list_and_url_regex() -> None:
    a = rule("rules/network/command_and_control_halfbaked_beacon.toml")
    assert a.condition == And((
        Or((
            P("data_stream.dataset", Op.IN, "network_traffic.tls", "network_traffic.http"),
            And((P("event.category", Op.IN, "network", "network_traffic"),
                 P("network.protocol", Op.EQ, "http"))),
        )),
        P("network.transport", Op.EQ, "tcp"),
        P("url.full", Op.REGEX, Regex(
            r"^(?:http://[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}/cd)\Z",
            frozenset({"s"}))),
        P("destination.port", Op.IN, 53, 80, 8080, 443),
    ))
    assert [s.kind for s in a.stages].count(F) == 4


def test_entra_actor_token_not_like_and_lucene_anystring() -> None:
    """``@`` is Lucene's any-string operator (Elasticsearch enables the optional operators), so
    the rule's ``.+@[A-Za-z0-9.]+...`` does not require a literal ``@``."""
    a = rule("rules/integrations/azure/initial_access_entra_id_actor_token_user_impersonation"
             "_abuse.toml")
    assert a.condition == And((
        P("azure.auditlogs.properties.initiated_by.user.displayName", Op.IN,
          "Office 365 Exchange Online", "Skype for Business Online", "Dataverse",
          "Office 365 SharePoint Online", "Microsoft Dynamics ERP"),
        Not(P("azure.auditlogs.operation_name", Op.WILDCARD, W(ANY, "group", ANY))),
        P("azure.auditlogs.operation_name", Op.NE, "Set directory feature on tenant"),
        P("azure.auditlogs.properties.initiated_by.user.userPrincipalName", Op.REGEX,
          Regex(r"^(?:.+.*[A-Za-z0-9.]+\.[A-Za-z]{2,})\Z", frozenset({"s"}))),
    ))


def test_grep_recursive_to_lower_is_not_cased() -> None:
    a = rule("rules/cross-platform/credential_access_grep_recursive_credential_discovery.toml")
    assert isinstance(a.condition, And)
    args = a.condition.args
    assert args[:4] == (
        P("host.os.type", Op.IN, "linux", "macos"),
        P("event.category", Op.EQ, "process"),
        P("process.name", Op.IN, "grep", "egrep"),
        Or((P("process.command_line", Op.WILDCARD, W(ANY, " -r", ANY), cased=False),
            P("process.command_line", Op.WILDCARD, W(ANY, "--recursive", ANY), cased=False))),
    )
    words = args[4]
    assert isinstance(words, Or) and len(words.args) == 24
    assert words.args[0] == P("process.command_line", Op.WILDCARD, W(ANY, "password", ANY))
    assert words.args[14] == P("process.command_line", Op.WILDCARD,
                               W(ANY, "BEGIN", ANY, "PRIVATE", ANY, "KEY", ANY))
    assert words.args[23] == P("process.command_line", Op.WILDCARD, W(ANY, "/.env", ANY))
    assert args[5] == Or((
        Not(P("process.parent.command_line", Op.EXISTS)),
        Not(And((P("process.parent.command_line", Op.WILDCARD, W(ANY, "shell-snapshots", ANY),
                   cased=False),
                 P("process.parent.name", Op.IN, "bash", "sh", "zsh")))),
    ))
    assert a.group_by == ("process.name", "host.id", "host.name", "agent.id",
                          "process.parent.name", "user.name", "Esql.time_bucket")
    assert a.result_condition == P("Esql.unique_cmd", Op.GE, 3)
    assert "Esql.time_bucket" in a.extra["computed_fields"]


def test_external_edr_alerts_kql_and_result_precedence() -> None:
    a = rule("rules/cross-platform/multiple_external_edr_alerts_by_host.toml")
    kql = 'kibana.alert.rule.tags : "Rule Type: Higher-Order Rule" '
    assert a.condition == And((
        P("event.dataset", Op.IN, "crowdstrike.alert", "crowdstrike.falcon", "sentinel_one.alert",
          "sentinel_one.threat", "m365_defender.alert"),
        P("host.id", Op.EXISTS),
        P("kibana.alert.risk_score", Op.GT, 21),
        Not(And((P("event.module", Op.EQ, "crowdstrike"),
                 Or((P("kibana.alert.rule.name", Op.WILDCARD, W(ANY, " at ", ANY)),
                     P("kibana.alert.rule.name", Op.WILDCARD, W(ANY, " on ", ANY)),
                     P("kibana.alert.rule.name", Op.EQ, "EICARTestFileWrittenWin")))))),
        Not(Condition(Call("kql", (kql,)), f'KQL("""{kql}""")', ())),
    ))
    assert a.extra["indices"] == [".alerts-security.*"]
    assert a.group_by == ("host.id", "host.name", "event.module")
    assert a.result_condition == Or((
        And((
            Or((P("Esql.kibana_alert_rule_name_distinct_count", Op.GE, 3),
                And((P("Esql.process_executable_distinct_count", Op.GE, 3),
                     P("Esql.kibana_alert_rule_name_values", Op.EQ, "External Alerts"))))),
            Or((P("Esql.kibana_alert_risk_score_distinct_count", Op.GE, 2),
                P("Esql.kibana_alert_risk_score_values", Op.EQ, 73),
                P("Esql.kibana_alert_risk_score_values", Op.EQ, 99))),
        )),
        And((
            P("Esql.kibana_alert_rule_name_distinct_count", Op.GE, 5),
            P("Esql.alerts_count", Op.LE, 50),
            Or((P("Esql.file_path_distinct_count", Op.GE, 1),
                P("Esql.process_command_line_distinct_count", Op.GE, 1),
                P("Esql.process_executable_distinct_count", Op.GE, 1))),
        )),
    ))


def test_svchost_masquerading_triple_quoted_like_and_match_options() -> None:
    a = rule("rules/windows/defense_evasion_masquerading_as_svchost.toml")
    assert a.condition == And((
        P("event.category", Op.EQ, "process"),
        P("event.type", Op.EQ, "start"),
        Condition(Call("match", (FieldRef("process.name"), "svchost.exe",
                                 Call("map", ("fuzziness", 1, "max_expansions", 10)))),
                  'match(process.name, "svchost.exe", { "fuzziness": 1, "max_expansions": 10 })',
                  ("process.name",)),
        Not(P("process.executable", Op.IN, "c:\\windows\\syswow64\\svchost.exe",
              "c:\\windows\\system32\\svchost.exe", cased=False)),
        Not(P("process.executable", Op.WILDCARD,
              W("\\device\\harddiskvolume", ANY, "\\windows\\system32\\svchost.exe"),
              cased=False)),
        Not(P("process.executable", Op.WILDCARD,
              W("\\device\\harddiskvolume", ANY, "\\windows\\syswow64\\svchost.exe"),
              cased=False)),
    ))
    assert len(a.extra["indices"]) == 5


def test_s3_static_site_dissect_outputs_and_ends_with() -> None:
    a = rule("rules/integrations/aws/impact_s3_static_site_js_file_uploaded.toml")
    key = "Esql.aws_cloudtrail_request_parameters_object_key"
    assert a.condition == And((
        P("data_stream.dataset", Op.EQ, "aws.cloudtrail"),
        P("event.provider", Op.EQ, "s3.amazonaws.com"),
        P("event.action", Op.EQ, "PutObject"),
        P("event.outcome", Op.EQ, "success"),
        P("aws.cloudtrail.user_identity.type", Op.IN, "IAMUser", "AssumedRole"),
        P("aws.cloudtrail.request_parameters", Op.WILDCARD, W(ANY, "static/js/", ANY, ".js", ANY)),
        Not(Or((P("user_agent.original", Op.WILDCARD, W(ANY, "Terraform", ANY)),
                P("user_agent.original", Op.WILDCARD, W(ANY, "Ansible", ANY)),
                P("user_agent.original", Op.WILDCARD, W(ANY, "Pulumi", ANY))))),
        P(key, Op.ENDSWITH, ".js"),
    ))
    assert kinds(a) == [G, F, T, T, F, T]
    computed = a.extra["computed_fields"]
    for f in ("Esql.aws_cloudtrail_request_parameters_bucket_name",
              "Esql_priv.aws_cloudtrail_request_parameters_host",
              "Esql.aws_cloudtrail_request_parameters_bucket_object_location", key):
        assert f in computed


def test_discovery_api_calls_true_in_starts_with_list() -> None:
    a = rule("rules/integrations/aws/discovery_multiple_discovery_api_calls_via_cli.toml")
    first, second = a.stages[2].condition, a.stages[3].condition
    assert isinstance(first, And) and first.args[:3] == (
        P("data_stream.dataset", Op.EQ, "aws.cloudtrail"),
        P("source.ip", Op.EXISTS),
        Not(P("aws.cloudtrail.session_credential_from_console", Op.EXISTS)),
    )
    assert first.args[3] == P("event.provider", Op.IN, *(
        f"{s}.amazonaws.com" for s in (
            "iam", "ec2", "s3", "rds", "lambda", "dynamodb", "kms", "cloudfront",
            "elasticloadbalancing", "cloudtrail", "sts", "ses", "organizations")))
    assert first.args[4:] == (
        P("aws.cloudtrail.user_identity.type", Op.NE, "AWSService"),
        P("user_agent.name", Op.EQ, "aws-cli"),
        P("event.action", Op.NE, "DescribeCapacityReservations"),
        P("user.name", Op.NE, "AWSServiceRoleForConfig"),
    )
    assert second == Or(tuple(P("event.action", Op.STARTSWITH, w)
                              for w in ("Describe", "Get", "List", "Generate")))
    assert a.group_by == ("Esql.time_window_date_trunc", "aws.cloudtrail.user_identity.arn")
    assert a.result_condition == P("Esql.event_action_count_distinct", Op.GT, 5)


def test_o365_network_alert_to_ip_cidr_and_named_grouping() -> None:
    a = rule("rules/cross-platform/initial_access_azure_o365_with_network_alert.toml")
    assert isinstance(a.condition, And)
    assert a.condition.args[:2] == (
        P("source.ip", Op.EXISTS),
        Or((P("data_stream.dataset", Op.IN, "o365.audit", "azure.signinlogs"),
            P("kibana.alert.rule.rule_id", Op.EQ, "eb079c62-4481-4d6e-9643-3ca499df7aaa"))),
    )
    cidr = a.condition.args[2]
    assert isinstance(cidr, Not) and isinstance(cidr.arg, Predicate)
    assert cidr.arg.field == "source.ip" and cidr.arg.op is Op.CIDR
    assert len(cidr.arg.values) == 26
    assert cidr.arg.values[:2] == ("10.0.0.0/8", "127.0.0.0/8")
    assert cidr.arg.values[-3:] == ("::1", "FE80::/10", "FF00::/8")
    assert a.group_by == ("Esql.source_ip",)
    assert a.result_condition == And((
        P("Esql.source_ip_network_alert_case_count_distinct", Op.GT, 0),
        P("Esql.data_stream_dataset_count_distinct", Op.GE, 2),
        Or((P("Esql.source_ip_mail_access_case_count_distinct", Op.GT, 0),
            P("Esql.source_ip_azure_signin_case_count_distinct", Op.GT, 0))),
        P("Esql.event_count", Op.LE, 100),
    ))


def test_package_manager_ancestor_inline_stats_starts_the_result_phase() -> None:
    a = rule("rules/cross-platform/initial_access_elastic_defend_alert_package_manager_ancestor"
             ".toml")
    assert a.condition == And((
        P("process.Ext.ancestry", Op.EXISTS),
        Or((P("data_stream.dataset", Op.EQ, "endpoint.alerts"),
            P("is_pkg_install", Op.EQ, True))),
    ))
    assert a.stages[4].command == "inline stats" and a.stages[4].kind is AG
    assert a.stages[4].notes == ("an aggregation has its own where filter (not a stage filter)",)
    assert a.result_condition == And((P("Esql.pkg_ancestor_ids", Op.EXISTS),
                                      P("data_stream.dataset", Op.EQ, "endpoint.alerts")))
    assert a.stages[6].phase is Phase.RESULT
    assert a.group_by == () and a.extra["inline_stats"] is True


def test_nfs_burst_metadata_source_and_computed_fields() -> None:
    a = rule("rules/network/impact_potential_nfs_destructive_operation_burst.toml")
    assert a.extra["metadata"] == ["_source"]
    assert a.condition == And((
        P("Esql.opcode", Op.IN, "WRITE", "REMOVE", "RENAME"),
        P("Esql.status", Op.EQ, "NFS_OK"),
        P("source.ip", Op.EXISTS),
        P("destination.ip", Op.EXISTS),
    ))
    assert a.extra["computed_fields"][:5] == [
        "Esql.opcode", "Esql.status", "Esql.time_window", "Esql.is_write", "Esql.is_destructive"]
    assert a.group_by == ("Esql.time_window", "source.ip", "destination.ip")


def test_kubernetes_reverse_shell_lucene_intersection_stays_a_condition() -> None:
    a = rule("rules/integrations/kubernetes/execution_kubernetes_pod_exec_potential_reverse_shell"
             ".toml")
    [warn] = a.problems
    assert warn.code == "regex-untranslatable" and warn.severity == "warning"
    assert warn.location is not None and (warn.location.line, warn.location.col) == (10, 47)
    last = a.stages[8].condition
    assert isinstance(last, And) and isinstance(last.args[1], Condition)
    assert last.args[2] == Not(P("command", Op.REGEX, Regex(
        r"^(?:.*/dev/tcp/(localhost|127\.0\.0\.1)/(8080|8443|9090|3000|5000|8888|80|443).*)\Z",
        frozenset({"s"}))))
    assert "raw_commands" in a.extra["computed_fields"]


def test_curl_llm_triage_kql_inline_stats_completion() -> None:
    a = rule("rules/cross-platform/command_and_control_curl_activity_llm_triage.toml")
    kql = ("event.category:process and event.type:start and not event.action:fork and "
           "process.name:(curl or curl.exe)")
    hosts = ("localhost", "127.0.0.1", "::1", "0.0.0.0", "169.254.169.254", "168.63.129.16",
             "mcr.microsoft.com", "acs-mirror.azureedge.net", "packages.aks.azure.com",
             "packages.microsoft.com", "login.microsoftonline.com", "management.azure.com",
             "storage.googleapis.com", "api.github.com", "artifacts.elastic.co",
             "download.elastic.co")
    assert a.condition == And((
        Condition(Call("kql", (kql,)), f'KQL("""{kql}""")', ()),
        P("process.args", Op.EXISTS),
        P("Esql.dest_host", Op.EXISTS),
        Not(P("Esql.dest_host", Op.IN, *hosts)),
        P("Esql.host_key", Op.EXISTS),
    ))
    assert a.result_condition == And((
        P("Esql.destination_host_count", Op.LT, 3),
        P("Esql.verdict", Op.IN, "TP", "SUSPICIOUS"),
        Condition(Call(">", (Call("to_double", (FieldRef("Esql.confidence"),)), 0.7)),
                  "TO_DOUBLE(Esql.confidence) > 0.7", ("Esql.confidence",)),
    ))
    assert a.group_by == ("Esql.host_key", "Esql.dest_host")
    commands = [s.command for s in a.stages]
    assert commands.count("inline stats") == 1 and commands.count("stats") == 1
    completion = a.stages[commands.index("completion")]
    assert completion.kind is T and completion.phase is Phase.RESULT
    for f in ("url_protocol", "dest_host", "url_protocol_bare", "dest_host_bare",
              "Esql.triage_result", "Esql.verdict", "Esql.confidence", "Esql.summary"):
        assert f in a.extra["computed_fields"], f
    assert a.problems == ()


# ---- hunting queries ---------------------------------------------------------------------------


def test_hunt_with_sql_fence_tag() -> None:
    a = hunt("hunting/linux/queries/persistence_general_kernel_manipulation.toml", 0)
    assert a.stages[0].notes == ("a code-fence language tag before the query was ignored",)
    assert a.stages[0].span is not None and a.stages[0].span.line == 2
    assert isinstance(a.condition, And)
    assert a.condition.args[1:] == (
        P("host.os.type", Op.EQ, "linux"),
        P("event.type", Op.IN, "creation", "change"),
        P("file.path", Op.WILDCARD, W("/boot/", ANY)),
        Not(P("file.extension", Op.IN, "dpkg-new", "swp")),
    )
    assert isinstance(a.condition.args[0], Condition)
    assert a.condition.args[0].fields == ("@timestamp",)
    assert a.group_by == ("file.path", "process.executable")
    assert a.result_condition == And((P("agent_count", Op.LE, 3), P("cc", Op.LE, 5)))


def test_hunt_dll_hijack_enrich_and_backslash_regex() -> None:
    a = hunt("hunting/windows/queries/detect_dll_hijack_via_masquerading_as_microsoft_native"
             "_libraries.toml", 0)
    assert isinstance(a.condition, And)
    assert isinstance(a.condition.args[0], Condition)
    assert a.condition.args[0].text == "@timestamp > NOW() - 7 day"
    assert a.condition.args[1:] == (
        P("host.os.family", Op.EQ, "windows"),
        P("event.action", Op.EQ, "load"),
        P("process.code_signature.status", Op.EQ, "trusted"),
        P("dll.code_signature.status", Op.NE, "trusted"),
        Not(P("dll.path", Op.REGEX, Regex(
            r"^(?:[c-fC-F]:\\(Windows|windows|WINDOWS)\\(System32|SysWOW64|system32|syswow64)"
            r"\\[a-zA-Z0-9_]+.dll)\Z", frozenset({"s"})))),
        P("native", Op.EQ, "yes"),
        Not(P("dll.path", Op.STARTSWITH, "C:\\Windows\\assembly\\NativeImages")),
    )
    enrich = a.stages[4]
    assert (enrich.command, enrich.kind) == ("enrich", T)
    assert enrich.notes == ("adds every enrich field of policy 'libs-policy-defend' (not known "
                            "here)",)
    assert a.group_by == ("dll.name", "dll_path", "process_path", "dll.hash.sha256")


def test_hunt_sql_query_is_opaque_with_reason() -> None:
    a = hunt("hunting/linux/queries/persistence_general_kernel_manipulation.toml", 2)
    assert [s.kind for s in a.stages] == [StageKind.OPAQUE]
    [p] = a.problems
    assert (p.severity, p.code) == ("unsupported", "not-esql:sql")


def test_invalid_hunt_is_a_located_parse_error() -> None:
    a = hunt("hunting/aws/queries/servicequotas_discovery_multi_region_get_service_quota_calls"
             ".toml", 0)
    [p] = a.problems
    assert p.code == "parse-error" and p.location is not None
    assert (p.location.line, p.location.col) == (5, 62)
    assert a.stages[0].kind is StageKind.OPAQUE


def test_rename_after_stats_renames_the_group_by() -> None:
    a = analyze_esql_query("from logs-* | stats c = count() by host.name, user.name "
                           "| rename host.name as host | where c > 5")
    assert a.group_by == ("host", "user.name")
    assert a.result_condition == P("c", Op.GT, 5)


def test_registered_analyzer_reads_rule_query() -> None:
    r = Rule(id="x", source="elastic", path="rules/x.toml", title="t", language="esql",
             query='from logs-* | where process.name =~ "CMD.exe"', body="")
    a = language("esql").analyzer(r, AnalysisContext())
    assert a.language == "esql"
    assert a.condition == P("process.name", Op.EQ, "CMD.exe", cased=False)
    [(pred, positive)] = list(predicates(a.condition))
    assert positive and pred.text == 'process.name =~ "CMD.exe"'
    assert pred.span is not None and (pred.span.line, pred.span.col) == (1, 21)


# ---- the whole corpus -------------------------------------------------------------------------


def test_corpus_analysis_counts() -> None:
    """Rules: no error, nothing opaque; hunting queries: ES|QL ones lowered, others opaque."""
    outcome: Counter[str] = Counter()
    for name, q in corpus_queries():
        a = analyze_esql_query(q)
        kind = "hunt" if "#" in name else "rule"
        if any(p.severity == "error" for p in a.problems):
            outcome[f"{kind} error"] += 1
            continue
        nodes = [n for st in a.stages for n in walk(st.condition)]
        opaque = any(isinstance(n, Opaque) for n in nodes) or StageKind.OPAQUE in kinds(a)
        outcome[f"{kind} {'opaque' if opaque else 'lowered'}"] += 1
    assert outcome == Counter({"rule lowered": 212, "hunt lowered": 161, "hunt error": 4})


def test_corpus_analyses_survive_the_json_round_trip() -> None:
    """What the store keeps (``analysis_to_dict`` as JSON) reads back to the same analysis."""
    for name, q in corpus_queries():
        a = analyze_esql_query(q)
        assert analysis_from_dict(json.loads(json.dumps(analysis_to_dict(a)))) == a, name
