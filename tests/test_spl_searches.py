"""SPL analysis of real ESCU searches, each expectation checked by hand against the search text.

Every test names the corpus file it reads; the expected predicates, stages and group-by were
read off the search as written in ``security_content/detections``.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest
import yaml

from conftest import SPLUNK
from ruleatlas.languages.spl import analyze_query, parse
from ruleatlas.languages.spl import ast as S
from ruleatlas.model import (
    Analysis,
    Condition,
    FieldRef,
    Not,
    Op,
    Opaque,
    Pattern,
    Phase,
    Predicate,
    Regex,
    StageKind,
    Wild,
    predicates,
    walk,
)
from ruleatlas.sources.splunk import load_macros

DETECTIONS = SPLUNK / "detections"


@cache
def macros() -> dict[str, Any]:
    return load_macros(SPLUNK)


@cache
def doc(name: str) -> dict[str, Any]:
    path = next(DETECTIONS.rglob(name))
    return yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)


def analyze(name: str) -> Analysis:
    d = doc(name)
    return analyze_query(d["search"], macros(), with_drilldowns=d.get("drilldown_searches"))


def preds(a: Analysis, phase: Phase | None = None) -> list[tuple[Predicate, bool]]:
    out = list(predicates(a.condition)) + list(predicates(a.result_condition))
    return [(p, pol) for p, pol in out if phase is None or p.phase is phase]


def find(a: Analysis, field: str) -> list[tuple[Predicate, bool]]:
    return [(p, pol) for p, pol in preds(a) if p.field == field]


def pat(*parts: str | Wild) -> Pattern:
    return Pattern(tuple(parts))


ANY = Wild.ANY


# ---- the example page's rule ------------------------------------------------------------


def test_example_rule_predicates() -> None:
    a = analyze("powershell_invoke_wmiexec_usage.yml")
    got = {(p.field, p.op, p.values) for p, _ in preds(a)}
    assert ("EventCode", Op.EQ, ("4104",)) in got
    assert ("ScriptBlockText", Op.IN, (pat(ANY, "invoke-wmiexec", ANY),)) in got


def test_example_rule_macro_expands_to_sources() -> None:
    a = analyze("powershell_invoke_wmiexec_usage.yml")
    sources = {p.values[0] for p, _ in find(a, "source")}
    assert sources == {"WinEventLog:Microsoft-Windows-PowerShell/Operational",
                       "XmlWinEventLog:Microsoft-Windows-PowerShell/Operational"}
    assert a.stages[0].text.startswith("`powershell` EventCode=4104")
    assert a.stages[0].expanded and a.stages[0].expanded.startswith("(source=")


def test_example_rule_stages() -> None:
    a = analyze("powershell_invoke_wmiexec_usage.yml")
    assert [s.command for s in a.stages] == ["search", "stats", "convert", "convert", "search"]
    assert a.stages[1].kind is StageKind.AGGREGATE
    assert a.stages[2].text == "| `security_content_ctime(firstTime)`"
    assert a.stages[2].expanded == 'convert timeformat="%Y-%m-%dT%H:%M:%S" ctime(firstTime)'
    last = a.stages[-1]
    assert last.kind is StageKind.MACRO and "filter macro (empty by default)" in last.notes
    assert a.group_by == ("Computer", "EventCode", "ScriptBlockText")


def test_example_rule_drilldowns_parse() -> None:
    a = analyze("powershell_invoke_wmiexec_usage.yml")
    dd = a.extra["drilldowns"]
    assert len(dd) == 2 and all(not d["problems"] for d in dd)
    assert dd[1]["stages"][0]["command"] == "from"
    first = dd[0]["stages"]
    assert set(first[0]) >= {"index", "command", "text", "kind", "expanded", "condition"}
    assert first[0]["kind"] == "macro" and first[0]["condition"] is None
    cond = first[1]["condition"]
    assert (cond["field"], cond["op"], cond["values"]) == ("Computer", "eq", ["$Computer$"])


# ---- tstats on each datamodel -------------------------------------------------------------


def test_tstats_endpoint_processes_datamodel_field() -> None:
    a = analyze("getcurrent_user_with_powershell.yml")
    ps = find(a, "Processes.process_name")
    assert ps and ps[0][0].op is Op.EQ and ps[0][0].values == ("powershell.exe",)
    assert ps[0][0].datamodel == "Endpoint.Processes"
    procs = {p.values for p, _ in find(a, "Processes.process")}
    assert (pat(ANY, "System.Security.Principal.WindowsIdentity", ANY),) in procs
    assert (pat(ANY, "GetCurrent()", ANY),) in procs  # parentheses inside a bare value
    assert a.stages[0].command == "tstats" and a.stages[0].kind is StageKind.AGGREGATE
    assert a.group_by == ("dest", "user", "parent_process", "process_name", "process",
                          "process_id", "parent_process_id")


def test_tstats_endpoint_filesystem_ne_with_escapes() -> None:
    a = analyze("email_files_written_outside_of_the_outlook_directory.yml")
    names = {p.values for p, _ in find(a, "Filesystem.file_name")}
    assert names == {(pat(ANY, ".pst"),), (pat(ANY, ".ost"),)}
    ne = [p for p, _ in find(a, "Filesystem.file_path")]
    assert all(p.op is Op.NE for p in ne)
    # "C:\\Users\\*" in SPL is one backslash per pair
    assert ne[0].values == (pat("C:\\Users\\", ANY, "\\My Documents\\Outlook Files\\", ANY),)
    assert ne[0].datamodel == "Endpoint.Filesystem"


def test_tstats_endpoint_registry_unc_path() -> None:
    a = analyze("remote_registry_key_modifications.yml")
    (p, pol), = find(a, "Registry.registry_path")
    assert pol and p.op is Op.WILDCARD and p.values == (pat("\\\\", ANY),)
    assert p.datamodel == "Endpoint.Registry"
    assert a.group_by == ("dest", "user")  # drop_dm_object_name(Registry)


def test_tstats_alerts_in_list_and_quoted_drop_dm() -> None:
    a = analyze("detect_critical_alerts_from_security_tools.yml")
    (p, _), = find(a, "Alerts.severity")
    assert p.op is Op.IN and p.values == ("high", "critical")
    assert p.datamodel == "Alerts.Alerts"
    assert a.group_by == ("signature", "app", "severity", "description", "source", "id", "dest")


def test_tstats_authentication_then_where_after_eval() -> None:
    a = analyze("detect_new_login_attempts_to_routers.yml")
    (p, _), = find(a, "Authentication.dest_category")
    assert p.values == ("router",) and p.phase is Phase.EVENT
    (w, _), = find(a, "isOutlier")
    assert w.phase is Phase.RESULT and w.cased and w.values == ("1",)
    assert "isOutlier" in a.extra["computed_fields"]


def test_tstats_change_and_explicit_and() -> None:
    a = analyze("okta_multi_factor_authentication_disabled.yml")
    fields = {p.field: p.values for p, _ in preds(a)}
    assert fields["sourcetype"] == ("OktaIM2:log",)
    assert fields["All_Changes.command"] == ("user.mfa.factor.deactivate",)
    assert fields["All_Changes.action"] == ("modified",)
    assert a.group_by == ("user", "result", "command", "sourcetype", "src")


def test_tstats_nodename_is_not_an_indicator() -> None:
    a = analyze("detect_usb_device_insertion.yml")
    assert not find(a, "nodename")
    ids = {p.values[0] for p, _ in find(a, "All_Changes.result_id")}
    assert ids == {"4663", "4656"}


def test_tstats_email_exists_and_search_after_eval() -> None:
    a = analyze("email_attachments_with_lots_of_spaces.yml")
    (p, _), = find(a, "All_Email.file_name")
    assert p.op is Op.EXISTS
    (s, _), = find(a, "space_ratio")
    assert s.op is Op.GE and s.values == ("0.1",) and s.phase is Phase.RESULT
    assert "recipient_user" in a.extra["computed_fields"]  # rex named group


def test_tstats_intrusion_detection_cidr_values() -> None:
    a = analyze("internal_vulnerability_scan.yml")
    (p, _), = find(a, "IDS_Attacks.src")
    assert p.op is Op.IN and p.values == ("10.0.0.0/8", "192.168.0.0/16", "172.16.0.0/12")
    assert p.datamodel == "Intrusion_Detection.IDS_Attacks"


def test_tstats_network_resolution_threshold_where() -> None:
    a = analyze("clients_connecting_to_multiple_dns_servers.yml")
    (p, _), = find(a, "DNS.message_type")
    assert p.values == ("QUERY",) and p.datamodel == "Network_Resolution.DNS"
    assert a.result_condition == Predicate("dest_count", Op.GT, ("5",), cased=True)


def test_tstats_network_sessions_subsearch_is_opaque() -> None:
    a = analyze("detect_unauthorized_assets_by_mac_address.yml")
    opaque = [n for n in walk(a.result_condition) if isinstance(n, Opaque)]
    assert opaque and "subsearch" in opaque[0].reason
    assert isinstance(a.result_condition, Not)


def test_tstats_network_traffic_regex_and_join() -> None:
    a = analyze("dllhost_with_no_command_line_arguments_with_network.yml")
    (r, _), = find(a, "process")
    assert r.op is Op.REGEX and r.values == (Regex(r"(?i)(dllhost\.exe.{0,4}$)"),)
    (b, _pol), = find(a, "Processes.action")
    assert b.op is Op.NE and b.values == ("blocked",)
    assert "join" in [s.command for s in a.stages]


def test_tstats_risk_in_or_and() -> None:
    a = analyze("okta_risk_threshold_exceeded.yml")
    assert any(p.datamodel == "Risk.All_Risk" for p, _ in preds(a))


def test_tstats_vulnerabilities_or_of_eq() -> None:
    a = analyze("spectre_and_meltdown_vulnerable_systems.yml")
    cves = {p.values[0] for p, _ in find(a, "Vulnerabilities.cve")}
    assert cves == {"CVE-2017-5753", "CVE-2017-5715", "CVE-2017-5754"}


def test_tstats_web_status() -> None:
    a = analyze("detect_web_traffic_to_dynamic_domain_providers.yml")
    (p, _), = find(a, "Web.status")
    assert p.values == ("200",) and p.datamodel == "Web.Web"


def test_tstats_updates_renames_with_quotes() -> None:
    a = analyze("no_windows_updates_in_a_time_frame.yml")
    assert a.group_by == ("Host", "Update Status", "Product")
    (p, _), = find(a, "Updates.vendor_product")
    assert p.values == ("Microsoft Windows",)


def test_tstats_uba_nodename_and_two_drops() -> None:
    a = analyze("suspicious_email___uba_anomaly.yml")
    (p, _), = find(a, "All_UEBA_Events.UEBA_Anomalies.uba_model")
    assert p.values == ("SuspiciousEmailDetectionModel",)
    assert "uba_model" in a.group_by


def test_tstats_certificates_like_in_eval_then_where() -> None:
    a = analyze("ssl_certificates_with_punycode.yml")
    (w, _), = find(a, "punycode")
    assert w.phase is Phase.RESULT and w.values == ("1",)
    assert "cyberchef" in [s.command for s in a.stages]  # unknown command kept


def test_from_datamodel_generating_command() -> None:
    a = analyze("identify_new_user_accounts.yml")
    assert a.stages[0].command == "from" and a.stages[0].kind is StageKind.GENERATE
    (p, _), = find(a, "empStatus")
    assert p.values == ("Accounts created in last week",)


# ---- search syntax ------------------------------------------------------------------------


def test_quoted_field_names_and_not_groups() -> None:
    a = analyze("detection_of_dns_tunnels.yml")
    negs = [(p, pol) for p, pol in find(a, "DNS.src_category")]
    assert negs and all(not pol for _, pol in negs)
    q = [(p, pol) for p, pol in find(a, "DNS.query") if p.op is Op.WILDCARD]
    assert q and q[0][0].values == (pat(ANY, ".in-addr.arpa"),) and not q[0][1]


def test_escaped_quote_in_bare_value() -> None:
    a = analyze("kubernetes_create_or_update_privileged_pod.yml")
    key = "requestObject.metadata.annotations.kubectl.kubernetes.io/last-applied-configuration"
    (p, _), = find(a, key)
    assert p.values == (pat(ANY, '"privileged":true', ANY),)


def test_or_binds_tighter_than_and_in_search() -> None:
    a = analyze("kubernetes_create_or_update_privileged_pod.yml")
    verbs = [p for p, _ in find(a, "verb")]
    assert {p.values[0] for p in verbs} == {"create", "update"}
    # objectRef.resource=pods verb=create OR verb=update X  ==  pods AND (create OR update) AND X
    tree = parse("a=1 b=2 OR b=3 c=4").commands[0].search
    assert isinstance(tree, S.And) and len(tree.args) == 3


def test_quoted_field_in_list_with_comma_inside_value() -> None:
    a = analyze("pingid_multiple_failed_mfa_requests_for_user.yml")
    (p, _), = find(a, "result.status")
    assert p.values == ("FAILURE,authFail", "UNSUCCESSFUL_ATTEMPT")
    (w, _), = find(a, "mfa_prompts")
    assert w.op is Op.GE and w.phase is Phase.RESULT
    assert a.group_by == ("user", "reason", "_time")


def test_not_and_ne_differ() -> None:
    a = analyze_query("index=x NOT user=bob host!=dc1", {})
    (u, upol), = [(p, pol) for p, pol in predicates(a.condition) if p.field == "user"]
    (h, hpol), = [(p, pol) for p, pol in predicates(a.condition) if p.field == "host"]
    assert u.op is Op.EQ and not upol  # NOT user=bob: also true when user is missing
    assert h.op is Op.NE and hpol  # host!=dc1: host must exist


def test_time_modifiers_are_not_predicates() -> None:
    a = analyze_query("index=main earliest=-24h latest=now sourcetype=x", {})
    assert {p.field for p, _ in predicates(a.condition)} == {"index", "sourcetype"}


def test_bare_terms_and_term_case() -> None:
    a = analyze_query('mimikatz TERM(10.0.0.1) CASE(Admin) "two words"', {})
    ps = [p for p, _ in predicates(a.condition)]
    assert all(p.field is None and p.op is Op.KEYWORD for p in ps)
    assert [p.values[0] for p in ps] == ["mimikatz", "10.0.0.1", "Admin", "two words"]
    assert [p.cased for p in ps] == [False, False, True, False]


def test_string_escapes() -> None:
    a = analyze_query(r'path="C:\\Windows\\System32\\*" q="say \"hi\""', {})
    p, q = (p for p, _ in predicates(a.condition))
    assert p.values == (pat("C:\\Windows\\System32\\", ANY),)
    assert q.values == ('say "hi"',)


def test_comments_are_not_macros() -> None:
    a = analyze_query("index=a ```a comment with `backticks` ``` user=x", {})
    assert {p.field for p, _ in predicates(a.condition)} == {"index", "user"}
    assert not a.problems


def test_macro_with_arguments_and_dollar_substitution() -> None:
    from ruleatlas.model import Macro

    m = {"m(2)": Macro("m", 'field=$a$ other="$b$"', ("a", "b")),
         "outer": Macro("outer", "`m(1, two words)` extra=1")}
    a = analyze_query("`outer` | stats count", m)
    got = {(p.field, p.values[0]) for p, _ in predicates(a.condition)}
    assert got == {("field", "1"), ("other", "two words"), ("extra", "1")}
    assert a.extra["macros"] == ["outer", "m(2)"]


def test_macro_cycle_is_reported_not_fatal() -> None:
    from ruleatlas.model import Macro

    m = {"a": Macro("a", "`b` x=1"), "b": Macro("b", "`a` y=2")}
    a = analyze_query("`a`", m)
    assert any(p.code == "macro-cycle" for p in a.problems)


def test_unknown_macro_is_a_located_warning_and_opaque() -> None:
    a = analyze_query("index=a `nope(1)` user=x | `missing_stage`", {})
    codes = [(p.code, p.severity) for p in a.problems]
    assert codes == [("unknown-macro", "warning"), ("unknown-macro", "warning")]
    assert a.problems[0].location is not None and a.problems[0].location.col == 9
    assert any(isinstance(n, Opaque) for n in walk(a.condition))
    assert a.stages[1].kind is StageKind.OPAQUE


# ---- where / eval -------------------------------------------------------------------------


def test_where_functions_become_predicates() -> None:
    a = analyze_query(
        'index=a | where like(CommandLine, "%-enc%") AND match(Image, "(?i)\\\\cmd\\.exe$") '
        'AND isnotnull(User) AND cidrmatch("10.0.0.0/8", src) AND in(port, "22", "3389") '
        "AND isnull(x)", {})
    got = {(p.field, p.op, p.negated) for p, _ in predicates(a.condition)}
    assert got >= {("CommandLine", Op.WILDCARD, False), ("Image", Op.REGEX, False),
                   ("User", Op.EXISTS, False), ("src", Op.CIDR, False), ("port", Op.IN, False),
                   ("x", Op.EXISTS, True)}
    like = next(p for p, _ in predicates(a.condition) if p.field == "CommandLine")
    assert like.values == (pat(ANY, "-enc", ANY),) and like.cased


def test_where_arithmetic_is_a_condition() -> None:
    a = analyze_query("index=a | where len(cmd) > 100 AND (bytes_out / bytes_in) >= 10", {})
    conds = [n for n in walk(a.condition) if isinstance(n, Condition)]
    assert len(conds) == 2
    assert conds[0].fields == ("cmd",) and conds[1].fields == ("bytes_out", "bytes_in")


def test_where_field_to_field_and_searchmatch() -> None:
    a = analyze_query('index=a | where src=dest OR searchmatch("user=admin*")', {})
    ps = {p.field: p for p, _ in predicates(a.condition)}
    assert ps["src"].values == (FieldRef("dest"),)
    assert ps["user"].op is Op.WILDCARD


def test_eval_concatenation_and_computed_fields() -> None:
    a = analyze_query('index=a | eval k=user . "@" . host, n=mvcount(x) | where k="a@b"', {})
    assert a.extra["computed_fields"] == ["k", "n"]


def test_rex_and_regex_commands() -> None:
    a = analyze_query('index=a | rex field=cmd "(?<exe>[^ ]+)" | regex exe!="^C:"', {})
    (p, _), = [(p, pol) for p, pol in predicates(a.condition) if p.field == "exe"]
    assert p.op is Op.REGEX and p.negated and p.values == (Regex("^C:"),)
    assert "exe" in a.extra["computed_fields"]


# ---- pipeline shapes ----------------------------------------------------------------------


def test_leading_generating_commands() -> None:
    for q, cmd in [("| inputlookup x.csv | where a=1", "inputlookup"),
                   ("| rest /services/apps/local | table title", "rest"),
                   ("| mstats avg(cpu) where index=m by host", "mstats"),
                   ("| from datamodel:Endpoint.Processes | stats count", "from")]:
        p = parse(q)
        assert p.leading_pipe and p.commands[0].name == cmd


def test_subsearch_in_join_and_append() -> None:
    p = parse("index=a | join user [ search index=b | fields user ] | append [| inputlookup l]")
    join, append = p.commands[1], p.commands[2]
    sub = next(i for i in join.items if type(i).__name__ == "Sub")
    assert sub.pipeline.commands[0].name == "search"  # type: ignore[union-attr]
    sub2 = next(i for i in append.items if type(i).__name__ == "Sub")
    assert sub2.pipeline.leading_pipe  # type: ignore[union-attr]


def test_eventstats_threshold_is_result_phase() -> None:
    a = analyze_query("index=a | eventstats count as c by user | where c > 3", {})
    assert a.stages[1].kind is StageKind.AGGREGATE and a.stages[1].by == ("user",)
    assert a.result_condition == Predicate("c", Op.GT, ("3",), cased=True)
    assert a.condition == Predicate("index", Op.EQ, ("a",))


def test_rename_wildcards_update_group_by() -> None:
    a = analyze_query("| tstats count from datamodel=Endpoint.Processes by Processes.dest "
                      "Processes.user | rename Processes.* as proc_* | rename proc_user as u", {})
    assert a.group_by == ("proc_dest", "u")


@pytest.mark.parametrize("name", ["powershell_invoke_wmiexec_usage.yml",
                                  "getcurrent_user_with_powershell.yml"])
def test_predicate_text_is_as_written(name: str) -> None:
    a = analyze(name)
    search = doc(name)["search"]
    for p, _ in preds(a, Phase.EVENT):
        if p.field not in ("source",):
            assert (p.text and p.text in search) or p.text in (a.stages[0].expanded or "")


def test_case_and_term_values_in_comparisons() -> None:
    a = analyze_query("index=a user=CASE(Admin) cmd=TERM(a*)", {})
    ps = {p.field: p for p, _ in predicates(a.condition)}
    assert (ps["user"].op, ps["user"].values, ps["user"].cased) == (Op.EQ, ("Admin",), True)
    assert ps["cmd"].values == (pat("a", ANY),) and not ps["cmd"].cased


def test_where_parts_carry_their_own_text() -> None:
    a = analyze_query('index=a | where a="B(" AND (len(x) > 10 OR lower(y)="z")', {})
    (p, _), = [(p, pol) for p, pol in predicates(a.condition) if p.field == "a"]
    assert p.text == 'a = "B("'
    conds = [n.text for n in walk(a.condition) if isinstance(n, Condition)]
    assert conds == ["len(x) > 10", 'lower(y) = "z"']


def test_aggregation_outputs_are_computed_fields() -> None:
    a = analyze_query("index=a | stats count dc(user) as u values(a) by h "
                      "| eventstats count as n | where n > 1", {})
    assert a.extra["computed_fields"] == ["count", "n", "u", "values(a)"]
    a = analyze_query("| tstats summariesonly=t count min(_time) as firstTime "
                      "from datamodel=Endpoint.Processes where Processes.x=1 by Processes.dest", {})
    assert a.extra["computed_fields"] == ["count", "firstTime"]


PAGE_SEARCH = '''`powershell` EventCode=4104 ScriptBlockText IN ("*invoke-wmiexec*")
  | fillnull
  | stats count min(_time) as firstTime max(_time) as lastTime
    BY dest signature signature_id
       user_id vendor_product EventID
       Guid Opcode Name
       Path ProcessID ScriptBlockId
       ScriptBlockText
  | `security_content_ctime(firstTime)`
  | `security_content_ctime(lastTime)`
  | `powershell_invoke_wmiexec_usage_filter`'''


def test_example_page_search_as_printed() -> None:
    """The newer version of the rule shown on rule-page-example.txt (multi-line BY)."""
    a = analyze_query(PAGE_SEARCH, macros())
    assert [s.command for s in a.stages] == ["search", "fillnull", "stats", "convert",
                                             "convert", "search"]
    assert [s.kind for s in a.stages] == [StageKind.FILTER, StageKind.TRANSFORM,
                                          StageKind.AGGREGATE, StageKind.TRANSFORM,
                                          StageKind.TRANSFORM, StageKind.MACRO]
    assert a.stages[2].text.startswith("| stats count") and a.stages[2].text.endswith(
        "ScriptBlockText")
    assert a.group_by == ("dest", "signature", "signature_id", "user_id", "vendor_product",
                          "EventID", "Guid", "Opcode", "Name", "Path", "ProcessID",
                          "ScriptBlockId", "ScriptBlockText")
    ps = {p.field: p for p, _ in predicates(a.condition)}
    assert ps["EventCode"].values == ("4104",)
    assert ps["ScriptBlockText"].op is Op.IN
    assert ps["ScriptBlockText"].values == (pat(ANY, "invoke-wmiexec", ANY),)
    span = ps["ScriptBlockText"].span
    assert span is not None and (span.line, span.col) == (1, 29)
    assert ps["EventCode"].span is not None and ps["EventCode"].span.col == 14
    assert a.stages[3].expanded == 'convert timeformat="%Y-%m-%dT%H:%M:%S" ctime(firstTime)'


def test_predicate_spans_point_at_the_term() -> None:
    a = analyze_query('x=1 y=2\n| search a="b" NOT c=*d*', {})
    got = [(p.field, p.span.line, p.span.col) for p, _ in predicates(a.condition) if p.span]
    assert got == [("x", 1, 1), ("y", 1, 5), ("a", 2, 10), ("c", 2, 20)]


def test_tstats_change_analysis_nodename_in_parentheses() -> None:
    """deprecated rule: ``where (nodename = All_Changes) All_Changes.result=... (a OR b)``."""
    a = analyze("detect_usb_device_insertion.yml")
    got = [(p.field, p.op, p.values, p.datamodel) for p, _ in preds(a)]
    dm = "Change_Analysis.All_Changes"
    assert got == [("All_Changes.result", Op.EQ, ("Removable Storage device",), dm),
                   ("All_Changes.result_id", Op.EQ, ("4663",), dm),
                   ("All_Changes.result_id", Op.EQ, ("4656",), dm),
                   ("All_Changes.src_priority", Op.EQ, ("high",), dm)]
    assert a.group_by == ("dest",)
    assert a.extra["computed_fields"] == ["count", "earliest", "latest"]


def test_where_predicates_point_at_their_field() -> None:
    a = analyze_query('x=1\n| where a="B" AND len(cmd) > 3\n| where isnull(z)', {})
    spans = {p.field: (p.span.line, p.span.col) for p, _ in predicates(a.condition) if p.span}
    assert spans == {"x": (1, 1), "a": (2, 9), "z": (3, 16)}
    (cond,) = [n for n in walk(a.condition) if isinstance(n, Condition)]
    assert cond.span is not None and (cond.span.line, cond.span.col) == (2, 23)


def test_tstats_options_nodename_and_datamodel_recorded() -> None:
    a = analyze_query("| tstats summariesonly=true allow_old_summaries=true count "
                      "from datamodel=Network_Traffic.All_Traffic where "
                      "nodename=All_Traffic.Traffic_By_Action.Blocked_Traffic "
                      "All_Traffic.dest_port=445 by All_Traffic.src", {})
    assert a.extra["tstats"] == [{
        "stage": 0, "command": "tstats", "datamodel": "Network_Traffic.All_Traffic",
        "nodename": "All_Traffic.Traffic_By_Action.Blocked_Traffic",
        "options": {"summariesonly": "true", "allow_old_summaries": "true"}}]
    # security_content_summariesonly expands (through nested macros) to the options
    a = analyze_query(
        "| tstats `security_content_summariesonly` count from datamodel=Endpoint.Processes "
        "where Processes.process_name=a by Processes.dest", macros())
    assert a.extra["tstats"][0]["options"] == {
        "summariesonly": "false", "allow_old_summaries": "true", "fillnull_value": "null"}


def test_registered_analyzer_on_the_loaded_example_rule() -> None:
    """Through the language registry, as the build calls it: source rule -> analyze."""
    from ruleatlas.languages import AnalysisContext
    from ruleatlas.languages import analyze as analyze_rule
    from ruleatlas.sources.splunk import load_detection

    path = next(DETECTIONS.rglob("powershell_invoke_wmiexec_usage.yml"))
    (rule,) = load_detection(SPLUNK, path).rules
    a = analyze_rule(rule, AnalysisContext(macros=macros()))
    assert a.language == "spl" and not a.problems
    assert [s.command for s in a.stages] == ["search", "stats", "convert", "convert", "search"]
    assert len(a.extra["drilldowns"]) == 2


def test_a_crashing_analyzer_becomes_one_located_crash_problem() -> None:
    """``languages.analyze`` is the one place a crash (here: a record with no query, which the
    SPL analyzer cannot take) becomes an opaque stage and an error located at the rule."""
    from dataclasses import replace

    from ruleatlas.languages import AnalysisContext, analyze
    from ruleatlas.languages.spl import analyze_spl
    from ruleatlas.sources.splunk import load_detection

    path = next(DETECTIONS.rglob("powershell_invoke_wmiexec_usage.yml"))
    (rule,) = load_detection(SPLUNK, path).rules
    broken = replace(rule, query=None)  # type: ignore[arg-type]  (a bad source record)
    with pytest.raises(TypeError):  # the analyzer itself does not hide the bug
        analyze_spl(broken, AnalysisContext())
    a = analyze(broken, AnalysisContext())
    assert [s.kind for s in a.stages] == [StageKind.OPAQUE]
    (p,) = a.problems
    assert (p.severity, p.code) == ("error", "crash")
    assert p.message.startswith("spl analyzer crashed: TypeError: ")
    assert p.location is not None
    assert (p.location.path, p.location.line) == (rule.path, rule.line)
