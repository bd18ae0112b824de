"""Event coverage and logsource routing: the table, events_for, route_for, event_key, on real
rules and events of the corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from sigma.pipelines.common import windows_logsource_mapping

from conftest import EXAMPLE_ID, OTRF, SIGMA, SPLUNK
from ruleatlas.coverage import (
    configure,
    events_for,
    load_data_sources,
    sigma_events,
    splunk_events,
    tree_channels,
    tree_ids,
)
from ruleatlas.coverage.routing import channel_value_matches, event_key, route_for
from ruleatlas.coverage.table import CoverageTableError, compile_table, load_table, parse_ref
from ruleatlas.engine.readers import read_events
from ruleatlas.languages import analyze
from ruleatlas.model import Analysis, And, EventRef, Not, Op, Or, Pattern, Predicate, Rule, Wild
from ruleatlas.sources import SOURCES


def R(*kinds: str) -> tuple[EventRef, ...]:
    return tuple(parse_ref(k) for k in kinds)


def sigma_rule(logsource: dict[str, str], **kw: object) -> Rule:
    return Rule(id="t", source="sigma", path="t.yml", title="t", language="sigma", query="",
                body="", logsource=logsource, **kw)  # type: ignore[arg-type]


def spl_rule(*data_sources: str) -> Rule:
    return Rule(id="s", source="splunk", path="s.yml", title="s", language="spl", query="",
                body="", data_sources=data_sources)


def P(field: str, *values: object, op: Op = Op.EQ, negated: bool = False) -> Predicate:
    return Predicate(field, op, tuple(values), negated=negated)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------


def test_parse_ref() -> None:
    assert parse_ref("Sysmon 1") == EventRef("Sysmon", "1")
    assert parse_ref("Windows PowerShell 400") == EventRef("Windows PowerShell", "400")
    assert parse_ref("Windows PowerShell") == EventRef("Windows PowerShell")
    assert parse_ref("DNS Server") == EventRef("DNS Server")
    assert parse_ref("aws:cloudtrail ConsoleLogin") == EventRef("aws:cloudtrail", "ConsoleLogin")
    assert parse_ref("Microsoft-Windows-AppLocker/MSI and Script").event_id is None
    assert str(parse_ref("Security 4688")) == "Security 4688"


def test_channel_spellings_meet() -> None:
    t = load_table()
    for spelling in ("Security", "security", "WinEventLog:Security", "XmlWinEventLog:Security",
                     '"XmlWinEventLog:Security"', "wineventlog_security"):
        assert t.canonical_channel(spelling) == "Security", spelling
    for spelling in ("Microsoft-Windows-Sysmon/Operational", "sysmon",
                     "XmlWinEventLog:Microsoft-Windows-Sysmon/Operational"):
        assert t.canonical_channel(spelling) == "Sysmon", spelling
    assert t.canonical_channel("WinEventLog:Microsoft-Windows-PowerShell/Operational") == (
        "Microsoft-Windows-PowerShell/Operational")
    assert t.canonical_channel("Syslog:Linux-Sysmon/Operational") == "Linux-Sysmon/Operational"
    assert t.canonical_channel("xmlwineventlog") is None  # names no channel
    assert t.canonical_channel("aws:cloudtrail") == "aws:cloudtrail"


def test_windows_services_agree_with_pysigma() -> None:
    """pySigma's Windows service -> channel mapping is ours too (the Sysmon channel is named
    "Sysmon" in our vocabulary)."""
    for service, channels in windows_logsource_mapping.items():
        want = [channels] if isinstance(channels, str) else list(channels)
        want = ["Sysmon" if c == "Microsoft-Windows-Sysmon/Operational" else c for c in want]
        got = [r.channel for r in sigma_events({"product": "windows", "service": service})]
        assert got == want, service
        assert all(r.event_id is None for r in sigma_events({"product": "windows",
                                                             "service": service}))


def test_every_windows_and_linux_category_of_logsource_json_is_in_the_table() -> None:
    doc = json.loads((SIGMA / "tests" / "logsource.json").read_text())
    t = load_table()
    for product in ("windows", "linux"):
        for category in doc["legit"][product]["category"]:
            assert f"{product}/{category}" in t.sigma_categories, (product, category)


def test_process_creation_covers_sysmon_1_and_security_4688_with_field_map() -> None:
    rule = sigma_rule({"product": "windows", "category": "process_creation"})
    assert events_for(rule, None) == R("Sysmon 1", "Security 4688")
    route = route_for(rule, None)
    assert route.accepts(("Sysmon", "1")) and route.accepts(("Security", "4688"))
    assert not route.accepts(("Sysmon", "3")) and not route.accepts(("Security", "4624"))
    assert route.event_field(("Security", "4688"), "Image") == "NewProcessName"
    assert route.event_field(("Security", "4688"), "ParentImage") == "ParentProcessName"
    assert route.event_field(("Security", "4688"), "CommandLine") == "CommandLine"
    assert route.event_field(("Sysmon", "1"), "Image") == "Image"


def test_sigma_categories() -> None:
    w = {"product": "windows"}
    cases = {
        "ps_script": R("Microsoft-Windows-PowerShell/Operational 4104",
                       "PowerShellCore/Operational 4104"),
        "ps_module": R("Microsoft-Windows-PowerShell/Operational 4103",
                       "PowerShellCore/Operational 4103"),
        "ps_classic_start": R("Windows PowerShell 400"),
        "network_connection": R("Sysmon 3", "Security 5156"),
        "image_load": R("Sysmon 7"),
        "file_event": R("Sysmon 11"),
        "registry_set": R("Sysmon 13"),
        "registry_event": R("Sysmon 12", "Sysmon 13", "Sysmon 14"),
        "dns_query": R("Sysmon 22"),
        "pipe_created": R("Sysmon 17", "Sysmon 18"),
        "wmi_event": R("Sysmon 19", "Sysmon 20", "Sysmon 21"),
        "process_access": R("Sysmon 10"),
        "create_remote_thread": R("Sysmon 8"),
        "driver_load": R("Sysmon 6"),
    }
    for category, refs in cases.items():
        assert sigma_events({**w, "category": category}) == refs, category
    assert sigma_events({"product": "aws", "service": "cloudtrail"}) == R("aws:cloudtrail")
    assert sigma_events({"product": "azure", "service": "signinlogs"}) == R("azure:monitor:aad")
    assert sigma_events({"product": "okta", "service": "okta"}) == R("OktaIM2:log")
    assert sigma_events({"category": "proxy"}) == R("proxy")
    # unknown logsources still name their log, generically
    assert sigma_events({"product": "acme", "service": "audit"}) == (EventRef("acme:audit"),)


def test_splunk_data_source_names() -> None:
    assert splunk_events(["Powershell Script Block Logging 4104"]) == R(
        "Microsoft-Windows-PowerShell/Operational 4104")
    assert splunk_events(["Sysmon EventID 1 AND Sysmon EventID 11"]) == R("Sysmon 1", "Sysmon 11")
    assert splunk_events(["Windows Event Log Security 4688", "Windows Security 5136"]) == R(
        "Security 4688", "Security 5136")
    assert splunk_events(["NTLM Operational 8004,8005,8006"]) == R(
        "Microsoft-Windows-NTLM/Operational 8004", "Microsoft-Windows-NTLM/Operational 8005",
        "Microsoft-Windows-NTLM/Operational 8006")
    assert splunk_events(["AWS CloudTrail ConsoleLogin"]) == (
        EventRef("aws:cloudtrail", "ConsoleLogin"),)
    assert splunk_events(["O365 Universal Audit Log"]) == R("o365:management:activity")
    assert splunk_events(["Sysmon for Linux EventID 1"]) == R("Linux-Sysmon/Operational 1")


def test_every_data_source_of_the_table_resolves() -> None:
    """Every entry of security_content/data_sources names at least one event kind; Windows
    event-log entries name their channel and the event code in their name."""
    tables = load_data_sources(SPLUNK)
    try:
        assert len(tables) > 200
        t = load_table()
        for name, d in tables.items():
            refs = splunk_events([name])
            assert refs, name
            src = str(d.get("source") or "")
            if src.startswith(("XmlWinEventLog:", "WinEventLog:")) and name[-1].isdigit():
                assert refs[0].channel == t.canonical_channel(src), name
                assert refs[0].event_id == name.split()[-1], name
    finally:
        configure(None)


def test_data_source_side_table_fallback() -> None:
    assert splunk_events(["Windows Event Log Foo 123"]) == ()
    configure({"Windows Event Log Foo 123": {"source": "XmlWinEventLog:Microsoft-Foo/Admin",
                                             "sourcetype": "xmlwineventlog",
                                             "separator": "EventCode"}})
    try:
        assert splunk_events(["Windows Event Log Foo 123"]) == (
            EventRef("Microsoft-Foo/Admin", "123"),)
    finally:
        configure(None)


# --------------------------------------------------------------------------------------------
# Condition trees narrow
# --------------------------------------------------------------------------------------------


def test_tree_constraints() -> None:
    powershell = Or((P("source", "WinEventLog:Microsoft-Windows-PowerShell/Operational"),
                     P("source", "XmlWinEventLog:Microsoft-Windows-PowerShell/Operational")))
    tree = And((powershell, P("EventCode", 4104),
                P("ScriptBlockText", Pattern((Wild.ANY, "invoke-wmiexec", Wild.ANY)),
                  op=Op.WILDCARD)))
    assert tree_channels(tree) == {"Microsoft-Windows-PowerShell/Operational"}
    assert tree_ids(tree) == {"4104"}
    # an OR with an unconstrained branch constrains nothing; NOT never narrows
    assert tree_ids(Or((P("EventID", 1), P("Image", "x")))) is None
    assert tree_ids(Not(P("EventID", 1))) is None
    assert tree_ids(P("EventID", 1, negated=True)) is None
    assert tree_ids(And((P("EventID", 1, 2), P("EventID", 2, 3)))) == {"2"}
    assert tree_ids(Or((P("EventID", "4624"), P("EventCode", 4625)))) == {"4624", "4625"}
    assert tree_ids(P("EventID", Pattern(("46", Wild.ANY)), op=Op.WILDCARD)) is None


def test_service_rule_narrowed_by_its_eventid_predicates() -> None:
    rule = sigma_rule({"product": "windows", "service": "security"})
    a = Analysis("sigma", condition=And((P("EventID", 4624, 4625), P("LogonType", 3))))
    assert events_for(rule, a) == R("Security 4624", "Security 4625")
    assert events_for(rule, Analysis("sigma", condition=P("LogonType", 3))) == R("Security")
    route = route_for(rule, Analysis("sigma", condition=P("LogonType", 3)))
    assert route.accepts(("Security", "4624")) and route.accepts(("Security", "1102"))
    assert not route.accepts(("System", "7045"))
    # a category rule whose condition names an id outside the category keeps its category
    pc = sigma_rule({"product": "windows", "category": "process_creation"})
    assert events_for(pc, Analysis("sigma", condition=P("EventID", 1))) == R("Sysmon 1")
    assert events_for(pc, Analysis("sigma", condition=P("EventID", 99))) == R(
        "Sysmon 1", "Security 4688")


def test_splunk_rule_without_data_source_uses_the_expanded_macros() -> None:
    rule = spl_rule()
    tree = And((Or((P("sourcetype", "XmlWinEventLog:Microsoft-Windows-Sysmon/Operational"),
                    P("source", "XmlWinEventLog:Microsoft-Windows-Sysmon/Operational"),
                    P("source", "Syslog:Linux-Sysmon/Operational"))), P("EventCode", 1)))
    assert events_for(rule, Analysis("spl", condition=tree)) == R(
        "Linux-Sysmon/Operational 1", "Sysmon 1")
    # `wineventlog_security`: eventtype=wineventlog_security OR Channel=security OR source=...
    sec = Or((P("eventtype", "wineventlog_security"), P("Channel", "security"),
              P("source", "XmlWinEventLog:Security")))
    assert events_for(rule, Analysis("spl", condition=And((sec, P("EventCode", "4662"))))
                      ) == R("Security 4662")
    st = P("sourcetype", "aws:cloudtrail")
    assert events_for(rule, Analysis("spl", condition=And((st, P("eventName", "ConsoleLogin"))))
                      ) == (EventRef("aws:cloudtrail", "ConsoleLogin"),)
    dm = Predicate("Processes.process_name", Op.EQ, ("cmd.exe",), datamodel="Endpoint.Processes")
    from ruleatlas.model import Stage
    a = Analysis("spl", stages=(Stage(0, "tstats", "", condition=dm),), condition=dm)
    assert events_for(rule, a) == R("Sysmon 1", "Security 4688")
    assert route_for(rule, None).any
    assert route_for(rule, a).event_field(("Sysmon", "1"), "EventCode") == "EventID"


def test_example_splunk_rule_covers_powershell_4104() -> None:
    src = SOURCES["splunk"]
    path = SPLUNK / "detections" / "endpoint" / "powershell_invoke_wmiexec_usage.yml"
    [rule] = src.load_file(SPLUNK, path).rules
    assert rule.id == EXAMPLE_ID
    side = src.side_tables(SPLUNK)
    from ruleatlas.languages import AnalysisContext
    a = analyze(rule, AnalysisContext(macros=side.macros, data_sources=side.data_sources))
    refs = events_for(rule, a)
    assert EventRef("Microsoft-Windows-PowerShell/Operational", "4104") in refs
    assert str(refs[0]) == "Microsoft-Windows-PowerShell/Operational 4104"
    route = route_for(rule, a)
    assert route.accepts(("Microsoft-Windows-PowerShell/Operational", "4104"))
    assert not route.accepts(("Sysmon", "1"))


def test_real_sigma_service_rule_through_the_analyzer() -> None:
    path = (SIGMA / "rules/windows/builtin/security"
            / "win_security_aadhealth_mon_agent_regkey_access.yml")
    [rule] = SOURCES["sigma"].load_file(SIGMA, path).rules
    assert events_for(rule, analyze(rule)) == R("Security 4656", "Security 4663")


# --------------------------------------------------------------------------------------------
# Event side
# --------------------------------------------------------------------------------------------


def test_event_key_normalises_channel_and_id() -> None:
    assert event_key({"Channel": "security", "EventID": 4688}) == ("Security", "4688")
    assert event_key({"Channel": "Security", "EventID": "4688"}) == ("Security", "4688")
    assert event_key({"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1}) == (
        "Sysmon", "1")
    assert event_key({"source": "XmlWinEventLog:Security", "EventCode": "4624"}) == (
        "Security", "4624")
    assert event_key({"eventSource": "iam.amazonaws.com", "awsRegion": "us-east-1",
                      "eventName": "CreateUser"}) == ("aws:cloudtrail", "CreateUser")
    assert event_key({"Image": "x"}) == (None, None)
    assert event_key({"Operation": "UserLoggedIn", "Workload": "AzureActiveDirectory",
                      "RecordType": 15}) == ("o365:management:activity", "UserLoggedIn")
    # any channel the table names meets the event's spelling whatever its letter case
    assert event_key({"Channel": "microsoft-windows-windows defender/operational",
                      "EventID": 1116}) == ("Microsoft-Windows-Windows Defender/Operational",
                                            "1116")


def test_channel_predicates_decided_by_the_key() -> None:
    sec = ("Security", "4688")
    assert channel_value_matches("source", "XmlWinEventLog:Security", sec) is True
    assert channel_value_matches("source", "WinEventLog:Security", sec) is True
    assert channel_value_matches("Channel", "security", sec) is True
    assert channel_value_matches("eventtype", "wineventlog_security", sec) is True
    assert channel_value_matches("sourcetype", "xmlwineventlog", sec) is True
    assert channel_value_matches("source", "XmlWinEventLog:Microsoft-Windows-Sysmon/Operational",
                                 sec) is False
    assert channel_value_matches("source", "XmlWinEventLog:Security", (None, None)) is False
    assert channel_value_matches("source", Pattern((Wild.ANY, "Security")), sec) is None
    assert channel_value_matches("Image", "x", sec) is None


def test_json_examples_of_the_data_sources_meet_their_data_source() -> None:
    """The JSON example_log of each security_content data source (CloudTrail, O365, Azure AD,
    Okta, Kubernetes, Suricata, ...) gets an event key its data source's kinds accept."""
    from ruleatlas.engine.events import flatten

    checked = 0
    for p in sorted((SPLUNK / "data_sources").glob("*.yml")):
        d = yaml.safe_load(p.read_text("utf-8"))
        ex = (d.get("example_log") or "").strip()
        if not ex.startswith("{"):
            continue
        try:
            obj = json.loads(ex.split("\n")[0])
        except ValueError:
            continue  # several examples are cut short upstream
        key = event_key(flatten(obj) or {})
        refs = splunk_events([d["name"]])
        assert any(r.channel == key[0] and r.event_id in (None, key[1]) for r in refs), (
            d["name"], key, refs)
        checked += 1
    assert checked >= 98


def test_xml_examples_of_the_data_sources_meet_their_data_source() -> None:
    """Same for the XmlWinEventLog examples (Sysmon, Security, System, PowerShell, ...), read by
    the XML reader. Upstream's "Windows Active Directory Admon" example is a Security 4688."""
    import io

    from ruleatlas.engine.readers.xmllog import read_xml

    checked = 0
    for p in sorted((SPLUNK / "data_sources").glob("*.yml")):
        d = yaml.safe_load(p.read_text("utf-8"))
        ex = d.get("example_log") or ""
        if "<Event" not in ex or d["name"] == "Windows Active Directory Admon":
            continue
        refs = splunk_events([d["name"]])
        for ev in read_xml(io.BytesIO(ex.encode()), p.name, lambda e: None):
            key = event_key(ev.fields)
            assert any(r.channel == key[0] and r.event_id in (None, key[1]) for r in refs), (
                d["name"], key, refs)
            checked += 1
    assert checked >= 54


def test_real_events_route_to_their_rules() -> None:
    """OTRF events (Channel 'security' in lower case in some archives) reach process_creation
    rules through Security 4688, and Sysmon 1 events too; Sysmon 3 does not."""
    pc = route_for(sigma_rule({"product": "windows", "category": "process_creation"}), None)
    zip_ = OTRF / "datasets/atomic/windows/credential_access/host/" \
        "empire_dcsync_dcerpc_drsuapi_DsGetNCChanges.zip"
    seen: dict[tuple[str | None, str | None], bool] = {}
    for ev in read_events(zip_, []):
        key = event_key(ev.fields)
        seen[key] = pc.accepts(key)
        if key == ("Security", "4688"):
            assert ev[pc.event_field(key, "Image")].lower().endswith(".exe")
    assert seen.get(("Security", "4688")) is True
    assert seen.get(("Sysmon", "1")) is True
    assert seen.get(("Sysmon", "3")) is False


def test_regression_events_reach_their_rules() -> None:
    """Every regression EVTX event is accepted by the route of the rule it was recorded for."""
    src = SOURCES["sigma"]
    checked = 0
    for info in sorted((SIGMA / "regression_data").rglob("info.yml")):
        meta = yaml.safe_load(info.read_text())
        rule_id = meta["rule_metadata"][0]["id"]
        evtx = next(info.parent.glob("*.evtx"), None)
        rule_file = _rule_by_id().get(rule_id)
        if evtx is None or rule_file is None:
            continue
        [rule] = [r for r in src.load_file(SIGMA, rule_file).rules if r.id == rule_id]
        route = route_for(rule, analyze(rule))
        keys = [event_key(e.fields) for e in read_events(evtx, [])]
        assert any(route.accepts(k) for k in keys), (rule.path, keys, route.keys)
        checked += 1
    assert checked > 100


_BY_ID: dict[str, Path] = {}


def _rule_by_id() -> dict[str, Path]:
    if not _BY_ID:
        for p in SIGMA.glob("rules*/**/*.yml"):
            for line in p.read_text("utf-8").splitlines()[:6]:
                if line.startswith("id:"):
                    _BY_ID[line[3:].strip()] = p
                    break
    return _BY_ID


def test_bad_table_is_reported_with_the_entry() -> None:
    with pytest.raises(CoverageTableError, match=r"splunk\.data_sources\[0\]"):
        compile_table({"splunk": {"data_sources": [{"pattern": "(", "channel": "x"}]}})
    with pytest.raises(CoverageTableError, match=r"sigma\.categories\.windows/x"):
        compile_table({"sigma": {"categories": {"windows/x": {"a": 1}}}})
