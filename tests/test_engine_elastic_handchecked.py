"""Elastic rules on Sigma's recorded Sysmon / Security samples: a hand-checked table.

Each row pairs one Elastic detection rule (``../shared/corpus/elastic``) with one EVTX file of
``../shared/corpus/sigma/regression_data`` (recorded for the Sigma rule its folder names) and
says whether the Elastic rule must fire on that file. Every expectation was written by reading
the rule's query and the file's events (their ECS view as Elastic's Windows / System
integrations would index them, see docs/ecs.md) -- never by running the engine -- and the
reason column names the predicate that holds, or the one that fails.

Elasticsearch semantics assumed while reading (docs/elastic-engine.md): ``:`` is a
case-insensitive whole-value wildcard match, ``==`` / ``in`` are case-sensitive, a
multi-valued field (``process.args``, ``event.category``) matches when any value does,
``process.name`` is the basename of Image, ``process.args`` is CommandLineToArgvW's split of
the command line (quotes removed, a quoted run is one argument), Sysmon's ``user.id`` is the
Sysmon service's account ``S-1-5-18``, ``registry.path`` is Sysmon's TargetObject as it is
(the default value ends in ``\\(Default)``).

The test runs the real engine through the CLI (``ruleatlas hunt --rules <id> --format json
-j1 <evtx>`` on the corpus catalog) and also asserts the rule ran, so that a must-not-fire row
cannot pass because the rule was not runnable.
"""

from __future__ import annotations

import fnmatch
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from conftest import ELASTIC, SIGMA
from ruleatlas.cli import app

REGRESSION = SIGMA / "regression_data"
PC = "rules/windows/process_creation"
FE = "rules/windows/file/file_event"
RS = "rules/windows/registry/registry_set"
SEC = "rules/windows/builtin/security"

# An index pattern of the rule must take one of these (the data streams and the Winlogbeat
# index that hold Sysmon and Security events).
SAMPLE_INDICES = ("logs-windows.sysmon_operational-default", "logs-system.security-default",
                  "winlogbeat-8.0.0")


@dataclass(frozen=True, slots=True)
class Row:
    """One hand-checked pair: ``rule_file`` is relative to the Elastic corpus, ``sample`` to
    Sigma's ``regression_data``; ``fires`` is the expectation, ``reason`` why."""

    rule_id: str
    rule_file: str
    sample: str
    fires: bool
    reason: str


FIRE: tuple[Row, ...] = (
    Row("fd70c98a-c410-42dc-a2e3-761c71848acf",
        "rules/windows/defense_evasion_suspicious_certutil_commands.toml",
        f"{PC}/proc_creation_win_certutil_encode/e62a9f0c-ca1e-46b2-85d5-a6da77f86d1a.evtx",
        True, 'process.name certutil.exe; process.args "-encode" matches "?encode"'),
    Row("fd70c98a-c410-42dc-a2e3-761c71848acf",
        "rules/windows/defense_evasion_suspicious_certutil_commands.toml",
        f"{PC}/proc_creation_win_certutil_download/19b08b1c-861d-4e75-a1ef-ea0c1baf202b.evtx",
        True, 'process.name certutil.exe; process.args "-urlcache" matches "?urlcache"'),
    Row("8eec4df1-4b4b-4502-b6c3-c788714604c9",
        "rules_building_block/command_and_control_bitsadmin_activity.toml",
        f"{PC}/proc_creation_win_bitsadmin_download/d059842b-6b9d-4ed1-b5c3-5b89143c6ede.evtx",
        True, 'process.name bitsadmin.exe; process.args "/transfer" : "*Transfer*" '
              '(case-insensitive)'),
    Row("eda499b8-a073-4e35-9733-22ec71f57f3a",
        "rules/windows/discovery_adfind_command_activity.toml",
        f"{PC}/proc_creation_win_pua_adfind_susp_usage/9a132afa-654e-11eb-ae93-0242ac130002.evtx",
        True, 'process.name AdFind.exe : "AdFind*.exe"; process.args holds "trustdmp"'),
    Row("94a401ba-4fa2-455c-b7ae-b6e037afc0b7",
        "rules/windows/discovery_group_policy_object_discovery.toml",
        f"{PC}/proc_creation_win_gpresult_execution/e56d3073-83ff-4021-90fe-c658e0709e72.evtx",
        True, 'process.name gpresult.exe; process.args holds "/z"'),
    Row("06a7a03c-c735-47a6-a313-51c354aef6c3",
        "rules/windows/discovery_enumerating_domain_trusts_via_dsquery.toml",
        f"{PC}/proc_creation_win_dsquery_domain_trust_discovery/"
        "3bad990e-4848-4a78-9530-b427d854aac0.evtx",
        True, 'process.name dsquery.exe; argument "(objectClass=trustedDomain)" : '
              '"*objectClass=trustedDomain*"'),
    Row("5f2f463e-6997-478c-8405-fb41cc283281",
        "rules/windows/command_and_control_headless_browser.toml",
        f"{PC}/proc_creation_win_browsers_chromium_headless_file_download/"
        "0e8cfe08-02c9-4815-a2f8-0d157b7ed33e.evtx",
        True, 'chrome.exe with arguments "--headless" and "--dump-dom", parent cmd.exe'),
    Row("2e0051cb-51f8-492f-9d90-174e16b5e96b",
        "rules/windows/command_and_control_tool_transfer_via_curl.toml",
        f"{PC}/proc_creation_win_curl_custom_user_agent/"
        "85de1f22-d189-44e4-8239-dc276b45379b.evtx",
        True, 'executable C:\\Windows\\System32\\curl.exe, command line has "http://example.com",'
              ' parent cmd.exe; the user.id exclusion spares Sysmon, IntegrityLevel is High'),
    Row("8cd49fbc-a35a-4418-8688-133cc3a1e548",
        "rules/windows/defense_evasion_indirect_exec_openssh.toml",
        f"{PC}/proc_creation_win_lolbin_sftp_indirect_cmd_execution/"
        "762bb580-79b4-40f4-8b9e-9349ce1710f4.evtx",
        True, 'process.name sftp.exe; command line \'-o ProxyCommand="cmd /c ..."\' : '
              '"*Command=*cmd /c*"'),
    Row("7b75c162-d439-472d-b39f-2eb0d4d2d318",
        "rules/windows/defense_evasion_edr_freeze_via_werfaultsecure.toml",
        f"{PC}/proc_creation_win_werfaultsecure_abuse/1f0b4cac-9c81-41f4-95d0-8475ff46b3e2.evtx",
        True, "C:\\Windows\\System32\\WerFaultSecure.exe started by EDRFreeze-gnu.exe (not a WER"
              ' host) with arguments "/pid" and "/encfile"'),
    Row("9960432d-9b26-409f-972b-839a959e79e2",
        "rules/windows/credential_access_suspicious_lsass_access_memdump.toml",
        "rules/windows/process_access/proc_access_win_susp_dbgcore_dbghelp_load/"
        "9f5c1d59-33be-4e60-bcab-85d2f566effd.evtx",
        True, 'Sysmon 10: TargetImage C:\\WINDOWS\\system32\\lsass.exe, CallTrace has '
              '"dbgcore.DLL" (: is case-insensitive), source C:\\Users\\Public\\wsass\\'
              "WerFaultSecure.exe is not the System32 one excluded"),
    Row("128468bf-cab1-4637-99ea-fdf3780a4609",
        "rules/windows/credential_access_suspicious_lsass_access_generic.toml",
        "rules/windows/process_access/proc_access_win_susp_dbgcore_dbghelp_load/"
        "9f5c1d59-33be-4e60-bcab-85d2f566effd.evtx",
        True, "Sysmon 10 on lsass.exe with GrantedAccess 0x1fffff (not an excluded mask), "
              "source in C:\\Users\\Public (not excluded), CallTrace without mpengine/"
              "appresolver/sysmain"),
    Row("c8b150f0-0164-475b-a75e-74b47800a9ff",
        "rules/windows/persistence_evasion_registry_startup_shell_folder_modified.toml",
        f"{RS}/registry_set_susp_user_shell_folders/9c226817-8dc9-46c2-a58d-66655aafd7dc.evtx",
        True, "Sysmon 13 (type change) on HKLM\\SOFTWARE\\...\\User Shell Folders\\Common Startup"
              ", value Common Startup, data C:\\Test\\calc.exe (not a normal Startup folder)"),
    Row("818e23e6-2094-4f0e-8c01-22d30f3506c6",
        "rules/windows/defense_evasion_disable_posh_scriptblocklogging.toml",
        f"{RS}/registry_set_powershell_logging_disabled/"
        "fecfd1a1-cc78-4313-a1ea-2ee2e8ec27a7.evtx",
        True, 'registry.value EnableScriptBlockLogging, data "DWORD (0x00000000)" -> "0", '
              "written by reg.exe (not excluded)"),
    Row("d563aaba-2e72-462b-8658-3e5ea22db3a6",
        "rules/windows/privilege_escalation_rogue_windir_environment_var.toml",
        f"{RS}/registry_set_bypass_uac_using_silentcleanup_task/"
        "724ea201-6514-4f38-9739-e5973c34f49a.evtx",
        True, 'registry.path HKU\\...\\Environment\\windir, value windir, data "cmd /c start '
              'powershell&REM " (not C:\\windows / %SystemRoot%)'),
    Row("f2f46686-6f3c-4724-bd7d-24e31c70f98f",
        "rules/windows/credential_access_lsass_memdump_file_created.toml",
        f"{FE}/file_event_win_taskmgr_lsass_dump/69ca12af-119d-44ed-b50f-a47af0ebc364.evtx",
        True, 'Sysmon 11: file.name "lsass.DMP" : "lsass*.dmp" (case-insensitive), written by '
              "taskmgr.exe (not an excluded dumper)"),
    Row("f2f46686-6f3c-4724-bd7d-24e31c70f98f",
        "rules/windows/credential_access_lsass_memdump_file_created.toml",
        f"{FE}/file_event_win_dump_file_susp_creation/aba15bdd-657f-422a-bab3-ac2d2a0d6f1c.evtx",
        True, 'Sysmon 11: file.name "lsass.dmp" written by cmd.exe'),
    Row("6ea55c81-e2ba-42f2-a134-bccf857ba922",
        "rules_building_block/discovery_security_software_wmic.toml",
        f"{PC}/proc_creation_win_wmic_recon_product_class/"
        "e568650b-5dcd-4658-8f34-ded0b1e13992.evtx",
        True, 'WMIC.exe : "wmic.exe"; argument "/Namespace:\\\\root\\SecurityCenter2" : '
              '"/namespace:\\\\root\\SecurityCenter2" (case-insensitive) and argument "Get"'),
    Row("f59668de-caa0-4b84-94c1-3a1549e1e798",
        "rules_building_block/lateral_movement_wmic_remote.toml",
        f"{PC}/proc_creation_win_wmic_remote_execution/7773b877-5abb-4a3e-b9c9-fd0369b59b00.evtx",
        True, 'WMIC.exe with "/node:17.12.0.1" (: "*node:*", not a localhost node) and "call"'),
    Row("83bf249e-4348-47ba-9741-1202a09556ad",
        "rules/windows/execution_windows_powershell_susp_args.toml",
        f"{PC}/proc_creation_win_powershell_base64_invoke/6385697e-9f1b-40bd-8817-f4a91f40508e.evtx",
        True, 'powershell.exe whose arguments hold "-e" exactly (process.args == "-e"), parent '
              "cmd.exe (not Program Files)"),
    Row("7e763fd1-228a-4d43-be88-3ffc14cd7de1",
        "rules/windows/defense_evasion_right_to_left_override.toml",
        f"{FE}/file_event_win_susp_right_to_left_override_extension_spoofing/"
        "979baf41-ca44-4540-9d0c-4fcef3b5a3a4.evtx",
        True, 'Sysmon 11 (category file, type creation): file.path holds U+202E '
              '("Communicaton_Ltr\\u202efdp.msc") : "*\\u{202E}*"'),
    Row("7e763fd1-228a-4d43-be88-3ffc14cd7de1",
        "rules/windows/defense_evasion_right_to_left_override.toml",
        f"{PC}/proc_creation_win_susp_right_to_left_override/"
        "ad691d92-15f2-4181-9aa4-723c74f9ddc3.evtx",
        True, 'Sysmon 1 (category process, type start): process.name "Ann\\u202egepj.exe" : '
              '"*\\u{202E}*"'),
    Row("ebfe1448-7fac-4d59-acea-181bd89b1f7f",
        "rules/windows/defense_evasion_from_unusual_directory.toml",
        f"{PC}/proc_creation_win_hktl_wsass/589ac73f-8e12-409c-964e-31a2f5775ae2.evtx",
        True, 'process.executable C:\\Users\\Public\\wsass\\WSASS.exe : '
              '"?:\\Users\\Public\\*.exe" (* spans backslashes); name and path not excluded'),
)

NOT_FIRE: tuple[Row, ...] = (
    Row("fd70c98a-c410-42dc-a2e3-761c71848acf",
        "rules/windows/defense_evasion_suspicious_certutil_commands.toml",
        f"{PC}/proc_creation_win_certutil_certificate_installation/"
        "d2125259-ddea-4c1c-9c22-977eb5b29cf0.evtx",
        False, 'certutil.exe, but its arguments "-addstore -f root <path>" match none of '
               "?decode ?encode ?urlcache ?verifyctl ?encodehex ?decodehex ?exportPFX"),
    Row("2e0051cb-51f8-492f-9d90-174e16b5e96b",
        "rules/windows/command_and_control_tool_transfer_via_curl.toml",
        f"{PC}/proc_creation_win_renamed_curl/7530cd3d-7671-43e3-b209-976966f6ea48.evtx",
        False, "renamed curl (OriginalFileName curl.exe) run from Downloads\\testdata with no "
               "arguments: process.executable is not System32\\curl.exe and the command line "
               'has no "http"'),
    Row("5f2f463e-6997-478c-8405-fb41cc283281",
        "rules/windows/command_and_control_headless_browser.toml",
        f"{PC}/proc_creation_win_browsers_chromium_load_extension/"
        "88d6e60c-759d-4ac1-a447-c0f1466c2d21.evtx",
        False, 'chrome.exe from cmd.exe, but with "--load-extension=..." only: no argument '
               ': "--headless*"'),
    Row("7b75c162-d439-472d-b39f-2eb0d4d2d318",
        "rules/windows/defense_evasion_edr_freeze_via_werfaultsecure.toml",
        f"{PC}/proc_creation_win_hktl_wsass/589ac73f-8e12-409c-964e-31a2f5775ae2.evtx",
        False, "the process is C:\\Users\\Public\\wsass\\WSASS.exe (WerFaultSecure.exe is only "
               "an argument): process.executable is not ?:\\Windows\\System32\\"
               "WerFaultSecure.exe, and there is no /pid or /encfile"),
    Row("f59668de-caa0-4b84-94c1-3a1549e1e798",
        "rules_building_block/lateral_movement_wmic_remote.toml",
        f"{PC}/proc_creation_win_wmic_susp_process_creation/"
        "3c89a1e8-0fba-449e-8f1b-8409d6267ec8.evtx",
        False, 'WMIC.exe "process call create" with a node, but the node argument is exactly '
               '"/node:127.0.0.1", excluded by not process.args : (..., "/node:127.0.0.1")'),
    Row("d68e95ad-1c82-4074-a12a-125fe10ac8ba",
        "rules_building_block/discovery_files_dir_systeminfo_via_cmd.toml",
        f"{PC}/proc_creation_win_cmd_dir_execution/7c9340a9-e2ee-4e43-94c5-c54ebbea1006.evtx",
        False, 'cmd  /c "dir /s": the quoted run is one argument, process.args is ["cmd", "/c",'
               ' "dir /s"], so no argument equals "set" or "dir"'),
    Row("871ea072-1b71-4def-b016-6278b505138d",
        "rules/windows/discovery_admin_recon.toml",
        f"{PC}/proc_creation_win_wmic_recon_group/164eda96-11b2-430b-85ff-6a265c15bf32.evtx",
        False, 'WMIC.exe "group list full" meets the wmic branch, but not user.id : "S-1-5-18" '
               "fails: a Sysmon event's user.id is the Sysmon service's S-1-5-18"),
    Row("2edc8076-291e-41e9-81e4-e3fcbc97ae5e",
        "rules/windows/persistence_evasion_hidden_local_account_creation.toml",
        "rules/windows/registry/registry_event/registry_event_add_local_hidden_user/"
        "460479f3-80b7-42da-9c43-2cc1d54dbccd.evtx",
        False, "the hidden account is there (Names\\hideme0007$), but Sysmon's path ends "
               '"hideme0007$\\(Default)", not "$\\" as the patterns require (whole-value match)'),
    Row("31b4c719-f2b4-41f6-a9bd-fce93c2eaf62",
        "rules/windows/privilege_escalation_uac_bypass_event_viewer.toml",
        f"{RS}/registry_set_bypass_uac_using_eventviewer/674202d0-b22a-4af4-ae5f-2eda1f3da1af.evtx",
        False, "the file holds only the Sysmon 13 write of mscfile\\shell\\open\\command "
               "(category registry): the rule wants a process start whose parent is eventvwr.exe"),
    Row("92a6faf5-78ec-4e25-bea1-73bacc9b59d9",
        "rules/windows/persistence_scheduled_task_creation_winlog.toml",
        f"{SEC}/win_security_susp_scheduled_task_delete_or_disable/"
        "7595ba94-cf3b-4471-aa03-4f6baa9e5fad.evtx",
        False, 'Security 4701 is category iam, but event.action "scheduled-task-disabled" != '
               '"scheduled-task-created"'),
    Row("61766ef9-48a5-4247-ad74-3349de7eb2ad",
        "rules/windows/privilege_escalation_make_token_local.toml",
        f"{SEC}/win_security_explicit_credential_local_logon/"
        "e3c6d245-7b8f-4e2a-c17f-a9d0e5b38f62.evtx",
        False, "Security 4648 (authentication, process C:\\Users\\...\\LegacyHive.exe) has no "
               "LogonProcessName and no logon type: winlog.event_data.LogonProcessName : "
               '"Advapi*" and winlog.logon.type == "Interactive" fail'),
    Row("57bccf1d-daf5-4e1a-9049-ff79b5254704",
        "rules_building_block/collection_files_staged_in_recycle_bin_root.toml",
        f"{FE}/file_event_win_susp_recycle_bin_fake_exec/cd8b36ac-8e4a-4c2f-a402-a29b8fbd5bca.evtx",
        False, 'file C:\\RECYCLERS.BIN\\malware.exe: the folder is not "$RECYCLE.BIN", so '
               'file.path : "?:\\$RECYCLE.BIN\\*" fails'),
    Row("8b2b3a62-a598-4293-bc14-3d5fa22bb98f",
        "rules/windows/defense_evasion_file_creation_mult_extension.toml",
        f"{FE}/file_event_win_susp_lnk_double_extension/3215aa19-f060-4332-86d5-5602511f3ca8.evtx",
        False, 'C:\\evil.doc.lnk has a double extension but file.extension is "lnk", not "exe"'),
    Row("58aa72ca-d968-4f34-b9f7-bea51d75eb50",
        "rules/windows/lateral_movement_rdp_enabled_registry.toml",
        f"{RS}/registry_set_allow_rdp_remote_assistance_feature/"
        "37b437cf-3fc5-4c8e-9c94-1d7c9aff842b.evtx",
        False, 'a Terminal Server value set to 1, but registry.value is "fAllowToGetHelp", not '
               '"fDenyTSConnections" (and the data is "1", not "0")'),
    Row("e3343ab9-4245-4715-b344-e11c56b0a47f",
        "rules/windows/execution_via_compiled_html_file.toml",
        f"{PC}/proc_creation_win_hh_chm_execution/68c8acb4-1b60-4890-8e82-3ddf7a6dba84.evtx",
        False, "hh.exe opening a .CHM is the process itself (parent Everything.exe): the rule "
               "wants a script host whose process.parent.name is hh.exe"),
    Row("d117cbb4-7d56-41b4-b999-bdf8c25648a0",
        "rules/windows/credential_access_symbolic_link_to_shadow_copy_created.toml",
        f"{PC}/proc_creation_win_cmd_mklink_osk_cmd/e9b61244-893f-427c-b287-3e708f321c6b.evtx",
        False, 'cmd.exe with an argument : "*mklink*", but the link targets osk.exe: the '
               'command line has no "HarddiskVolumeShadowCopy"'),
    Row("eda499b8-a073-4e35-9733-22ec71f57f3a",
        "rules/windows/discovery_adfind_command_activity.toml",
        f"{PC}/proc_creation_win_pua_adfind_enumeration/455b9d50-15a1-4b99-853f-8d37655a4c1b.evtx",
        False, 'AdFind.exe querying the password policy ("-default -s base lockoutduration ..."):'
               " no argument is one of the listed object categories or verbs"),
    Row("71bccb61-e19b-452f-b104-79a60e546a95",
        "rules/windows/defense_evasion_unusual_ads_file_creation.toml",
        f"{FE}/file_event_win_cred_dump_tools_dropped_files/"
        "8fbf3271-1ef6-4e94-8210-03c2317947f6.evtx",
        False, "the six files (procdump*.exe and their :Zone.Identifier streams) are written by "
               "explorer.exe: process.name is not one of the listed script hosts (the streams "
               'are also excluded by file.name : "*Zone.Identifier")'),
)

ROWS: tuple[Row, ...] = FIRE + NOT_FIRE


def _row_id(row: Row) -> str:
    return f"{Path(row.rule_file).stem}@{Path(row.sample).parent.name}"


def _rule(row: Row) -> dict[str, Any]:
    with (ELASTIC / row.rule_file).open("rb") as f:
        return tomllib.load(f)


def test_the_table_is_big_enough() -> None:
    assert len({r.rule_id for r in FIRE}) >= 20
    assert len(NOT_FIRE) >= 10
    assert all(r.fires for r in FIRE) and not any(r.fires for r in NOT_FIRE)
    assert len({(r.rule_id, r.sample) for r in ROWS}) == len(ROWS)


@pytest.mark.parametrize("row", ROWS, ids=_row_id)
def test_rows_name_real_rules_and_samples(row: Row) -> None:
    """The rule file holds that rule id, is a production EQL rule (not a sequence) whose
    index patterns take Sysmon or Security data; the sample exists."""
    doc = _rule(row)
    rule = doc["rule"]
    assert rule["rule_id"] == row.rule_id
    assert doc["metadata"]["maturity"] == "production"
    assert rule["type"] == "eql" and not rule["query"].lstrip().startswith("sequence")
    assert any(fnmatch.fnmatch(name, pat) for pat in rule["index"] for name in SAMPLE_INDICES)
    assert (REGRESSION / row.sample).is_file()


@pytest.mark.slow
@pytest.mark.parametrize("row", ROWS, ids=_row_id)
def test_rule_fires_as_hand_checked(row: Row, corpus_db: Path) -> None:
    res = CliRunner().invoke(app, ["hunt", str(REGRESSION / row.sample), "--db", str(corpus_db),
                                   "--rules", row.rule_id, "--format", "json", "-j1"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout[res.stdout.index("{"):])
    summary = doc["summary"]
    assert summary["events"] >= 1
    assert (summary["rules_run"], summary["not_runnable"]) == (1, 0), row.reason
    found = {f["rule_id"] for f in doc["findings"]}
    assert (row.rule_id in found) is row.fires, row.reason
