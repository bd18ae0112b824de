"""The alias table against the Splunk data_sources field_mappings it was written from."""

from __future__ import annotations

import pytest
import yaml

from conftest import SPLUNK
from ruleatlas.indicators.fields import AliasError, alias_table, field_info, parse_table

# Mappings we deliberately do not follow (see aliases.yaml): PowerShell 4104 maps script text
# and script block ids to the process command line and id, which would make unrelated
# indicators meet; Security 4688 names the parent process id ``ProcessId`` and the creator
# ``SubjectUserSid``, names that mean other things in Sysmon and in other Security events.
EXCEPTIONS = {
    ("powershell_script_block_logging_4104.yml", "ScriptBlockText"),
    ("powershell_script_block_logging_4104.yml", "Path"),
    ("powershell_script_block_logging_4104.yml", "ScriptBlockId"),
    ("powershell_script_block_logging_4104.yml", "UserID"),
    ("windows_event_log_security_4688.yml", "ProcessId"),
    ("windows_event_log_security_4688.yml", "SubjectUserSid"),
}


def _cim_mappings():
    out = []
    for path in sorted((SPLUNK / "data_sources").glob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for m in doc.get("field_mappings") or ():
            if m.get("data_model") != "cim":
                continue
            for vendor, cim in (m.get("mapping") or {}).items():
                out.append((path.name, str(vendor), str(cim)))
    return out


def test_there_are_cim_mappings_to_check():
    assert len(_cim_mappings()) >= 40


def test_every_cim_mapping_of_the_corpus_is_in_the_alias_table():
    missing = []
    for name, vendor, cim in _cim_mappings():
        if (name, vendor.split("|")[0]) in EXCEPTIONS:
            continue
        base, _, modifier = vendor.partition("|")
        v, c = field_info(base), field_info(cim)
        if not c.known or v.key != c.key:
            missing.append(f"{name}: {vendor} -> {cim} ({v.key} vs {c.key})")
            continue
        # "Image|endswith: Processes.process_name" is exactly a basename alias
        if modifier == "endswith" and not c.basename:
            missing.append(f"{name}: {cim} should be a basename alias of {v.key}")
    assert missing == []


def test_lookup_is_case_insensitive_and_unknown_names_stay_as_written():
    assert field_info("processes.PROCESS_NAME").key == "Image"
    assert field_info("Processes.process_name").basename
    assert field_info("SomethingElse") .key == "SomethingElse"
    assert not field_info("SomethingElse").known


def test_table_errors_name_the_entry():
    with pytest.raises(AliasError, match="entry 2: 'x' already maps to 'A'"):
        parse_table({"aliases": [{"field": "A", "same": ["x"]}, {"field": "B", "same": ["x"]}]})
    with pytest.raises(AliasError, match="unknown keys"):
        parse_table({"aliases": [{"field": "A", "sam": ["b"]}]})
    with pytest.raises(AliasError, match="needs a 'field'"):
        parse_table({"aliases": [{"same": ["b"]}]})


def test_table_is_loaded_once():
    assert alias_table() is alias_table()


# --- the Elastic side: ECS names ----------------------------------------------------------------

# ECS field -> (canonical field, basename, token), from Elastic's windows integration pipelines
# (sysmon_operational and powershell_operational ingest_pipeline/default.yml, see aliases.yaml).
ECS_EXPECTED = {
    "process.executable": ("Image", False, False),  # rename Image -> process.executable
    "process.name": ("Image", True, False),  # last "\" component of process.executable
    "process.command_line": ("CommandLine", False, False),
    "process.args": ("CommandLine", False, True),  # CommandLineToArgv(command_line)
    "process.parent.executable": ("ParentImage", False, False),
    "process.parent.name": ("ParentImage", True, False),
    "process.parent.command_line": ("ParentCommandLine", False, False),
    "process.parent.args": ("ParentCommandLine", False, True),
    "process.pe.original_file_name": ("OriginalFileName", False, False),
    "process.pid": ("ProcessId", False, False),
    "process.entity_id": ("ProcessGuid", False, False),
    "process.working_directory": ("CurrentDirectory", False, False),
    "event.code": ("EventID", False, False),  # set event.code = winlog.event_id
    "winlog.event_id": ("EventID", False, False),
    "winlog.channel": ("Channel", False, False),
    "registry.path": ("TargetObject", False, False),
    "registry.value": ("TargetObject", True, False),  # last component of TargetObject
    "registry.data.strings": ("Details", False, False),
    "file.path": ("TargetFilename", False, False),
    "file.name": ("TargetFilename", True, False),
    "powershell.file.script_block_text": ("ScriptBlockText", False, False),
    "dns.question.name": ("QueryName", False, False),
    "destination.ip": ("DestinationIp", False, False),
    "destination.port": ("DestinationPort", False, False),
    "destination.domain": ("DestinationHostname", False, False),
    "source.ip": ("SourceIp", False, False),
    "source.port": ("SourcePort", False, False),
    "user.name": ("User", True, False),  # split DOMAIN\user, user.name = the part after "\"
    "winlog.computer_name": ("Computer", False, False),
}


def test_ecs_fields_key_as_their_sysmon_field():
    got = {n: (field_info(n).key, field_info(n).basename, field_info(n).token)
           for n in ECS_EXPECTED}
    assert got == ECS_EXPECTED


def _elastic_fields() -> set[str]:
    """Every field an Elastic corpus rule filters on or joins by (required_fields are not in the
    corpus TOML: Elastic's packaging derives them from the queries, as this does)."""
    from ruleatlas.model import Predicate, walk
    from test_elastic_rules import corpus_analyses

    out: set[str] = set()
    for _, a in corpus_analyses():
        for st in a.stages:
            out.update(st.by)
            out.update(n.field for n in walk(st.condition)
                       if isinstance(n, Predicate) and n.field)
    return out


def test_every_ecs_alias_is_a_field_elastic_rules_use():
    """No dead or misspelt ECS name in the table: each one occurs in the corpus rules."""
    import re

    table = alias_table()
    ecs = {e for entry in table.entries
           for e in (*(entry.get("same") or ()), *(entry.get("basename") or ()),
                     *(entry.get("token") or ()))
           if re.fullmatch(r"[a-z_]+(\.[a-z_]+)+", e)}
    assert len(ecs) >= 30
    used = {f.lower() for f in _elastic_fields()}
    unused = sorted(e for e in ecs if e not in used)
    assert unused == []


def test_process_args_meets_command_line_contains():
    """``process.args : "-decode"`` (one argument of the command line) keys like Sigma's
    ``CommandLine|contains: -decode`` and Splunk's ``Processes.process="*-decode*"``."""
    from ruleatlas.indicators.normalize import field_key_of, predicate_keys
    from ruleatlas.languages.kql import analyze_kql_query
    from ruleatlas.model import Op, Pattern, Predicate, Wild

    (kql,) = [p for p in _leaves(analyze_kql_query('process.args : "-decode"').condition)]
    sigma = Predicate("CommandLine", Op.CONTAINS, ("-decode",))
    spl = Predicate("Processes.process", Op.WILDCARD,
                    (Pattern((Wild.ANY, "-decode", Wild.ANY)),))
    keys = {(field_key_of(p)[1].key, predicate_keys(p, lang, False)[0][1])
            for p, lang in ((kql, "kql"), (sigma, "sigma"), (spl, "spl"))}
    assert keys == {("CommandLine", "*-decode*")}


def _leaves(node):
    from ruleatlas.model import Predicate, walk

    return [n for n in walk(node) if isinstance(n, Predicate)]


def test_example_eventcode_4104_gains_elastic_rules():
    """The example rule's ``EventCode eq 4104`` indicator and Elastic's ``event.code`` 4104
    (KQL, ES|QL, EQL) share one key, through the same extraction the build runs."""
    from conftest import EXAMPLE_ID
    from ruleatlas.indicators import extract
    from ruleatlas.languages.spl.analyze import analyze_query as analyze_spl
    from ruleatlas.model import Rule
    from ruleatlas.sources.splunk import load_detection, load_macros
    from test_elastic_rules import analyze, analyze_query, load

    path = SPLUNK / "detections/endpoint/powershell_invoke_wmiexec_usage.yml"
    (example,) = load_detection(SPLUNK, path).rules
    assert example.id == EXAMPLE_ID
    spl = analyze_spl(example.query, load_macros(SPLUNK))
    # KQL `event.code: "4104" and ...`, ES|QL `| where event.code == "4104"`
    kql_rule = "rules/windows/defense_evasion_amsi_bypass_rpc_ndrclientcall.toml"
    esql_rule = "rules/windows/defense_evasion_posh_obfuscation_string_concat.toml"
    eql = Rule(id="e", source="elastic", path="x", title="t", language="eql",
               query='any where event.code == "4104"', body="")

    def keys(rule, analysis):
        return {(i.field, i.field_key, v.key) for i in extract(rule, analysis) for v in i.values
                if i.field_key == "EventID"}

    assert keys(example, spl) == {("EventCode", "EventID", "4104")}
    for rel in (kql_rule, esql_rule):
        assert keys(load(rel), analyze(rel)) == {("event.code", "EventID", "4104")}
    assert keys(eql, analyze_query("eql", eql.query)) == {("event.code", "EventID", "4104")}
