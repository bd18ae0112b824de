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
