"""Indicators on the shared corpus: the example rule, similar, and pinned counts, each
cross-checked by an independent scan of the corpus YAML (no pySigma, no SPL parser, no
normalisation code: plain YAML walking and regular expressions).

Uses the session fixture ``corpus_db`` (the real build) when tests/conftest.py has it; else
builds a catalog the same way the build does (sources -> analyze -> extract -> store) into a
temporary SQLite file.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import EXAMPLE_ID, SIGMA, SPLUNK
from ruleatlas.indicators import extract
from ruleatlas.indicators.query import parse_spec
from ruleatlas.languages import AnalysisContext, analyze
from ruleatlas.sources import SOURCES
from ruleatlas.store import indicators as store
from ruleatlas.store.connection import connect

pytestmark = pytest.mark.slow

# --------------------------------------------------------------------------------------------
# The catalog
# --------------------------------------------------------------------------------------------


def _build(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(Path(store.__file__).with_name("schema.sql").read_text())
    for name, root in (("sigma", SIGMA), ("splunk", SPLUNK)):
        src = SOURCES[name]
        side = src.side_tables(root)
        ctx = AnalysisContext(macros=side.macros, data_sources=side.data_sources)
        for f in src.rule_files(root):
            for r in src.load_file(root, f).rules:
                conn.execute(
                    "INSERT OR IGNORE INTO rules (id, source, root, path, title, language, query,"
                    " body, rule_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, '{}')",
                    (r.id, r.source, str(root), r.path, r.title, r.language, r.query, r.body),
                )
                store.write_indicators(conn, r.id, r.source, extract(r, analyze(r, ctx)))
    store.recount(conn)
    conn.commit()
    conn.close()


@pytest.fixture(scope="session")
def catalog(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    try:
        db = request.getfixturevalue("corpus_db")
    except pytest.FixtureLookupError:
        db = tmp_path_factory.mktemp("indicators") / "catalog.db"
        _build(db)
    return connect(db)


def _splunk_analyzed(conn: Any) -> None:
    """The SPL analyzer gives indicators to 1,627 of the 1,711 ESCU rules (measured): fewer
    than 1,600 means the SPL layer is broken, and the Splunk expectations below would mislead."""
    (n,) = conn.execute(
        "SELECT COUNT(DISTINCT rule_id) FROM indicators WHERE source = 'splunk'").fetchone()
    assert n >= 1600, f"the SPL analyzer gave indicators to only {n} ESCU rules"


def rule_ids(conn: Any, field_key: str, key: str, source: str) -> set[str]:
    return {
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT rule_id FROM indicators"
            " WHERE field_key = ? AND key = ? AND source = ?",
            (field_key, key, source),
        )
    }


def corpus_count(conn: Any, field_key: str, key: str) -> dict[str, int]:
    row = conn.execute(
        "SELECT total, by_source FROM indicator_counts WHERE field_key = ? AND key = ?",
        (field_key, key),
    ).fetchone()
    if row is None:
        return {"total": 0}
    return {"total": row[0], **json.loads(row[1])}


# --------------------------------------------------------------------------------------------
# Independent scans
# --------------------------------------------------------------------------------------------

SIGMA_FOLDERS = ("rules*", "deprecated", "unsupported")


@functools.cache
def _sigma_docs() -> list[tuple[Path, int, dict[str, Any]]]:
    return list(_read_sigma_docs())


def _read_sigma_docs() -> Iterator[tuple[Path, int, dict[str, Any]]]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    for pattern in SIGMA_FOLDERS:
        for folder in sorted(SIGMA.glob(pattern)):
            for p in sorted(folder.rglob("*.yml")):
                try:
                    docs = list(yaml.load_all(p.read_text(encoding="utf-8"), Loader=loader))
                except yaml.YAMLError:
                    continue
                for i, d in enumerate(docs):
                    if isinstance(d, dict) and isinstance(d.get("detection"), dict):
                        yield p, i, d


def _negated_selections(det: dict[str, Any]) -> set[str]:
    cond = det.get("condition")
    text = " ".join(map(str, cond)) if isinstance(cond, list) else str(cond)
    out: set[str] = set()
    for m in re.finditer(r"\bnot\s+(?:(?:1|all)\s+of\s+)?([\w*]+)", text):
        out |= {n for n in det if fnmatch.fnmatchcase(str(n), m.group(1))}
    return out


def sigma_scan(field: str, modifier: str | None, value: str) -> int:
    """Sigma rule documents with ``field|modifier: value`` (``|all`` allowed) in a selection
    the condition does not negate; values compared case-insensitively, as Sigma does."""
    hits = 0
    for _, _, d in _sigma_docs():
        det = d["detection"]
        neg = _negated_selections(det)
        found = False
        for name, sel in det.items():
            if name in ("condition", "timeframe") or name in neg:
                continue
            for item in sel if isinstance(sel, list) else [sel]:
                if not isinstance(item, dict):
                    continue
                for k, v in item.items():
                    f, *mods = str(k).split("|")
                    mods = [x for x in mods if x != "all"]
                    if f != field or mods != ([modifier] if modifier else []):
                        continue
                    vals = v if isinstance(v, list) else [v]
                    found |= any(str(x).lower() == value.lower() for x in vals)
        hits += found
    return hits


@functools.cache
def _splunk_macros() -> dict[str, str]:
    """Argument-less macros by name (``process_cmd`` -> its definition)."""
    out: dict[str, str] = {}
    for p in sorted((SPLUNK / "macros").glob("*.yml")):
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
        if isinstance(doc, dict) and not doc.get("arguments") and "definition" in doc:
            out[str(doc["name"])] = str(doc["definition"])
    return out


def _expand(search: str) -> str:
    """Replace argument-less macro calls by their text, a few levels deep (``process_cmd``
    holds ``Processes.process_name=cmd.exe``)."""
    macros = _splunk_macros()
    for _ in range(3):
        search = re.sub(r"`([\w-]+)`", lambda m: macros.get(m.group(1), m.group(0)), search)
    return search


@functools.cache
def _splunk_searches() -> list[tuple[Path, str]]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    out = []
    for p in sorted((SPLUNK / "detections").rglob("*.yml")):
        doc = yaml.load(p.read_text(encoding="utf-8"), Loader=loader)
        if isinstance(doc, dict) and isinstance(doc.get("search"), str):
            out.append((p, _expand(doc["search"])))
    return out


def spl_scan(field: str | tuple[tuple[str, str], ...], value: str = "") -> int:
    """Splunk detections whose (macro-expanded) search text holds ``field=value`` /
    ``field="value"`` or ``field IN (... "value" ...)`` not right after NOT, for any of the
    given (field, value) spellings; values as written in SPL (``\\\\`` for a backslash),
    compared case-insensitively as SPL search does."""
    spellings = field if isinstance(field, tuple) else ((field, value),)
    checks = []
    for fname, val in spellings:
        f, v = re.escape(fname), re.escape(val)
        checks.append((
            re.compile(rf'(?<![\w.])(NOT\s+)?{f}\s*=\s*"?{v}(?:"|(?=[\s)|]|$))', re.I),
            re.compile(rf"(?<![\w.])(NOT\s+)?{f}\s+IN\s*\(([^)]*)\)", re.I),
            re.compile(rf'(?:^|,)\s*"?{v}"?\s*(?=,|$)', re.I),
        ))
    hits = 0
    for _, search in _splunk_searches():
        ok = False
        for eq, inl, item in checks:
            ok = ok or any(not m.group(1) for m in eq.finditer(search))
            ok = ok or any(
                not m.group(1) and item.search(m.group(2)) for m in inl.finditer(search)
            )
        hits += ok
    return hits


def process_spellings(name: str, parent: bool = False) -> tuple[tuple[str, str], ...]:
    """Every SPL spelling of "the (parent) process image is NAME" the alias table merges:
    the CIM basename fields, and the path fields ending in a backslash and NAME."""
    if parent:
        return (("Processes.parent_process_name", name), ("parent_process_name", name),
                ("ParentImage", "*\\\\" + name), ("Processes.parent_process_path",
                                                  "*\\\\" + name))
    return (("Processes.process_name", name), ("process_name", name),
            ("Image", "*\\\\" + name), ("Processes.process_path", "*\\\\" + name))


# --------------------------------------------------------------------------------------------
# Pinned counts, each cross-checked against the independent scan
# --------------------------------------------------------------------------------------------

# (spec, Sigma field, modifier, value as written in Sigma, pinned sigma count)
SIGMA_PINS = [
    ("ScriptBlockText contains Invoke-WMIExec", "ScriptBlockText", "contains",
     "Invoke-WMIExec", 1),
    (r"Image endswith \cmd.exe", "Image", "endswith", r"\cmd.exe", 126),
    (r"Image endswith \rundll32.exe", "Image", "endswith", r"\rundll32.exe", 95),
    (r"Image endswith \regsvr32.exe", "Image", "endswith", r"\regsvr32.exe", 67),
    (r"Image endswith \mshta.exe", "Image", "endswith", r"\mshta.exe", 69),
    (r"Image endswith \certutil.exe", "Image", "endswith", r"\certutil.exe", 42),
    (r"ParentImage endswith \w3wp.exe", "ParentImage", "endswith", r"\w3wp.exe", 12),
    ("OriginalFileName eq PowerShell.EXE", "OriginalFileName", None, "PowerShell.EXE", 85),
    ("OriginalFileName eq RUNDLL32.EXE", "OriginalFileName", None, "RUNDLL32.EXE", 37),
    ("EventID eq 4104", "EventID", None, "4104", 0),
    # backslashes: registry paths
    (r"TargetObject contains \Software\Microsoft\Windows\CurrentVersion\Run", "TargetObject",
     "contains", r"\Software\Microsoft\Windows\CurrentVersion\Run", 4),
    (r"TargetObject endswith \SOFTWARE\Microsoft\Windows Script\Settings\AmsiEnable",
     "TargetObject", "endswith", r"\SOFTWARE\Microsoft\Windows Script\Settings\AmsiEnable", 1),
]

# (spec, SPL field, value as written in SPL, pinned splunk count): the same indicators seen
# from Splunk, through datamodel fields and the alias table.
SPLUNK_PINS = [
    ("EventCode=4104", "EventCode", "4104", 102),
    ('ScriptBlockText IN "*invoke-wmiexec*"', "ScriptBlockText", "*invoke-wmiexec*", 1),
    ("Processes.process_name=cmd.exe", process_spellings("cmd.exe"), "", 38),
    ("Processes.process_name=rundll32.exe", process_spellings("rundll32.exe"), "", 31),
    ("Processes.process_name=regsvr32.exe", process_spellings("regsvr32.exe"), "", 12),
    ("Processes.process_name=mshta.exe", process_spellings("mshta.exe"), "", 14),
    ("Processes.process_name=certutil.exe", process_spellings("certutil.exe"), "", 12),
    ("Processes.parent_process_name=w3wp.exe", process_spellings("w3wp.exe", True), "", 3),
    ("Processes.original_file_name=PowerShell.EXE", "Processes.original_file_name",
     "PowerShell.EXE", 20),
    ("Processes.original_file_name=RUNDLL32.EXE", "Processes.original_file_name",
     "RUNDLL32.EXE", 21),
    (r'Registry.registry_path="*\SOFTWARE\Microsoft\Windows Script\Settings\AmsiEnable"',
     "Registry.registry_path", r"*\\SOFTWARE\\Microsoft\\Windows Script\\Settings\\AmsiEnable",
     1),
    (r'Registry.registry_path="*\SOFTWARE\Microsoft\Windows\CurrentVersion\Explorer'
     r'\Advanced\Hidden"', "Registry.registry_path",
     r"*\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Explorer\\Advanced\\Hidden", 1),
]


@pytest.mark.parametrize(("spec", "field", "modifier", "value", "pinned"), SIGMA_PINS,
                         ids=[p[0] for p in SIGMA_PINS])
def test_sigma_counts_pinned_and_cross_checked(catalog, spec, field, modifier, value, pinned):
    s = parse_spec(spec)
    got = len(rule_ids(catalog, s.field_key, s.key, "sigma"))
    assert got == sigma_scan(field, modifier, value) == pinned
    assert corpus_count(catalog, s.field_key, s.key).get("sigma", 0) == pinned


@pytest.mark.parametrize(("spec", "field", "value", "pinned"), SPLUNK_PINS,
                         ids=[p[0] for p in SPLUNK_PINS])
def test_splunk_counts_pinned_and_cross_checked(catalog, spec, field, value, pinned):
    _splunk_analyzed(catalog)
    s = parse_spec(spec)
    got = len(rule_ids(catalog, s.field_key, s.key, "splunk"))
    assert got == spl_scan(field, value) == pinned
    assert corpus_count(catalog, s.field_key, s.key).get("splunk", 0) == pinned


def test_sigma_and_splunk_spellings_give_the_same_keys():
    """Each Splunk pin above has its Sigma twin: same (field_key, key)."""
    pairs = [
        ("EventID eq 4104", "EventCode=4104"),
        ("ScriptBlockText contains Invoke-WMIExec", 'ScriptBlockText IN "*invoke-wmiexec*"'),
        (r"Image endswith \cmd.exe", "Processes.process_name=cmd.exe"),
        (r"ParentImage endswith \w3wp.exe", "Processes.parent_process_name=w3wp.exe"),
        ("OriginalFileName eq PowerShell.EXE", "Processes.original_file_name=PowerShell.EXE"),
        (r"TargetObject endswith \SOFTWARE\Microsoft\Windows Script\Settings\AmsiEnable",
         r'Registry.registry_path="*\SOFTWARE\Microsoft\Windows Script\Settings\AmsiEnable"'),
    ]
    for sigma, splunk in pairs:
        a, b = parse_spec(sigma), parse_spec(splunk)
        assert (a.field_key, a.key) == (b.field_key, b.key), (sigma, splunk)


def test_negated_values_are_counted_apart(catalog):
    pos = parse_spec(r"ParentImage endswith \explorer.exe")
    neg = parse_spec(r"ParentImage not endswith \explorer.exe")
    assert neg.key == "!" + pos.key
    assert rule_ids(catalog, neg.field_key, neg.key, "sigma")
    assert corpus_count(catalog, neg.field_key, neg.key) != corpus_count(
        catalog, pos.field_key, pos.key)


# --------------------------------------------------------------------------------------------
# The example rule of the spec page
# --------------------------------------------------------------------------------------------


def test_example_rule_indicators(catalog):
    _splunk_analyzed(catalog)
    rows = store.rule_indicators(catalog, EXAMPLE_ID)
    by_field = {(r["field"], r["op"]): r for r in rows}
    ev = by_field[("EventCode", "eq")]
    assert not ev["negated"] and ev["field_key"] == "EventID"
    (v,) = ev["values"]
    assert (v["value"], v["key"]) == ("4104", "4104")
    assert v["corpus"]["splunk"] == spl_scan("EventCode", "4104") >= 100
    sb = by_field[("ScriptBlockText", "in")]
    (v,) = sb["values"]
    assert (v["value"], v["key"]) == ('"*invoke-wmiexec*"', "*invoke-wmiexec*")
    assert v["corpus"]["sigma"] >= 1 and v["corpus"]["splunk"] >= 1
    sigma = store.rules_with_indicator(catalog, "ScriptBlockText", "*invoke-wmiexec*")["sigma"]
    assert any(r["path"].endswith("posh_ps_malicious_commandlets.yml") for r in sigma)
    # no routing field from the `powershell` macro
    assert not {r["field"] for r in rows} & {"source", "sourcetype", "index"}


def test_similar_on_the_example_rule_finds_the_sigma_twin(catalog):
    _splunk_analyzed(catalog)
    sim = store.similar_rules(catalog, EXAMPLE_ID, 5)
    assert sim[0]["source"] == "sigma"
    assert sim[0]["path"].endswith("posh_ps_malicious_commandlets.yml")
    assert sim[0]["shared"][0]["key"] == "*invoke-wmiexec*"
