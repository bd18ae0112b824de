"""The build pipeline on small hand-made repositories: incremental rebuilds (touch, modify,
delete, side-table change), broken files, duplicate ids, accounting (rules + errors per file)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import EXAMPLE_ID, SPLUNK
from ruleatlas.build import BuildError, build
from ruleatlas.store import Catalog


def sigma_rule(rid: str, title: str, image: str = "\\\\cmd.exe", tags: str = "") -> str:
    return f"""\
title: {title}
id: {rid}
status: test
description: Detects {title.lower()}
{tags}logsource:
    product: windows
    category: process_creation
detection:
    selection:
        Image|endswith: '{image}'
    condition: selection
level: high
"""


ID_A = "aaaaaaaa-0000-4000-8000-000000000001"
ID_B = "aaaaaaaa-0000-4000-8000-000000000002"
ID_C = "aaaaaaaa-0000-4000-8000-000000000003"


def make_sigma(base: Path) -> Path:
    root = base / "sigma"
    (root / "rules" / "windows").mkdir(parents=True)
    (root / "rules" / "windows" / "a.yml").write_text(
        sigma_rule(ID_A, "Alpha Shell", tags="tags:\n    - attack.t1059.001\n"))
    (root / "rules" / "windows" / "b.yml").write_text(sigma_rule(ID_B, "Bravo Tool"))
    (root / "rules" / "windows" / "c.yml").write_text(sigma_rule(ID_C, "Charlie Thing"))
    return root


def make_splunk(base: Path) -> Path:
    """A tiny security_content: the example detection (copied from the corpus into tmp) and
    the macros it calls."""
    root = base / "security_content"
    (root / "detections" / "endpoint").mkdir(parents=True)
    (root / "macros").mkdir()
    shutil.copy(SPLUNK / "detections" / "endpoint" / "powershell_invoke_wmiexec_usage.yml",
                root / "detections" / "endpoint")
    for m in ("powershell.yml", "security_content_ctime.yml",
              "powershell_invoke_wmiexec_usage_filter.yml"):
        if (SPLUNK / "macros" / m).is_file():
            shutil.copy(SPLUNK / "macros" / m, root / "macros")
    return root


def ids(db: Path) -> set[str]:
    with Catalog.open(db, readonly=True) as c:
        return {r[0] for r in c.conn.execute("SELECT id FROM rules")}


def accounted(db: Path) -> None:
    """Every file has rules + errors >= 1 and the files table adds up to the rule and error
    tables, per source."""
    with Catalog.open(db, readonly=True) as c:
        assert c.conn.execute("SELECT count(*) FROM files WHERE rules + errors < 1").fetchone()[
            0] == 0
        for src, d in c.stats()["sources"].items():
            assert d["accounted"], (src, d)
            assert d["file_rules"] + d["file_errors"] == d["rules"] + d["errors"]


def test_fresh_build_and_noop_rebuild(tmp_path: Path) -> None:
    sig, spl = make_sigma(tmp_path), make_splunk(tmp_path)
    db = tmp_path / "c.db"
    s = build([sig, spl], db)
    assert s.by_source() == {"sigma": {"files": 3, "rules": 3, "errors": 0},
                             "splunk": {"files": 1, "rules": 1, "errors": 0}}
    assert ids(db) == {ID_A, ID_B, ID_C, EXAMPLE_ID}
    accounted(db)
    again = build([sig, spl], db)
    assert [r.parsed for r in again.repos] == [0, 0]
    assert [r.unchanged for r in again.repos] == [3, 1]
    assert again.by_source() == s.by_source()


def test_touch_modify_delete(tmp_path: Path) -> None:
    sig = make_sigma(tmp_path)
    db = tmp_path / "c.db"
    build([sig], db)
    a = sig / "rules" / "windows" / "a.yml"
    # touch: new mtime, same content -> hashed, not parsed
    st = a.stat()
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    s = build([sig], db)
    assert (s.repos[0].parsed, s.repos[0].unchanged) == (0, 3)
    # and the new mtime was remembered: the next build does not even hash
    s = build([sig], db)
    assert s.repos[0].parsed == 0
    # modify: parsed again, new title searchable, old one gone
    a.write_text(sigma_rule(ID_A, "Alpha Renamed Zulu"))
    s = build([sig], db)
    assert s.repos[0].parsed == 1
    with Catalog.open(db, readonly=True) as c:
        from ruleatlas.store import RuleQuery

        assert [r.id for r in c.search_rules(RuleQuery(text="zulu")).rows] == [ID_A]
        assert c.search_rules(RuleQuery(text="shell")).total == 0
        assert c.get_rule(ID_A).rule.title == "Alpha Renamed Zulu"
        assert c.rule_attack(ID_A) == []  # the tag went with the edit
    # delete: rule, file row and derived rows leave the catalog
    (sig / "rules" / "windows" / "b.yml").unlink()
    s = build([sig], db)
    assert s.repos[0].deleted == 1
    assert ids(db) == {ID_A, ID_C}
    with Catalog.open(db, readonly=True) as c:
        assert c.conn.execute("SELECT count(*) FROM files").fetchone()[0] == 2
        assert c.conn.execute("SELECT count(*) FROM rules_fts").fetchone()[0] == 2
        for t in ("rule_attack", "rule_events", "indicators", "rule_data_sources"):
            n = c.conn.execute(f"SELECT count(*) FROM {t} WHERE rule_id = ?", (ID_B,)).fetchone()
            assert n[0] == 0, t
    accounted(db)


def test_side_table_change_reanalyzes_from_stored_rules(tmp_path: Path) -> None:
    spl = make_splunk(tmp_path)
    db = tmp_path / "c.db"
    build([spl], db)
    macro = spl / "macros" / "powershell.yml"
    macro.write_text(macro.read_text().replace("definition:", "definition: index=zzz"))
    s = build([spl], db)
    assert s.repos[0].parsed == 0
    assert s.repos[0].reanalyzed == 1
    with Catalog.open(db, readonly=True) as c:
        assert "index=zzz" in c.macro("powershell").definition
        assert EXAMPLE_ID in c.macro("powershell").rules
    assert build([spl], db).repos[0].reanalyzed == 0


def test_a_failed_reanalysis_raises_and_keeps_the_catalog_as_it_was(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-analysis after a macro edit that fails must not keep the stale analysis silently: the
    build raises a BuildError naming the rule, and its transaction leaves the catalog as it was
    (the macro still old), so the next build tries again."""
    import ruleatlas.build as b

    spl = make_splunk(tmp_path)
    db = tmp_path / "c.db"
    build([spl], db)
    macro = spl / "macros" / "powershell.yml"
    macro.write_text(macro.read_text().replace("definition:", "definition: index=zzz"))

    def broken(text: str) -> object:
        raise ValueError("not a rule")

    monkeypatch.setattr(b, "rule_from_json", broken)
    with pytest.raises(BuildError, match=f"stored rule {EXAMPLE_ID} could not be analyzed again "
                                         r"\(ValueError: not a rule\)"):
        build([spl], db, workers=1)
    with Catalog.open(db, readonly=True) as c:
        assert "index=zzz" not in c.macro("powershell").definition
    monkeypatch.undo()
    assert build([spl], db).repos[0].reanalyzed == 1


def test_the_rule_record_has_a_field_per_rules_column(tmp_path: Path) -> None:
    """``store.writer.RuleRow`` is what a build writes into ``rules``: one field per column of
    the table (the rowid apart), so a column added to the schema cannot be forgotten."""
    from ruleatlas.store.writer import RULE_COLUMNS

    db = tmp_path / "c.db"
    build([make_sigma(tmp_path)], db)
    with Catalog.open(db, readonly=True) as c:
        cols = [r[1] for r in c.conn.execute("PRAGMA table_info(rules)")]
    assert sorted(RULE_COLUMNS) == sorted(cols)
    assert len(RULE_COLUMNS) == 24


def test_broken_repository_reports_each_file_and_loads_the_rest(tmp_path: Path) -> None:
    sig = make_sigma(tmp_path)
    w = sig / "rules" / "windows"
    (w / "bad_yaml.yml").write_text("title: x\nid: 1\ndetection: [unclosed\n")
    (w / "no_id.yml").write_text(sigma_rule(ID_A, "No Id").replace(f"id: {ID_A}\n", ""))
    (w / "dup.yml").write_text(sigma_rule(ID_B, "Bravo Copy"))
    (w / "latin1.yml").write_bytes(sigma_rule(ID_C, "Caf\xe9").encode("latin-1")
                                   .replace(ID_C.encode(), b"aaaaaaaa-0000-4000-8000-00000000000f"))
    (w / "empty.yml").write_text("")
    db = tmp_path / "c.db"
    s = build([sig], db)
    assert ids(db) == {ID_A, ID_B, ID_C}
    with Catalog.open(db, readonly=True) as c:
        errs = {e.path.rsplit("/", 1)[1]: e for e in c.errors()}
        assert set(errs) == {"bad_yaml.yml", "no_id.yml", "dup.yml", "latin1.yml", "empty.yml"}
        assert "id" in errs["no_id.yml"].reason and errs["no_id.yml"].kind == "schema"
        assert errs["latin1.yml"].kind == "encoding"
        assert errs["bad_yaml.yml"].line is not None
        assert errs["dup.yml"].kind == "duplicate-id"
        assert "rules/windows/b.yml" in errs["dup.yml"].reason
        assert errs["empty.yml"].kind == "empty"
    assert s.repos[0].files == 8
    accounted(db)


def test_duplicate_winner_is_first_by_path_and_survives_rebuilds(tmp_path: Path) -> None:
    sig = make_sigma(tmp_path)
    w = sig / "rules" / "windows"
    (w / "z_dup.yml").write_text(sigma_rule(ID_A, "Alpha Again"))
    db = tmp_path / "c.db"
    build([sig], db)
    with Catalog.open(db, readonly=True) as c:
        assert c.get_rule(ID_A).rule.path == "rules/windows/a.yml"
    # a new file that sorts first takes the id; the old holder gets the error
    (w / "0_first.yml").write_text(sigma_rule(ID_A, "Alpha Zero"))
    build([sig], db)
    with Catalog.open(db, readonly=True) as c:
        assert c.get_rule(ID_A).rule.path == "rules/windows/0_first.yml"
        dup_paths = {e.path for e in c.errors() if e.kind == "duplicate-id"}
        assert dup_paths == {"rules/windows/a.yml", "rules/windows/z_dup.yml"}
    accounted(db)
    # deleting the holder hands the id to the next file by path
    (w / "0_first.yml").unlink()
    build([sig], db)
    with Catalog.open(db, readonly=True) as c:
        assert c.get_rule(ID_A).rule.path == "rules/windows/a.yml"
        assert {e.path for e in c.errors() if e.kind == "duplicate-id"} == {
            "rules/windows/z_dup.yml"}
    accounted(db)


def test_unknown_folder_and_layout_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="no such folder"):
        build([tmp_path / "nope"], tmp_path / "c.db")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BuildError, match="not a rule repository"):
        build([tmp_path / "empty"], tmp_path / "c.db")


def test_pool_and_inline_builds_store_the_same(tmp_path: Path) -> None:
    """The process pool path (forced with a low threshold) writes what the inline path does."""
    import ruleatlas.build as b

    sig = make_sigma(tmp_path)
    for i in range(12):
        (sig / "rules" / "windows" / f"gen_{i:02d}.yml").write_text(
            sigma_rule(f"bbbbbbbb-0000-4000-8000-{i:012d}", f"Generated {i}", f"\\\\t{i}.exe"))
    old = b.POOL_MIN_TASKS
    try:
        b.POOL_MIN_TASKS = 1
        build([sig], tmp_path / "pool.db", workers=2)
    finally:
        b.POOL_MIN_TASKS = old
    build([sig], tmp_path / "inline.db", workers=1)

    def dump(db: Path) -> list[tuple[str, str, str]]:
        with Catalog.open(db, readonly=True) as c:
            return [(r[0], r[1], r[2]) for r in c.conn.execute(
                "SELECT id, analysis_json, rule_json FROM rules ORDER BY id")]

    assert dump(tmp_path / "pool.db") == dump(tmp_path / "inline.db")


def test_stored_rule_round_trips(tmp_path: Path) -> None:
    spl = make_splunk(tmp_path)
    db = tmp_path / "c.db"
    build([spl], db)
    from ruleatlas.sources import SOURCES

    fr = SOURCES["splunk"].load_file(spl, spl / "detections/endpoint/"
                                     "powershell_invoke_wmiexec_usage.yml")
    with Catalog.open(db, readonly=True) as c:
        stored = c.get_rule(EXAMPLE_ID).rule
    assert stored == fr.rules[0]
    assert json.loads(json.dumps(stored.extra)) == dict(stored.extra)


def _stix(path: Path) -> Path:
    """A tiny enterprise-attack.json: T1059.001 under a custom name, T1047 revoked."""
    def tech(tid: str, name: str, **kw: object) -> dict[str, object]:
        return {"type": "attack-pattern", "id": f"attack-pattern--{tid}", "name": name,
                "external_references": [{"source_name": "mitre-attack", "external_id": tid}],
                "kill_chain_phases": [{"kill_chain_name": "mitre-attack",
                                       "phase_name": "execution"}], **kw}

    path.write_text(json.dumps({"type": "bundle", "objects": [
        tech("T1059.001", "PowerShell (custom bundle)"),
        tech("T1047", "Old WMI", revoked=True),
        {"type": "x-mitre-collection", "x_mitre_version": "99.0"},
    ]}))
    return path


def test_attack_names_from_a_user_bundle(tmp_path: Path) -> None:
    sig, spl = make_sigma(tmp_path), make_splunk(tmp_path)
    db = tmp_path / "c.db"
    build([sig, spl], db)
    with Catalog.open(db, readonly=True) as c:
        assert c.rule_attack(ID_A)[0]["name"] == "PowerShell"
        assert c.rule_attack(ID_A)[0]["known"]
    build([sig, spl], db, attack_json=_stix(tmp_path / "enterprise-attack.json"))
    with Catalog.open(db, readonly=True) as c:
        assert c.rule_attack(ID_A)[0]["name"] == "PowerShell (custom bundle)"
        wmi = c.rule_attack(EXAMPLE_ID)[0]
        assert wmi["technique"] == "T1047" and wmi["revoked"] and wmi["known"]
        assert c.meta("attack_version").endswith(":99.0")
    # back to the bundled data, and an id no data knows is kept and flagged
    (sig / "rules" / "windows" / "c.yml").write_text(
        sigma_rule(ID_C, "Charlie Thing", tags="tags:\n    - attack.t9999\n"))
    build([sig, spl], db)
    with Catalog.open(db, readonly=True) as c:
        assert c.rule_attack(ID_A)[0]["name"] == "PowerShell"
        unknown = c.rule_attack(ID_C)[0]
        assert unknown == {**unknown, "technique": "T9999", "known": False,
                           "name": "unknown technique"}
    with pytest.raises(BuildError, match="no such ATT&CK file"):
        build([sig], db, attack_json=tmp_path / "missing.json")


def test_progress_is_reported(tmp_path: Path) -> None:
    sig = make_sigma(tmp_path)
    seen: list[tuple[str, int, int]] = []
    build([sig], tmp_path / "c.db", progress=lambda label, done, total: seen.append(
        (label, done, total)))
    assert ("parse", 3, 3) in seen
    assert seen[-1] == ("plans", 3, 3)  # the engine's plans, computed last (engine/plans.py)


def test_a_pipeline_failure_on_one_rule_is_a_located_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ruleatlas.build as b

    real = b.rule_to_json

    def flaky(rule: object) -> str:
        if getattr(rule, "id", None) == ID_B:
            raise RuntimeError("boom")
        return real(rule)  # type: ignore[arg-type]

    monkeypatch.setattr(b, "rule_to_json", flaky)
    sig = make_sigma(tmp_path)
    db = tmp_path / "c.db"
    build([sig], db, workers=1)
    assert ids(db) == {ID_A, ID_C}
    with Catalog.open(db, readonly=True) as c:
        (err,) = c.errors()
        assert (err.path, err.kind, err.line) == ("rules/windows/b.yml", "internal", 1)
        assert "boom" in err.reason
    accounted(db)


def test_an_indicator_crash_keeps_the_rule_and_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in indicator extraction or event coverage must not drop a rule, nor pass silently:
    the rule is stored with a located ``crash`` problem naming the exception."""
    import ruleatlas.build as b

    def broken(rule: object, analysis: object) -> object:
        if getattr(rule, "id", None) == ID_B:
            raise KeyError("no such field")
        return ()

    monkeypatch.setattr(b.indicators, "extract", broken)
    monkeypatch.setattr(b.coverage, "events_for", broken)
    sig = make_sigma(tmp_path)
    db = tmp_path / "c.db"
    build([sig], db, workers=1)
    assert ids(db) == {ID_A, ID_B, ID_C}
    with Catalog.open(db, readonly=True) as c:
        row = c.conn.execute("SELECT analysis_json, problems FROM rules WHERE id = ?",
                             (ID_B,)).fetchone()
        problems = json.loads(row[0])["problems"]
        crashes = [p for p in problems if p.get("code") == "crash"]
        assert [p["message"].split(":")[0] for p in crashes] == [
            "indicators could not be extracted", "event coverage could not be computed"]
        assert all("KeyError" in p["message"] and p["location"]["path"] == "rules/windows/b.yml"
                   for p in crashes)
        assert row[1] == len(problems)
        ok = c.conn.execute("SELECT analysis_json FROM rules WHERE id = ?", (ID_A,)).fetchone()
        assert not [p for p in json.loads(ok[0])["problems"] if p.get("code") == "crash"]
    accounted(db)


NESTED_DETECTION = """\
name: Nested Macro Rule
id: cccccccc-0000-4000-8000-000000000001
version: 1
date: '2024-01-01'
author: Test
type: TTP
status: production
description: Calls outer, which calls inner.
data_source: []
search: '`outer` EventCode=1 | stats count by host | `nested_macro_rule_filter`'
how_to_implement: none
known_false_positives: none
references: []
tags:
  analytic_story: []
  mitre_attack_id: []
  risk_score: 10
"""


def _macro(root: Path, name: str, definition: str) -> None:
    (root / "macros" / f"{name}.yml").write_text(
        f"definition: '{definition}'\ndescription: test\nname: {name}\n")


def test_only_rules_using_a_changed_macro_are_reanalyzed(tmp_path: Path) -> None:
    spl = make_splunk(tmp_path)
    (spl / "detections" / "endpoint" / "nested.yml").write_text(NESTED_DETECTION)
    _macro(spl, "outer", "`inner` sourcetype=x")
    _macro(spl, "inner", "index=a")
    _macro(spl, "unrelated", "index=u")
    _macro(spl, "nested_macro_rule_filter", "search *")
    (spl / "stories").mkdir()
    db = tmp_path / "c.db"
    build([spl], db)
    nested = "cccccccc-0000-4000-8000-000000000001"
    with Catalog.open(db, readonly=True) as c:
        assert "outer" in c.rule_column(nested, "rule_macros", "macro")
    _macro(spl, "unrelated", "index=changed")
    assert build([spl], db).repos[0].reanalyzed == 0
    _macro(spl, "inner", "index=b")  # reached only through `outer`
    s = build([spl], db)
    assert s.repos[0].reanalyzed == 1
    with Catalog.open(db, readonly=True) as c:
        assert c.get_rule(nested).rule.title == "Nested Macro Rule"
    (spl / "stories" / "s.yml").write_text(
        "name: A Story\nid: 1\ndescription: d\nnarrative: n\n")
    assert build([spl], db).repos[0].reanalyzed == 0  # stories do not feed analysis
    _macro(spl, "powershell", "index=ps")
    s = build([spl], db)
    assert s.repos[0].reanalyzed == 1  # the example rule, not the nested one
    accounted(db)


def test_a_source_rebuilt_from_another_path_replaces_the_old_clone(tmp_path: Path) -> None:
    sig, spl = make_sigma(tmp_path / "one"), make_splunk(tmp_path / "one")
    db = tmp_path / "c.db"
    build([sig, spl], db)
    moved = shutil.copytree(sig, tmp_path / "two" / "sigma")
    s = build([moved], db)
    assert s.dropped_repos == (str(sig.resolve()),)
    assert s.repos[0].parsed == 3
    assert ids(db) == {ID_A, ID_B, ID_C, EXAMPLE_ID}  # no duplicate-id errors, splunk kept
    with Catalog.open(db, readonly=True) as c:
        assert c.errors() == []
        assert {r[0] for r in c.conn.execute("SELECT DISTINCT root FROM files")} == {
            str(moved.resolve()), str(spl.resolve())}
    accounted(db)


def test_a_file_name_in_bad_utf8_is_reported_not_fatal(tmp_path: Path) -> None:
    sig = make_sigma(tmp_path)
    folder = os.fsencode(sig / "rules" / "windows")
    bad = os.path.join(folder, b"caf\xe9.yml")
    try:
        with open(bad, "wb") as fh:
            fh.write(sigma_rule("dddddddd-0000-4000-8000-000000000001", "Latin Name").encode())
    except OSError:
        pytest.skip("this file system refuses non-UTF-8 names")
    db = tmp_path / "c.db"
    build([sig], db)
    build([sig], db)  # and again: unchanged, still reported once
    with Catalog.open(db, readonly=True) as c:
        (err,) = c.errors()
        assert err.path == "rules/windows/caf\\xe9.yml" and err.kind == "encoding"
    assert ids(db) == {ID_A, ID_B, ID_C}
    accounted(db)


def test_full_rebuild_and_code_change_parse_everything(tmp_path: Path) -> None:
    sig, spl = make_sigma(tmp_path), make_splunk(tmp_path)
    db = tmp_path / "c.db"
    build([sig, spl], db)
    with Catalog.open(db) as c, c.transaction():
        c.conn.execute("INSERT INTO test_results (rule_id, status, ran_at) VALUES (?, 'pass', "
                       "'now')", (ID_A,))
    s = build([sig, spl], db, full=True)
    assert [r.parsed for r in s.repos] == [3, 1]
    assert ids(db) == {ID_A, ID_B, ID_C, EXAMPLE_ID}
    with Catalog.open(db, readonly=True) as c:
        assert c.conn.execute("SELECT count(*) FROM rules_fts").fetchone()[0] == 4
        assert [r.status for r in c.test_results()] == ["pass"]  # results survive
    accounted(db)
    assert [r.parsed for r in build([sig, spl], db).repos] == [0, 0]
    # the pipeline's code changed since the last build (as after an upgrade): all parsed again
    with Catalog.open(db) as c, c.transaction():
        c.conn.execute("UPDATE meta SET value = '\"old\"' WHERE key = 'pipeline_digest'")
    assert [r.parsed for r in build([sig, spl], db).repos] == [3, 1]
    assert [r.parsed for r in build([sig, spl], db).repos] == [0, 0]
    accounted(db)
