"""Splunk security_content reader on the real corpus and on the example page's newer schema."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from conftest import EXAMPLE_ID, EXAMPLE_PAGE, SPLUNK
from ruleatlas.sources import SOURCES, detect, load_macros
from ruleatlas.sources.splunk import severity_from_score

SRC = SOURCES["splunk"]


@pytest.fixture(scope="module")
def corpus_results():
    return [SRC.load_file(SPLUNK, p) for p in SRC.rule_files(SPLUNK)]


def test_detects_layout():
    assert detect(SPLUNK) is SRC


def test_every_detection_loads(corpus_results):
    files = len(corpus_results)
    rules = sum(len(r.rules) for r in corpus_results)
    errors = [e for r in corpus_results for e in r.errors]
    assert files == 1711
    assert files == rules + len(errors)
    assert rules == 1711, [str(e) for e in errors]


def test_deprecated_folder_gives_status(corpus_results):
    rules = [x for r in corpus_results for x in r.rules]
    dep = [x for x in rules if x.path.startswith("detections/deprecated/")]
    assert dep and all(x.status == "deprecated" for x in dep)
    assert Counter(x.status for x in rules)["production"] > 1000


def test_example_rule_corpus_metadata(corpus_results):
    (rule,) = [x for r in corpus_results for x in r.rules if x.id == EXAMPLE_ID]
    assert rule.title == "PowerShell Invoke WmiExec Usage"
    assert rule.path == "detections/endpoint/powershell_invoke_wmiexec_usage.yml"
    assert rule.source_url == (
        "https://github.com/splunk/security_content/blob/develop/"
        "detections/endpoint/powershell_invoke_wmiexec_usage.yml"
    )
    assert rule.attack == ("T1047",)
    assert rule.stories == ("Suspicious WMI Use",)
    assert rule.version == "3" and rule.date == "2024-09-30"
    assert rule.language == "spl" and rule.query.startswith("`powershell` EventCode=4104")
    assert rule.severity == "critical"  # tags.risk_score 100
    assert rule.data_sources == ("Powershell Script Block Logging 4104",)
    assert rule.extra["tags"]["observable"][0]["name"] == "Computer"
    assert rule.extra["drilldown_searches"]
    assert rule.tests[0].kind == "attack_data" and rule.tests[0].sourcetype == "xmlwineventlog"
    assert rule.body == (SPLUNK / rule.path).read_text(encoding="utf-8")


def _example_body() -> str:
    text = EXAMPLE_PAGE.read_text(encoding="utf-8")
    lines = text.splitlines()
    start = lines.index("Rule body splunk") + 1
    end = lines.index("Stages and Predicates")
    return "\n".join(lines[start:end]).strip() + "\n"


def test_example_page_newer_schema(tmp_path: Path):
    root = tmp_path / "security_content"
    (root / "detections" / "endpoint").mkdir(parents=True)
    (root / "macros").mkdir()
    f = root / "detections" / "endpoint" / "powershell_invoke_wmiexec_usage.yml"
    f.write_text(_example_body(), encoding="utf-8")
    assert detect(root) is SRC
    assert list(SRC.rule_files(root)) == [f]
    res = SRC.load_file(root, f)
    assert res.errors == ()
    (rule,) = res.rules
    assert rule.id == EXAMPLE_ID
    assert rule.severity == "medium"
    assert rule.extra["finding"]["entity"] == {"field": "dest", "type": "system", "score": 50}
    assert rule.attack == ("T1047",)
    assert rule.stories == ("Scattered Lapsus$ Hunters", "Suspicious WMI Use")
    assert rule.version == "12"
    assert (rule.date, rule.modified) == ("2023-03-22", "2026-05-13")
    assert rule.status == "production" and rule.type == "TTP"
    assert rule.author == "Michael Haag, Splunk"
    assert rule.query.splitlines()[1] == "  | fillnull"
    assert len(rule.extra["drilldown_searches"]) == 2
    assert rule.extra["product"][0] == "Splunk Enterprise"
    assert rule.tests[0].sourcetype == "XmlWinEventLog"
    assert rule.falsepositives[0].startswith("False positives should be limited")


@pytest.mark.parametrize(
    ("score", "severity"),
    [(100, "critical"), (80, "critical"), (79, "high"), (60, "high"), (50, "medium"),
     (40, "medium"), (39.9, "low"), (20, "low"), (19, "informational"), (0, "informational")],
)
def test_severity_thresholds(score, severity):
    assert severity_from_score(score) == severity


def test_rba_and_confidence_scores(tmp_path: Path):
    root = tmp_path
    (root / "detections").mkdir()
    (root / "macros").mkdir()
    base = "name: X\nid: {id}\nsearch: index=x\n"
    (root / "detections" / "rba.yml").write_text(
        base.format(id="a1") + "rba:\n  risk_objects:\n  - field: user\n    type: user\n"
        "    score: 64\n  - field: dest\n    type: system\n    score: 20\n")
    (root / "detections" / "ci.yml").write_text(
        base.format(id="a2") + "tags:\n  confidence: 50\n  impact: 70\n")
    (root / "detections" / "none.yml").write_text(base.format(id="a3"))
    got = {r.rules[0].id: r.rules[0].severity
           for r in (SRC.load_file(root, p) for p in SRC.rule_files(root))}
    assert got == {"a1": "high", "a2": "low", "a3": None}


def test_macros_keyed_by_name_and_arity():
    macros = load_macros(SPLUNK)
    assert len(macros) == len(list((SPLUNK / "macros").glob("*.yml")))
    ctime = macros["security_content_ctime(1)"]
    assert ctime.arguments == ("field",) and "$field$" in ctime.definition
    assert macros["powershell"].arguments == ()
    assert ctime.path == "macros/security_content_ctime.yml"


def test_side_tables_on_corpus():
    st = SRC.side_tables(SPLUNK)
    assert st.errors == ()
    assert len(st.stories) == len(list((SPLUNK / "stories").rglob("*.yml")))
    assert "Suspicious WMI Use" in st.stories
    ds = st.data_sources["Powershell Script Block Logging 4104"]
    assert ds["sourcetype"] and "ScriptBlockText" in ds["fields"]
    assert len(st.lookups) == len(list((SPLUNK / "lookups").glob("*.yml")))
    assert len(st.digest) == 64 and st.digest == SRC.side_tables(SPLUNK).digest


def test_side_table_errors_are_reported(tmp_path: Path):
    (tmp_path / "detections").mkdir()
    (tmp_path / "macros").mkdir()
    (tmp_path / "stories").mkdir()
    (tmp_path / "macros" / "ok.yml").write_text("name: ok\ndefinition: index=x\n")
    (tmp_path / "macros" / "bad.yml").write_text("name: bad\ndefinition: [unclosed\n")
    (tmp_path / "stories" / "noname.yml").write_text("description: x\n")
    st = SRC.side_tables(tmp_path)
    assert list(st.macros) == ["ok"]
    errs = {e.path: e for e in st.errors}
    assert errs["macros/bad.yml"].kind == "yaml" and errs["macros/bad.yml"].line == 3
    assert errs["stories/noname.yml"].kind == "schema"
    before = st.digest
    (tmp_path / "macros" / "ok.yml").write_text("name: ok\ndefinition: index=y\n")
    assert SRC.side_tables(tmp_path).digest != before


def test_source_url_follows_fork_remote(tmp_path: Path):
    (tmp_path / "detections").mkdir()
    (tmp_path / "macros").mkdir()
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text(
        '[remote "upstream"]\n\turl = https://github.com/splunk/security_content.git\n'
        '[remote "origin"]\n\turl = https://github.com/acme/security_content\n')
    p = tmp_path / "detections" / "a.yml"
    p.write_text("name: A\nid: b1\nsearch: index=x\n")
    (rule,) = SRC.load_file(tmp_path, p).rules
    assert rule.source_url == "https://github.com/acme/security_content/blob/develop/detections/a.yml"
