"""KQL on Elastic's detection rules: every ``kuery`` query parses, round-trips and lowers; and
hand-checked predicates of real rules, written by reading each rule's query."""

from __future__ import annotations

import tomllib
from functools import cache

from conftest import ELASTIC
from ruleatlas.languages.kql import analyze_kql_query, generate, lower, parse
from ruleatlas.model import (
    And,
    Condition,
    Node,
    Not,
    Op,
    Opaque,
    Or,
    Pattern,
    Predicate,
    StageKind,
    Value,
    Wild,
    predicates,
    walk,
)

ANY = Wild.ANY


@cache
def corpus_kql() -> tuple[tuple[str, str], ...]:
    """(path under the corpus, query) of every KQL rule in rules/ and rules_building_block/."""
    out: list[tuple[str, str]] = []
    for folder in ("rules", "rules_building_block"):
        for path in sorted((ELASTIC / folder).rglob("*.toml")):
            text = path.read_text(encoding="utf-8")
            if "kuery" not in text:
                continue
            rule = tomllib.loads(text).get("rule", {})
            if rule.get("language") == "kuery":
                out.append((path.relative_to(ELASTIC).as_posix(), rule["query"]))
    return tuple(out)


def query(path: str) -> str:
    return dict(corpus_kql())[path]


def tree(path: str) -> Node:
    q = query(path)
    return lower(parse(q), q)


def eq(f: str, v: Value) -> Predicate:
    return Predicate(f, Op.EQ, (v,), cased=True)


def wc(f: str, *parts: str | Wild) -> Predicate:
    return Predicate(f, Op.WILDCARD, (Pattern(parts),), cased=True)


def isin(f: str, *vals: Value) -> Predicate:
    return Predicate(f, Op.IN, vals, cased=True)


def has(f: str, *vals: Value) -> Predicate:
    return Predicate(f, Op.CONTAINS, vals)


def ex(f: str) -> Predicate:
    return Predicate(f, Op.EXISTS, ())


def pat(*parts: str | Wild) -> Pattern:
    return Pattern(parts)


def preds_on(node: Node, field: str) -> list[Predicate]:
    return [p for p, _ in predicates(node) if p.field == field]


# ---- the whole corpus ------------------------------------------------------------------------


def test_every_kql_query_parses_round_trips_and_lowers() -> None:
    qs = corpus_kql()
    building_blocks = sum(1 for p, _ in qs if p.startswith("rules_building_block/"))
    assert (len(qs) - building_blocks, building_blocks) == (737, 55)
    for path, q in qs:
        t = parse(q)
        assert parse(generate(t)) == t, path
        a = analyze_kql_query(q)
        assert a.problems == (), path
        assert a.stages[0].kind is StageKind.FILTER, path
        assert not any(isinstance(n, (Opaque, Condition)) for n in walk(a.condition)), path
        assert list(predicates(a.condition)), path


def test_corpus_predicates_keep_their_written_text_and_place() -> None:
    for path, q in corpus_kql():
        for p, _ in predicates(analyze_kql_query(q).condition):
            assert p.span is not None and p.text, path
            assert p.span.start is not None and p.span.end is not None
            written = q[p.span.start : p.span.end]
            if p.text != written:  # some values of a list: "field: v1 or v2" as written
                field, _, values = p.text.partition(": ")
                assert field in q[: p.span.start], path
                assert all(v in written for v in values.split(" or ")), path


# ---- hand-checked rules --------------------------------------------------------------------


def test_gcp_logging_bucket_deletion_wildcards_in_a_dotted_value() -> None:
    assert tree("rules/integrations/gcp/defense_evasion_gcp_logging_bucket_deletion.toml") == And((
        eq("data_stream.dataset", "gcp.audit"),
        wc("event.action", "google.logging.v", ANY, ".ConfigServiceV", ANY, ".DeleteBucket"),
        eq("event.outcome", "success"),
    ))


def test_sudo_buffer_overflow_and_inside_a_value_list() -> None:
    # process.args:(*\\ and ("-i" or "-s")): an escaped backslash after a wildcard, and a list
    # whose values must all match (the And of the list joins the query's And).
    t = tree("rules/_deprecated/privilege_escalation_sudo_buffer_overflow.toml")
    assert t == And((
        eq("event.category", "process"),
        eq("event.type", "start"),
        isin("process.name", "sudo", "sudoedit"),
        wc("process.args", ANY, "\\"),
        isin("process.args", "-i", "-s"),
    ))


def test_okta_proxy_rule_boolean_exists_and_negated_wildcard() -> None:
    path = ("rules/integrations/okta/"
            "credential_access_multiple_auth_events_from_single_device_behind_proxy.toml")
    assert tree(path) == And((
        eq("data_stream.dataset", "okta.system"),
        Not(wc("okta.actor.id", "okta", ANY)),
        ex("okta.debug_context.debug_data.dt_hash"),
        wc("okta.event_type", "user.authentication", ANY),
        eq("okta.security_context.is_proxy", True),
    ))


def test_zoom_meeting_without_passcode_is_a_missing_field() -> None:
    path = "rules/cross-platform/initial_access_zoom_meeting_with_no_passcode.toml"
    assert tree(path) == And((
        eq("event.type", "creation"),
        eq("event.module", "zoom"),
        eq("data_stream.dataset", "zoom.webhook"),
        eq("event.action", "meeting.created"),
        Not(ex("zoom.meeting.password")),
    ))


def test_okta_administrator_role_list_and_contains_pattern() -> None:
    path = "rules/integrations/okta/persistence_administrator_role_assigned_to_okta_user.toml"
    assert tree(path) == And((
        eq("data_stream.dataset", "okta.system"),
        isin("event.action", "user.account.privilege.grant", "group.privilege.grant"),
        wc("okta.debug_context.debug_data.flattened.privilegeGranted", ANY, "administrator",
           ANY),
    ))


def test_exchange_transport_rule_quoted_list() -> None:
    path = "rules/integrations/o365/exfiltration_exchange_transport_rule_modification.toml"
    assert tree(path) == And((
        eq("data_stream.dataset", "o365.audit"),
        eq("event.provider", "Exchange"),
        eq("event.category", "web"),
        isin("event.action", "Remove-TransportRule", "Disable-TransportRule"),
        eq("event.outcome", "success"),
    ))


def test_gcp_role_grant_nested_query_prefixes_its_fields() -> None:
    path = "rules/integrations/gcp/persistence_gcp_service_account_impersonation_role_grant.toml"
    deltas = "gcp.audit.service_data.policy_delta.binding_deltas"
    assert tree(path) == And((
        eq("data_stream.dataset", "gcp.audit"),
        wc("event.action", "google.iam.admin.v", ANY, ".SetIAMPolicy"),
        eq("event.outcome", "success"),
        eq(f"{deltas}.action", "ADD"),
        isin(f"{deltas}.role", "roles/iam.serviceAccountTokenCreator",
             "roles/iam.serviceAccountUser", "roles/iam.serviceAccountOpenIdTokenCreator"),
    ))
    assert analyze_kql_query(query(path)).stages[0].notes == (
        "nested query: its fields are written with the nested path as prefix",)


def test_telnet_rule_lists_with_and_not_and_lone_wildcard() -> None:
    path = "rules/network/command_and_control_accepted_default_telnet_port_connection.toml"
    assert tree(path) == And((
        Or((
            isin("data_stream.dataset", "fortinet_fortigate.log", "network_traffic.flow",
                 "panw.panos", "pfsense.log", "sonicwall_firewall.log", "suricata.eve"),
            isin("event.category", "network", "network_traffic"),
        )),
        eq("event.type", "connection"),
        Not(isin("event.type", "denied", "end")),
        Not(isin("event.action", "Reject", "client-rst", "connection-denied", "connection-end",
                 "denied", "deny", "flow_denied", "flow_dropped", "flow_terminated",
                 "network_flow", "server-rst", "timeout")),
        Not(And((eq("event.action", "netflow_flow"),
                 Not(Predicate("network.packets", Op.GT, (1,)))))),
        Not(isin("network.application", "stretchoid-scanning", "traceroute")),
        eq("destination.port", "23"),
        Or((eq("network.protocol", "telnet"), Not(ex("network.protocol")),
            eq("data_stream.dataset", "fortinet_fortigate.log"))),
    ))


def test_localgroup_enumeration_escaped_windows_paths() -> None:
    t = tree("rules/windows/discovery_privileged_localgroup_membership.toml")
    assert isin("group.name", pat(ANY, "Admin", ANY), "RemoteDesktopUsers") in list(walk(t))
    assert wc("winlog.event_data.SubjectUserName", ANY, "$") in list(walk(t))
    (caller,) = preds_on(t, "winlog.event_data.CallerProcessName")
    assert caller.op is Op.IN and len(caller.values) == 32
    assert caller.values[:3] == ("-", "C:\\Windows\\System32\\VSSVC.exe",
                                 "C:\\Windows\\System32\\SearchIndexer.exe")
    assert caller.values[-4:] == (
        pat("C:\\Windows\\Temp\\rubrik_vmware", ANY, "\\snaptool.exe"),
        "C:\\Windows\\VeeamVssSupport\\VeeamGuestHelper.exe",
        pat("C:\\WindowsAzure\\", ANY, "WaAppAgent.exe"),
        pat("C:\\$WINDOWS.~BT\\Sources\\", ANY, ".exe"),
    )


def test_webshell_rule_escaped_parenthesis_quotes_and_colons() -> None:
    t = tree("rules/windows/persistence_webshell_detection.toml")
    nodes = list(walk(t))
    # process.args : (\(git or (*artisan* and *queue\:work*) or *rmdir* or ...): the plain
    # values make one "in" (where the first was written), the "and" group stays beside it;
    # both join the enclosing "or".
    (outer,) = [n for n in nodes if isinstance(n, Or) and isin(
        "process.args", "(git", pat(ANY, "rmdir", ANY), "mode CON", "ver", "ls", "mode",
        "dir") in n.args]
    i = outer.args.index(isin("process.args", "(git", pat(ANY, "rmdir", ANY), "mode CON", "ver",
                              "ls", "mode", "dir"))
    assert outer.args[i + 1] == And((wc("process.args", ANY, "artisan", ANY),
                                     wc("process.args", ANY, "queue:work", ANY)))
    assert eq("process.parent.args", "c:\\\\xampp\\\\htdocs\\\\open-audit\\\\index.php") in nodes
    assert wc("process.args", "E:\\Data\\CLM\\cession\\", ANY, ".bat") in nodes
    (cmd,) = [p for p in preds_on(t, "process.command_line")]
    assert cmd.values[1] == 'cmd.exe /s /c "mode CON"'
    assert cmd.values[-1] == pat(ANY, ".\\install\\awk.exe", ANY)


def test_posh_generic_backslash_r_in_a_quoted_string_is_a_carriage_return() -> None:
    # "\microsoft\windows\currentversion\explorer\runmru": Kibana's grammar reads \r in a
    # quoted string as CR (and keeps the other lone backslashes), so this value is not the
    # registry path the author meant.
    t = tree("rules_building_block/discovery_posh_generic.toml")
    values = [v for p in preds_on(t, "powershell.file.script_block_text") for v in p.values]
    assert "\\microsoft\\windows\\currentversion\\explorer\runmru" in values


def test_cloud_credential_paths_missing_or_makes_one_value_across_lines() -> None:
    # "*confluence/conf/server.xml" has no "or" after it: the unquoted value runs on to the
    # next line, as it does in Kibana.
    path = ("rules/linux/"
            "credential_access_kubernetes_and_cloud_credential_paths_via_process_args.toml")
    values = [v for p in preds_on(tree(path), "process.args") for v in p.values]
    assert pat(ANY, "confluence/conf/server.xml\n  ", ANY,
               "/.config/gcloud/application_default_credentials.json") in values
    assert pat(ANY, "/.config/gcloud/credentials.db") in values


def test_threat_intel_hash_wildcard_fields() -> None:
    path = "rules/threat_intel/threat_intel_indicator_match_hash.toml"
    assert tree(path) == Or((ex("file.hash.*"), ex("process.hash.*"), ex("dll.hash.*")))
    note = analyze_kql_query(query(path)).stages[0].notes[0]
    assert note.startswith("field names with '*' match every field of the pattern: ")
    assert "dll.hash.*" in note


def test_inbox_rule_unicode_escape_bool_case_and_le_range() -> None:
    path = "rules/integrations/o365/defense_evasion_exchange_new_inbox_rule_delete_or_move.toml"
    nodes = list(walk(tree(path)))
    assert eq("o365.audit.Parameters.BodyContainsWords", "\x00") in nodes
    assert Predicate("o365.audit.Parameters.WithinSizeRangeMinimum", Op.LE, (1023,)) in nodes
    # Kibana's typed literals are lowercase only: True is the text "True".
    assert eq("o365.audit.Parameters.DeleteMessage", "True") in nodes
    assert isin("o365.audit.Parameters.MoveToFolder", pat(ANY, "Deleted", ANY),
                pat(ANY, "Junk", ANY), pat(ANY, "RSS", ANY), pat(ANY, "Calendar", ANY)) in nodes


def test_kubernetes_secrets_list_question_mark_is_literal() -> None:
    path = ("rules/integrations/kubernetes/credential_access_kubernetes_secrets_list_cluster_"
            "and_sensitive_namespaces.toml")
    t = tree(path)
    nodes = list(walk(t))
    assert isin("kubernetes.audit.requestURI", "/api/v1/secrets",
                pat("/api/v1/secrets?limit", ANY), "/api/v1/namespaces/kube-system/secrets",
                pat("/api/v1/namespaces/kube-system/secrets?limit", ANY),
                "/api/v1/namespaces/default/secrets",
                pat("/api/v1/namespaces/default/secrets?limit", ANY)) in nodes
    # source.ip:(* and not (...)): the list's And joins the query's And
    assert isinstance(t, And)
    assert ex("source.ip") in t.args and Not(isin("source.ip", "::1", "127.0.0.1")) in t.args
    assert Not(isin("user.name", "system:kube-controller-manager",
                    "eks:cloud-controller-manager", "eks:kms-storage-migrator")) in nodes
    assert Not(eq("kubernetes.audit.user.groups", "system:serviceaccounts:ibm-csi")) in nodes


def test_suspicious_web_service_question_marks_are_not_wildcards() -> None:
    path = ("rules/macos/command_and_control_unusual_network_connection_to_suspicious_web_"
            "service.toml")
    first = preds_on(tree(path), "destination.domain")[0]
    assert first.op is Op.IN
    assert "?.docs.live.net" in first.values and "cdn??.space" in first.values
    assert pat("pastebin.", ANY) == first.values[0]


def test_dga_probability_float_range() -> None:
    path = "rules/integrations/dga/command_and_control_ml_dns_request_high_dga_probability.toml"
    assert tree(path) == Predicate("ml_is_dga.malicious_probability", Op.GT, (0.98,))


def test_gke_reverse_shell_field_with_slash_and_escaped_gt() -> None:
    path = "rules/integrations/gcp/execution_gcp_gke_pod_exec_potential_reverse_shell.toml"
    (cmd,) = [n for n in walk(tree(path)) if isinstance(n, And)
              and any(isinstance(a, Predicate) and a.field == "gcp.audit.labels.command.gke.io/"
                      "command" for a in n.args)]
    inner = cmd.args[-2]
    assert isinstance(inner, Predicate) and inner.op is Op.IN
    assert pat(ANY, "0\\>&1", ANY) in inner.values
    assert cmd.args[-1] == Not(isin("gcp.audit.labels.command.gke.io/command",
                                    pat(ANY, "127.0.0.1", ANY), pat(ANY, "localhost", ANY)))


def test_icmp_tunneling_networks_are_cidr_predicates() -> None:
    path = "rules/network/command_and_control_potential_icmp_tunneling_to_the_internet.toml"
    nodes = list(walk(tree(path)))
    assert Predicate("source.ip", Op.CIDR, ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                           "FC00::/7")) in nodes
    assert Or((isin("network_traffic.icmp.request.type", "8", "128"),
               isin("icmp.request.type", "8", "128"))) in nodes
    assert Predicate("network.bytes", Op.GE, (256,)) in nodes
    (dst,) = preds_on(tree(path), "destination.ip")
    assert dst.op is Op.CIDR and dst.values[-4:] == ("::1", "FC00::/7", "FE80::/10", "FF00::/8")


def test_vnc_port_range_bounds() -> None:
    path = ("rules/network/"
            "command_and_control_vnc_virtual_network_computing_from_the_internet.toml")
    nodes = list(walk(tree(path)))
    assert Predicate("destination.port", Op.GE, (5800,)) in nodes
    assert Predicate("destination.port", Op.LE, (5810,)) in nodes
    assert Predicate("destination.ip", Op.CIDR,
                     ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")) in nodes


def test_posh_obfuscation_text_field_values_are_contains_and_groups_stay() -> None:
    # powershell.file.script_block_text is an analysed text field: Kibana's match_phrase finds
    # the phrase inside the script, case-insensitively, so each value is "contains".
    t = tree("rules/_deprecated/defense_evasion_posh_obfuscation.toml")
    f = "powershell.file.script_block_text"
    nodes = list(walk(t))
    assert And((has(f, "ConvertTo-SecureString"), has(f, "PtrToStringAuto"))) in nodes
    assert And((has(f, "Set-Variable", "SV", "Set-Item"), has(f, "OFS"))) in nodes
    # "*MDR*" is quoted: its stars are literal characters, not wildcards
    assert And((has(f, "*MDR*"), has(f, "Name[3,11,2]"))) in nodes
    assert Not(And((has(f, "Copyright (c) 2018 Ansible Project",
                        "Export-ModuleMember -Function Add-CSharpType"),
                    has(f, "[Object]$AnsibleModule", "$AnsibleModule.Tmpdir")))) in nodes


def test_posh_compressed_text_field_list_and_float_range() -> None:
    t = tree("rules/windows/defense_evasion_posh_compressed.toml")
    f = "powershell.file.script_block_text"
    assert t == And((
        eq("event.category", "process"),
        eq("host.os.type", "windows"),
        Predicate("powershell.file.script_block_entropy_bits", Op.GE, (4.5,)),
        has(f, "System.IO.Compression.DeflateStream", "System.IO.Compression.GzipStream",
            "IO.Compression.DeflateStream", "IO.Compression.GzipStream"),
        has(f, "FromBase64String"),
        Not(eq("user.id", "S-1-5-18")),
    ))
    assert analyze_kql_query(query("rules/windows/defense_evasion_posh_compressed.toml")).stages[
        0].notes == ("analysed text fields (values match inside the text, any case): "
                     "powershell.file.script_block_text",)


def test_webshell_caseless_field_is_not_cased() -> None:
    t = tree("rules/windows/persistence_webshell_detection.toml")
    exe = ("cmd.exe", "cscript.exe", "powershell.exe", "pwsh.exe", "powershell_ise.exe",
           "wmic.exe", "wscript.exe")
    assert Or((isin("process.name", *exe),
               Predicate("process.name.caseless", Op.IN, exe))) in list(walk(t))
