"""``| tstats ... from datamodel=Endpoint.*`` on raw events (``engine.datamodels``): CIM fields
computed from Sysmon / Security events, the ``where`` and the aggregation run on them, the
pre-filter still anchored; what cannot be computed is refused with the reason. On the corpus:
ESCU tstats rules fire on Sigma's own regression EVTX files for the same behaviour."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import SIGMA, run_spl, spl_rule
from ruleatlas.engine.catalog import from_db
from ruleatlas.engine.events import Event
from ruleatlas.engine.readers import read_events
from ruleatlas.engine.runner import Engine, prepare

OPTS = "summariesonly=false allow_old_summaries=true fillnull_value=null"
SYSMON = "Microsoft-Windows-Sysmon/Operational"


def rule(search: str):
    return spl_rule(search)


def run(search: str, rows: list[dict]) -> list[dict]:
    return run_spl(search, rows)


JSCRIPT = (f"| tstats {OPTS} count min(_time) as firstTime from datamodel=Endpoint.Processes "
           'where Processes.process_name=cscript.exe Processes.process="*//e:jscript*" '
           "by Processes.dest Processes.process_name Processes.user Processes.vendor_product "
           "| rename Processes.* as *")


def test_process_rule_on_sysmon_and_security_4688():
    rows = [
        {"Channel": SYSMON, "EventID": 1, "Computer": "h1", "User": "CORP\\a",
         "Image": "C:\\Windows\\System32\\CScript.exe", "CommandLine": "cscript //E:JScript x.js"},
        {"Channel": "Security", "EventID": 4688, "Computer": "h2", "SubjectUserName": "b",
         "NewProcessName": "C:\\Windows\\System32\\cscript.exe",
         "CommandLine": "cscript.exe //e:jscript y.js"},
        {"Channel": SYSMON, "EventID": 1, "Computer": "h3",
         "Image": "C:\\Windows\\System32\\wscript.exe", "CommandLine": "wscript //e:jscript"},
    ]
    found = sorted(run(JSCRIPT, rows), key=lambda m: m["dest"])
    assert [(m["dest"], m["process_name"], m["user"], m["count"]) for m in found] == [
        ("h1", "CScript.exe", "CORP\\a", 1), ("h2", "cscript.exe", "b", 1)]
    # a by-field the engine does not compute takes the search's fillnull_value
    assert found[0]["vendor_product"] == "null"


def test_the_prefilter_anchors_on_the_raw_fields():
    er = rule(JSCRIPT)
    _, anchors = er.compiled({})
    fields = {f for f, _ in anchors}
    assert fields & {"Image", "NewProcessName", "CommandLine"}, anchors
    assert all(f in ("Image", "NewProcessName", "CommandLine", "Process_Command_Line")
               for f in fields)


def test_registry_action_hive_and_value_name():
    q = (f"| tstats {OPTS} count from datamodel=Endpoint.Registry "
         'where Registry.registry_path="*\\\\CurrentVersion\\\\Run\\\\*" Registry.action=modified '
         "by Registry.dest Registry.registry_value_name Registry.registry_hive "
         "Registry.registry_value_data | rename Registry.* as *")
    rows = [{"Channel": SYSMON, "EventID": 13, "Computer": "h1", "EventType": "SetValue",
             "TargetObject": "HKLM\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\\evil",
             "Details": "C:\\evil.exe"},
            {"Channel": SYSMON, "EventID": 12, "Computer": "h1", "EventType": "DeleteValue",
             "TargetObject": "HKLM\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\\gone"}]
    found = run(q, rows)
    assert [(m["registry_value_name"], m["registry_hive"], m["registry_value_data"])
            for m in found] == [("evil", "HKEY_LOCAL_MACHINE", "C:\\evil.exe")]


def test_filesystem_file_name_and_span():
    q = (f"| tstats {OPTS} count from datamodel=Endpoint.Filesystem "
         'where Filesystem.file_name="*.bat" by _time span=1h Filesystem.dest '
         "| rename Filesystem.* as * | where count >= 2")
    rows = [{"Channel": SYSMON, "EventID": 11, "Computer": "h", "TargetFilename": f"C:\\t\\{n}",
             "TimeCreated": t} for n, t in (("a.bat", "2024-01-01T10:05:00Z"),
                                            ("b.bat", "2024-01-01T10:55:00Z"),
                                            ("c.bat", "2024-01-01T11:05:00Z"),
                                            ("d.txt", "2024-01-01T10:10:00Z"))]
    evs = [Event(dict(r), "mem", i) for i, r in enumerate(rows, 1)]
    er = rule(q)
    assert er.runnable, er.reason
    found = [f.matched for f in Engine([er]).run(evs)]
    assert [(m["dest"], m["count"]) for m in found] == [("h", 2)]  # 10:00-11:00 bucket


@pytest.mark.parametrize(("search", "reason"), [
    (f"| tstats {OPTS} count from datamodel=Web where Web.url=*x* by Web.dest", "Web"),
    (f"| tstats {OPTS} count from datamodel=Endpoint.Processes where Processes.os=win* "
     "by Processes.dest", "Processes.os"),
    ("| tstats count from datamodel=Endpoint.Processes where Processes.process_name=a.exe "
     "by Processes.vendor_product", "fillnull_value"),
    (f"| tstats {OPTS} count from datamodel=Endpoint.Processes by Processes.dest "
     "| rename Processes.* as * | join max=0 dest [search index=x | fields dest]", "max=0"),
])
def test_what_tstats_cannot_compute_is_refused_with_the_reason(search, reason):
    er = rule(search)
    assert not er.runnable
    assert reason in (er.reason or ""), er.reason


def test_escu_tstats_rules_fire_on_sigma_regression_data(corpus_db: Path):
    """Cross-vendor: ESCU's "BITSAdmin Download File" and "CertUtil Download With URLCache and
    Split Arguments" (tstats on Endpoint.Processes) fire on the EVTX files SigmaHQ recorded for
    its own bitsadmin and certutil download rules; ESCU tstats rules are runnable by the
    hundreds (1,361 ESCU rules runnable in all, 559 before the pipeline, tstats and joins; an
    unreplayed command's outputs come from its typed step, not a regex over its text)."""
    rules = [lr for lr in from_db(corpus_db) if lr.rule.source == "splunk"]
    prepared = {lr.rule.title: prepare(lr.rule, lr.analysis) for lr in rules}
    assert sum(p.runnable for p in prepared.values()) >= 1361
    tstats = [lr for lr in rules if prepared[lr.rule.title].runnable
              and lr.analysis.stages and lr.analysis.stages[0].command == "tstats"]
    assert len(tstats) >= 650
    pc = SIGMA / "regression_data" / "rules" / "windows" / "process_creation"
    for title, folder in [("BITSAdmin Download File", "proc_creation_win_bitsadmin_download"),
                          ("CertUtil Download With URLCache and Split Arguments",
                           "proc_creation_win_certutil_download")]:
        er = prepared[title]
        assert er.runnable, er.reason
        files = [str(p) for p in (pc / folder).glob("*.evtx")]
        found = list(Engine([er]).run(read_events(files, [])))
        assert found, title
        assert all(f.matched.get("dest") for f in found)


def test_prefilter_is_sound_for_every_runnable_escu_rule(corpus_db: Path):
    """Every runnable ESCU rule (tstats ones anchored through datamodels.anchor_view) over the
    regression EVTX files: the same findings with and without the pre-filter."""
    loaded = [lr for lr in from_db(corpus_db) if lr.rule.source == "splunk"]
    files = [str(p) for p in (SIGMA / "regression_data").rglob("*.evtx")]
    evs = list(read_events(files, []))

    def findings(prefilter: bool) -> list[tuple[str, str, int]]:
        rules = [p for lr in loaded if (p := prepare(lr.rule, lr.analysis)).runnable]
        return sorted((f.rule.rule.id, f.event.file, f.event.position)
                      for f in Engine(rules, prefilter=prefilter).run(evs))

    with_filter = findings(True)
    assert len(with_filter) >= 150
    assert with_filter == findings(False)


def test_join_of_two_tstats_on_process_guid():
    """``tstats Processes | join process_guid [tstats Filesystem]``: the subsearch runs over
    the same events beside the rule; an inner join keeps the process rows that wrote a .bat,
    with the subsearch's fields merged in."""
    q = (f"| tstats {OPTS} count from datamodel=Endpoint.Processes where Processes.process_name=* "
         "by Processes.process_guid Processes.process_name | rename Processes.* as * "
         f"| join process_guid [| tstats {OPTS} count from datamodel=Endpoint.Filesystem "
         'where Filesystem.file_name="*.bat" by Filesystem.process_guid Filesystem.file_name '
         "| rename Filesystem.* as *] | table process_name file_name")
    rows = [{"Channel": SYSMON, "EventID": 1, "ProcessGuid": "{A}", "Image": "C:\\x\\cmd.exe"},
            {"Channel": SYSMON, "EventID": 1, "ProcessGuid": "{B}", "Image": "C:\\x\\calc.exe"},
            {"Channel": SYSMON, "EventID": 11, "ProcessGuid": "{A}",
             "TargetFilename": "C:\\Windows\\System32\\evil.bat"},
            {"Channel": SYSMON, "EventID": 11, "ProcessGuid": "{B}",
             "TargetFilename": "C:\\temp\\notes.txt"}]
    found = run(q, rows)
    assert [(m["process_name"], m["file_name"]) for m in found] == [("cmd.exe", "evil.bat")]
    outer = run(q.replace("| join process_guid", "| join type=outer process_guid"), rows)
    assert sorted(m["process_name"] for m in outer) == ["calc.exe", "cmd.exe"]


def test_join_with_a_subsearch_the_engine_cannot_run_is_refused():
    q = (f"| tstats {OPTS} count from datamodel=Endpoint.Processes by Processes.dest "
         "| rename Processes.* as * | join dest [search index=x | lookup hosts h OUTPUT dest "
         "| stats count by dest]")
    er = rule(q)
    assert not er.runnable
    assert "join subsearch" in (er.reason or "") and "lookup" in (er.reason or ""), er.reason
