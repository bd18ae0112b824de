"""The EQL parser and analyzer on every EQL query of Elastic's corpus, and hand-checked rules.

The expected trees below were written by reading each rule's query (file named in the test),
not copied from the analyzer's output.
"""

from __future__ import annotations

import json
import tomllib
from functools import cache

import pytest

from conftest import ELASTIC
from ruleatlas.languages.eql import analyze_eql_query, generate, parse
from ruleatlas.model import (
    Analysis,
    And,
    Call,
    Condition,
    FieldRef,
    Node,
    Not,
    Op,
    Opaque,
    Or,
    Pattern,
    Predicate,
    Regex,
    StageKind,
    Value,
    Wild,
    analysis_from_dict,
    analysis_to_dict,
    walk,
)

ANY, ONE = Wild.ANY, Wild.ONE


@cache
def corpus_queries() -> tuple[tuple[str, str], ...]:
    """(name, query) of every EQL rule (rules/, rules_building_block/) and EQL hunting query."""
    out: list[tuple[str, str]] = []
    for sub in ("rules", "rules_building_block"):
        for path in sorted((ELASTIC / sub).rglob("*.toml")):
            rule = tomllib.loads(path.read_text(encoding="utf-8")).get("rule", {})
            if rule.get("language") == "eql":
                out.append((str(path.relative_to(ELASTIC)), rule["query"]))
    for path in sorted((ELASTIC / "hunting").rglob("*.toml")):
        hunt = tomllib.loads(path.read_text(encoding="utf-8")).get("hunt", {})
        if "EQL" in hunt.get("language", []):
            for i, q in enumerate(hunt["query"]):
                out.append((f"{path.relative_to(ELASTIC)}#{i}", q))
    return tuple(out)


def query_of(name: str) -> str:
    return dict(corpus_queries())[name]


def analyze(name: str) -> Analysis:
    return analyze_eql_query(query_of(name))


def P(field: str, op: Op, *values: Value, cased: bool = False, negated: bool = False) -> Predicate:
    return Predicate(field, op, values, negated=negated, cased=cased)


def cat(category: str) -> Predicate:
    return P("event.category", Op.EQ, category, cased=True)


def eq(field: str, value: Value) -> Predicate:
    """``field == value`` (case-sensitive)."""
    return P(field, Op.EQ, value, cased=True)


def pat(*parts: str | Wild) -> Pattern:
    return Pattern(parts)


# ---- corpus sweep ------------------------------------------------------------------------


def test_corpus_counts() -> None:
    names = [n for n, _ in corpus_queries()]
    assert sum(n.startswith("rules/") for n in names) == 1011
    assert sum(n.startswith("rules_building_block/") for n in names) == 70
    assert sum(n.startswith("hunting/") for n in names) == 13


def test_every_corpus_query_parses_and_round_trips() -> None:
    failures = []
    for name, q in corpus_queries():
        tree = parse(q)
        text = generate(tree)
        if parse(text) != tree or generate(parse(text)) != text:
            failures.append(name)
    assert failures == []


def test_every_corpus_query_lowers_without_opaque_or_problem() -> None:
    opaque, problems = [], []
    for name, q in corpus_queries():
        a = analyze_eql_query(q)
        if any(isinstance(n, Opaque) for st in a.stages for n in walk(st.condition)):
            opaque.append(name)
        if a.problems:
            problems.append((name, a.problems))
        assert analysis_from_dict(json.loads(json.dumps(analysis_to_dict(a)))) == a, name
    assert opaque == []
    assert problems == []


def test_corpus_sequences_and_samples_have_their_model() -> None:
    kinds = {"sequence": 0, "sample": 0, "event": 0}
    for _name, q in corpus_queries():
        a = analyze_eql_query(q)
        if a.sequence is None:
            kinds["event"] += 1
            assert len([s for s in a.stages if s.kind is StageKind.FILTER]) == 1
        else:
            kinds[a.sequence.kind] += 1
            steps = len(a.sequence.steps) + (a.sequence.until is not None)
            assert a.stages[0].command == f"{a.sequence.kind} step 1"
            assert len([s for s in a.stages if s.kind is StageKind.FILTER]) == steps
    # 218 queries open with `sequence`, plus 6 whose leading comment hides the keyword from a
    # naive first-word count; 3 samples.
    assert kinds["sample"] == 3
    assert kinds["sequence"] == 224
    assert kinds["event"] == len(corpus_queries()) - 227


# ---- hand-checked rules --------------------------------------------------------------------


def test_kerberos_bifrost_like_insensitive_and_in_insensitive() -> None:
    a = analyze("rules/macos/lateral_movement_credential_access_kerberos_bifrostconsole.toml")
    args = "process.args"
    assert a.condition == And((
        cat("process"),
        eq("host.os.type", "macos"),
        P("event.type", Op.IN, "start", "process_started", cased=True),
        P(args, Op.WILDCARD, pat("-action")),
        Or((
            P(args, Op.IN, pat("-kerberoast"), pat("askhash"), pat("asktgs"), pat("asktgt"),
              pat("s4u")),
            And((P(args, Op.WILDCARD, pat("-ticket")), P(args, Op.WILDCARD, pat("ptt")))),
            And((P(args, Op.WILDCARD, pat("dump")), P(args, Op.IN, "tickets", "keytab"))),
        )),
    ))


def test_non_standard_http_port_not_in_numbers() -> None:
    a = analyze("rules/_deprecated/command_and_control_non_standard_http_port.toml")
    assert a.condition == And((
        cat("network"),
        P("process.name", Op.IN, "http", "https"),
        P("destination.port", Op.IN, 80, 443, cased=True, negated=True),
        P("event.action", Op.IN, "connection_attempted", "ipv4_connection_attempt_event",
          "connection_accepted", "ipv4_connection_accept_event", cased=True),
        P("destination.ip", Op.NE, "127.0.0.1", cased=True),
    ))


def test_ollama_external_access_cidrmatch_and_exists() -> None:
    a = analyze("rules/cross-platform/initial_access_ollama_api_external_access.toml")
    assert a.condition == And((
        cat("network"),
        eq("event.action", "connection_accepted"),
        P("process.name", Op.IN, "ollama", "ollama.exe", cased=True),
        eq("destination.port", 11434),
        P("source.ip", Op.EXISTS, cased=True),
        P("source.ip", Op.NE, "0.0.0.0", cased=True),
        Not(P("source.ip", Op.CIDR, "10.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16",
              "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "::1", "fe80::/10",
              "fc00::/7", "ff00::/8")),
    ))


def test_s3_replication_string_contains() -> None:
    a = analyze("rules/integrations/aws/exfiltration_s3_bucket_replicated_to_external_account"
                ".toml")
    assert a.condition == And((
        cat("info"),
        eq("data_stream.dataset", "aws.cloudtrail"),
        eq("event.action", "PutBucketReplication"),
        eq("event.outcome", "success"),
        P("aws.cloudtrail.request_parameters", Op.CONTAINS, "Account=", cased=True),
    ))


def test_lanman_null_session_pipes_length_is_a_condition() -> None:
    a = analyze("rules/windows/lateral_movement_defense_evasion_lanman_nullsessionpipe_"
                "modification.toml")
    assert isinstance(a.condition, And)
    *head, length, last = a.condition.args
    assert head == [cat("registry"), eq("host.os.type", "windows"), eq("event.type", "change"),
                    P("registry.value", Op.EQ, "NullSessionPipes")]
    assert isinstance(length, Condition)
    assert length.expr == Call(">", (Call("length", (FieldRef("registry.data.strings"),)), 0))
    assert length.fields == ("registry.data.strings",)
    assert length.text == "length(registry.data.strings) > 0"
    assert last == Not(P("registry.data.strings", Op.EQ, "(empty)"))


def test_sandboxed_office_zip_like_insensitive_pattern() -> None:
    a = analyze("rules/macos/defense_evasion_sandboxed_office_app_suspicious_zip_file.toml")
    assert a.condition == And((
        cat("file"),
        eq("host.os.type", "macos"),
        P("event.action", Op.IN, "modification", "rename", cased=True),
        P("file.name", Op.WILDCARD, pat("~$", ANY, ".zip")),
    ))


def test_process_started_from_pid_file_raw_regex() -> None:
    a = analyze("rules/linux/execution_process_started_from_process_id_file.toml")
    assert a.condition == And((
        cat("process"),
        eq("host.os.type", "linux"),
        eq("event.type", "start"),
        eq("user.id", "0"),
        # Lucene's \w is ASCII (RegExp javadoc: "a word character [a-zA-Z_0-9]"), not Python's
        # Unicode \w.
        P("process.executable", Op.REGEX,
          Regex(r"^(?:/var/run/[a-zA-Z_0-9]+\.(pid|lock|reboot))\Z", frozenset({"i", "s"}))),
    ))


def test_ad_explorer_optional_field() -> None:
    a = analyze("rules/windows/discovery_ad_explorer_execution.toml")
    assert a.condition == And((
        cat("process"),
        eq("host.os.type", "windows"),
        eq("event.type", "start"),
        Or((P("process.name", Op.WILDCARD, pat("ADExplorer", ANY, ".exe")),
            eq("process.pe.original_file_name", "AdExp"))),
    ))
    assert a.extra["optional_fields"] == ["process.pe.original_file_name"]
    texts = [p.text for p, _ in a.all_predicates()]
    assert '?process.pe.original_file_name == "AdExp"' in texts


def test_anonymous_pod_request_null_is_not_exists() -> None:
    a = analyze("rules/integrations/kubernetes/execution_anonymous_create_update_patch_pod_"
                "request.toml")
    user = "kubernetes.audit.user.username"
    assert a.condition == And((
        eq("data_stream.dataset", "kubernetes.audit_logs"),
        Or((P(user, Op.IN, "system:anonymous", "system:unauthenticated", cased=True),
            P(user, Op.EXISTS, cased=True, negated=True),
            eq(user, ""))),
        P("kubernetes.audit.level", Op.IN, "RequestResponse", "ResponseComplete", "Request",
          cased=True),
        P("kubernetes.audit.verb", Op.IN, "create", "update", "patch", cased=True),
        eq("kubernetes.audit.objectRef.resource", "pods"),
    ))


def test_right_to_left_override_unicode_escape() -> None:
    a = analyze("rules/windows/defense_evasion_right_to_left_override.toml")
    assert a.condition == And((
        eq("host.os.type", "windows"),
        P("event.category", Op.IN, "file", "process", cased=True),
        Or((
            And((eq("event.type", "creation"),
                 P("file.path", Op.WILDCARD, pat(ANY, "\u202e", ANY)))),
            And((eq("event.type", "start"),
                 P("process.name", Op.WILDCARD, pat(ANY, "\u202e", ANY)))),
        )),
    ))


def test_lsass_clone_question_mark_wildcard_and_backslashes() -> None:
    a = analyze("rules/windows/credential_access_via_snapshot_lsass_clone_creation.toml")
    lsass = pat(ONE, ":\\Windows\\System32\\lsass.exe")
    assert a.condition == And((
        cat("process"),
        eq("host.os.type", "windows"),
        P("event.code", Op.EQ, "4688"),
        P("process.executable", Op.WILDCARD, lsass),
        P("process.parent.executable", Op.WILDCARD, lsass),
    ))


def test_google_workspace_field_against_field_is_a_condition() -> None:
    a = analyze("rules/integrations/google_workspace/initial_access_external_user_added_to_"
                "google_workspace_group.toml")
    assert isinstance(a.condition, And)
    assert a.condition.args[:3] == (cat("iam"), eq("data_stream.dataset", "google_workspace.admin"),
                                    eq("event.action", "ADD_GROUP_MEMBER"))
    last = a.condition.args[3]
    assert isinstance(last, Not) and isinstance(last.arg, Condition)
    assert last.arg.expr == Call("endsWith", (FieldRef("user.target.domain"),
                                              FieldRef("user.target.group.domain")))
    assert last.arg.fields == ("user.target.domain", "user.target.group.domain")


def test_dollar_account_relay_functions() -> None:
    a = analyze("rules/windows/credential_access_dollar_account_relay.toml")
    assert isinstance(a.condition, And)
    args = a.condition.args
    assert P("user.name", Op.ENDSWITH, "$") in args
    assert P("user.name", Op.NE, "$", cased=True) in args
    conds = [n for n in args if isinstance(n, Condition)]
    assert conds[0].expr == Call("startsWith~", (
        FieldRef("host.name"), Call("substring", (FieldRef("user.name"), 0, -1))))
    assert conds[-1].expr == Call("==", (
        Call("indexOf", (Call("string", (FieldRef("host.ip"),)),
                         Call("string", (FieldRef("source.ip"),)))), None))


def test_docker_hunting_query_like_lists() -> None:
    a = analyze("hunting/macos/queries/execution_suspicious_executable_file_modification_via_"
                "docker.toml#0")
    assert a.condition == And((
        cat("file"),
        eq("event.action", "modification"),
        Or((P("process.name", Op.IN, "docker", "Docker Desktop", cased=True),
            P("process.name", Op.WILDCARD, pat("com.docker", ANY), cased=True))),
        P("file.Ext.header_bytes", Op.IN, pat("cffaedfe", ANY), pat("cafebabe", ANY)),
        P("file.path", Op.IN, pat("/tmp/", ANY), pat("/private/tmp/", ANY),
          pat("/Users/Shared/", ANY), pat("/Users/", ANY, "/Public/", ANY),
          pat("/Users/", ANY, "/Downloads/", ANY), pat("/Users/", ANY, "/Desktop/", ANY),
          pat("/Users/", ANY, "/Documents/", ANY), cased=True),
    ))


# ---- sequences and samples ---------------------------------------------------------------


def test_rwx_memory_sample() -> None:
    a = analyze("rules/linux/execution_netcon_from_rwx_mem_region_binary.toml")
    seq = a.sequence
    assert seq is not None and seq.kind == "sample"
    assert seq.by == ("host.id", "process.pid", "process.name")
    assert seq.maxspan is None and seq.until is None
    first: Node = And((cat("process"), eq("host.os.type", "linux"),
                       eq("auditd.data.syscall", "mprotect"), eq("auditd.data.a2", "7"),
                       Not(P("process.name", Op.IN, "httpd", "java", "node", "code", "apache2",
                             cased=True))))
    second: Node = And((cat("network"), eq("host.os.type", "linux"), eq("event.type", "start"),
                        eq("event.action", "connection_attempted"),
                        Not(P("destination.ip", Op.CIDR, "127.0.0.0/8", "169.254.0.0/16",
                              "224.0.0.0/4", "::1"))))
    assert [s.condition for s in seq.steps] == [first, second]
    assert [s.category for s in seq.steps] == ["process", "network"]
    assert [st.command for st in a.stages] == ["sample step 1", "sample step 2"]
    assert a.stages[1].by == ("host.id", "process.pid", "process.name")
    assert a.condition == Or((first, second))


def test_k8s_forbidden_request_sequence_member_keys_and_backquotes() -> None:
    a = analyze("rules/cross-platform/execution_d4c_k8s_mda_forbidden_direct_interactive_"
                "kubernetes_api_request.toml")
    seq = a.sequence
    assert seq is not None and seq.kind == "sequence"
    assert seq.by == () and seq.maxspan == 1.0 and seq.maxspan_text == "1s"
    pod = "kubernetes.audit.user.extra.authentication.kubernetes.io/pod-name"
    assert [s.by for s in seq.steps] == [("orchestrator.resource.name",), (pod,)]
    first = seq.steps[0].condition
    assert isinstance(first, And)
    assert first.args[-2:] == (eq("process.interactive", True),
                               P("container.id", Op.WILDCARD, pat(ANY), cased=True))
    assert seq.steps[1].condition == And((
        eq("data_stream.dataset", "kubernetes.audit_logs"),
        P("kubernetes.audit.stage", Op.IN, "ResponseComplete", "ResponseStarted", cased=True),
        eq("kubernetes.audit.annotations.authorization_k8s_io/decision", "forbid"),
    ))
    assert seq.steps[1].category is None


def test_missing_events_after_alert() -> None:
    a = analyze("rules/cross-platform/defense_evasion_missing_events_after_alert.toml")
    seq = a.sequence
    assert seq is not None
    assert seq.by == ("host.id",) and seq.maxspan == 300.0 and seq.maxspan_text == "5m"
    alert = eq("data_stream.dataset", "endpoint.alerts")
    gone = P("event.category", Op.IN, "process", "library", "registry", "network", "dns",
             "file", cased=True)
    assert [(s.condition, s.missing) for s in seq.steps] == [(alert, False), (gone, True)]
    assert a.condition == alert  # a missing event never appears in a finding
    assert "missing event" in a.stages[1].notes[0]


def test_okta_mfa_bombing_runs_and_until() -> None:
    a = analyze("rules/integrations/okta/credential_access_okta_mfa_bombing_via_push_"
                "notifications.toml")
    seq = a.sequence
    assert seq is not None and seq.by == ("okta.actor.id",) and seq.maxspan == 600.0
    assert [s.runs for s in seq.steps] == [5]
    okta = eq("data_stream.dataset", "okta.system")
    assert seq.steps[0].condition == And((okta, Or((
        eq("okta.event_type", "user.mfa.okta_verify.deny_push"),
        And((eq("okta.event_type", "user.authentication.auth_via_mfa"),
             eq("okta.debug_context.debug_data.factor", "OKTA_VERIFY_PUSH"),
             eq("okta.outcome.reason", "INVALID_CREDENTIALS"))),
    ))))
    assert seq.until is not None
    assert seq.until.condition == And((
        okta,
        P("okta.event_type", Op.IN, "user.authentication.sso", "user.authentication.auth_via_mfa",
          "user.authentication.verify", "user.session.start", cased=True),
        eq("okta.outcome.result", "SUCCESS"),
    ))
    assert [st.command for st in a.stages] == ["sequence step 1", "until"]
    assert a.condition == seq.steps[0].condition


def test_ftp_bruteforce_runs_and_tail_pipe() -> None:
    a = analyze("rules/_deprecated/credential_access_potential_successful_linux_ftp_"
                "bruteforce.toml")
    seq = a.sequence
    assert seq is not None
    assert seq.by == ("host.id", "auditd.data.addr", "related.user")
    assert seq.maxspan == 5.0 and [s.runs for s in seq.steps] == [10, None]
    common = [cat("authentication"), eq("host.os.type", "linux"),
              eq("event.action", "authenticated"), eq("auditd.data.terminal", "ftp")]
    addr = [P("auditd.data.addr", Op.EXISTS, cased=True),
            P("auditd.data.addr", Op.NE, "0.0.0.0", cased=True),
            P("auditd.data.addr", Op.NE, "::", cased=True)]
    assert seq.steps[0].condition == And((*common, eq("event.outcome", "failure"), *addr))
    assert seq.steps[1].condition == And((*common, eq("event.outcome", "success"), *addr))
    tail = a.stages[-1]
    assert (tail.command, tail.kind, tail.text) == ("tail", StageKind.TRANSFORM, "| tail 1")
    assert a.stages[0].notes[:2] == ("joined on host.id, auditd.data.addr, related.user",
                                     "within 5s")


@pytest.mark.parametrize("name", [
    "rules/cross-platform/defense_evasion_missing_events_after_alert.toml",
    "rules/linux/execution_netcon_from_rwx_mem_region_binary.toml",
])
def test_sequence_spans_point_at_members(name: str) -> None:
    a = analyze(name)
    q = query_of(name)
    assert a.sequence is not None
    for step in a.sequence.steps:
        assert step.span is not None and step.span.start is not None
        assert q[step.span.start : step.span.end] == step.text
        assert step.text.lstrip("!").startswith("[")
