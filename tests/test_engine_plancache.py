"""The engine's plan cache (engine/plans.py, store/plans.py): the cached path finds exactly what
the uncached path finds; a changed rule recomputes only its plan, a new engine every plan; a
broken row is reported and recomputed, never a crash and never a wrong finding."""

from __future__ import annotations

import pickle
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from conftest import OTRF, SIGMA
from ruleatlas.build import build
from ruleatlas.engine import plans
from ruleatlas.engine.catalog import from_db, is_retired
from ruleatlas.engine.hunt import HuntReport, hunt, hunt_plans

GRIXBA = (SIGMA / "regression_data" / "rules-emerging-threats" / "2025" / "Malware" / "Grixba"
          / "proc_creation_win_malware_grixba_recon"
          / "af688c76-4ce4-4309-bfdd-e896f01acf27.evtx")
REGRESSION = SIGMA / "regression_data"

ID_SCAN = "bbbbbbbb-0000-4000-8000-000000000001"
ID_MISS = "bbbbbbbb-0000-4000-8000-000000000002"
ID_LINUX = "bbbbbbbb-0000-4000-8000-000000000003"


def _rule(rid: str, title: str, detection: str, product: str = "windows",
          category: str = "process_creation") -> str:
    return (f"title: {title}\nid: {rid}\nstatus: test\nlogsource:\n    product: {product}\n"
            f"    category: {category}\ndetection:\n{detection}    condition: selection\n"
            "level: high\n")


def make_repo(base: Path) -> Path:
    """Three hand-written Sigma rules. The Grixba regression EVTX holds one Sysmon 1 event
    whose CommandLine is ``GRB_NET.exe  -m:scan -i:f -d:list.txt`` (read with ``ruleatlas
    hunt --format jsonl``): ID_SCAN matches it, ID_MISS and ID_LINUX do not."""
    root = base / "sigma"
    d = root / "rules" / "windows"
    d.mkdir(parents=True)
    (d / "scan.yml").write_text(_rule(ID_SCAN, "Grixba Scan Switch",
                                      "    selection:\n        CommandLine|contains: '-m:scan'\n"))
    (d / "miss.yml").write_text(_rule(ID_MISS, "Nothing Here",
                                      "    selection:\n        CommandLine|contains: 'zz-qq'\n"))
    (d / "linux.yml").write_text(_rule(ID_LINUX, "Linux Scan", "    selection:\n"
                                       "        CommandLine|contains: '-m:scan'\n",
                                       product="linux"))
    return root


def findings(found: Iterator[Any]) -> list[tuple[Any, ...]]:
    return sorted((f.rule.rule.id, f.event.file, f.event.record_id,
                   repr(sorted(f.matched.items()))) for f in found)


def uncached(db: Path, paths: list[str]) -> list[tuple[Any, ...]]:
    rules = [lr for lr in from_db(db) if not is_retired(lr.rule)]
    return findings(hunt(rules, paths, HuntReport()))


def cached(db: Path, paths: list[str], report: HuntReport | None = None
           ) -> tuple[list[tuple[Any, ...]], plans.LoadedPlans]:
    got = plans.load(db)
    heads = [h for h in got.plans if not is_retired(h.rule)]
    return findings(hunt_plans(got, heads, paths, report or HuntReport())), got


def rows(db: Path) -> dict[str, bytes]:
    with closing(sqlite3.connect(db)) as c:
        return dict(c.execute("SELECT rule_id, plan FROM engine_plans"))


def set_plan(db: Path, rule_id: str, blob: bytes) -> None:
    with closing(sqlite3.connect(db)) as c, c:
        c.execute("UPDATE engine_plans SET plan=? WHERE rule_id=?", (blob, rule_id))


@pytest.fixture()
def small(tmp_path: Path) -> tuple[Path, Path]:
    repo = make_repo(tmp_path)
    db = tmp_path / "c.db"
    build([repo], db, workers=1)
    return repo, db


def test_build_writes_plans_and_hunt_trusts_them(small: tuple[Path, Path]) -> None:
    _, db = small
    assert set(rows(db)) == {ID_SCAN, ID_MISS, ID_LINUX}
    got, loaded = cached(db, [str(GRIXBA)])
    assert not loaded.checked and loaded.computed == 0 and not loaded.problems
    assert [f[0] for f in got] == [ID_SCAN]
    assert got[0][2] == 142649  # the record id of the event
    assert got == uncached(db, [str(GRIXBA)])


def test_changed_rule_recomputes_only_its_plan(small: tuple[Path, Path]) -> None:
    repo, db = small
    before = rows(db)
    (repo / "rules" / "windows" / "miss.yml").write_text(_rule(
        ID_MISS, "Now A Match", "    selection:\n        CommandLine|contains: '-d:list'\n"))
    build([repo], db, workers=1)
    after = rows(db)
    assert after[ID_SCAN] == before[ID_SCAN] and after[ID_LINUX] == before[ID_LINUX]
    assert after[ID_MISS] != before[ID_MISS]
    got, loaded = cached(db, [str(GRIXBA)])
    assert loaded.computed == 0
    assert [f[0] for f in got] == sorted([ID_SCAN, ID_MISS])
    assert got == uncached(db, [str(GRIXBA)])


def test_rule_changed_behind_the_cache_is_noticed(small: tuple[Path, Path]) -> None:
    """A writer that does not refresh the plans (an older Rule Atlas) changes a rule and the
    build stamp: the hunt checks every digest and recomputes that one plan."""
    _, db = small
    before = rows(db)
    with closing(sqlite3.connect(db)) as c, c:
        rj = c.execute("SELECT rule_json FROM rules WHERE id=?", (ID_MISS,)).fetchone()[0]
        c.execute("UPDATE rules SET rule_json=? WHERE id=?",
                  (rj.replace("Nothing Here", "Nothing Here Either"), ID_MISS))
        c.execute("UPDATE meta SET value='{\"at\": \"elsewhen\"}' WHERE key='last_build'")
    got, loaded = cached(db, [str(GRIXBA)])
    assert loaded.checked and loaded.computed == 1
    assert got == uncached(db, [str(GRIXBA)])
    after = rows(db)
    assert after[ID_SCAN] == before[ID_SCAN] and after[ID_MISS] != before[ID_MISS]
    titles = {h.rule.id: h.rule.title for h in loaded.plans}
    assert titles[ID_MISS] == "Nothing Here Either"
    again = plans.load(db)  # stored back with the new stamp: trusted again
    assert not again.checked and again.computed == 0


def test_new_engine_version_recomputes_everything(small: tuple[Path, Path],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _, db = small
    old = plans.engine_key()
    monkeypatch.setattr(plans, "ENGINE_VERSION", plans.ENGINE_VERSION + 1)
    plans.engine_key.cache_clear()
    try:
        assert plans.engine_key() != old
        got, loaded = cached(db, [str(GRIXBA)])
        assert loaded.checked and loaded.computed == 3
        with closing(sqlite3.connect(db)) as c:
            assert {e for (e,) in c.execute("SELECT engine FROM engine_plans")} == {
                plans.engine_key()}
        assert got == uncached(db, [str(GRIXBA)])
    finally:
        plans.engine_key.cache_clear()


@pytest.mark.parametrize("blob", [b"", b"garbage\x00\xff", pickle.dumps({"not": "a plan"}),
                                  b"\x80\x05cos\nsystem\n(S'echo pwned'\ntR."])
def test_broken_row_is_reported_and_recomputed(small: tuple[Path, Path], blob: bytes) -> None:
    _, db = small
    set_plan(db, ID_SCAN, blob)
    got, loaded = cached(db, [str(GRIXBA)])
    assert [f[0] for f in got] == [ID_SCAN]
    assert loaded.computed == 1
    assert len(loaded.problems) == 1
    msg = str(loaded.problems[0])
    assert str(db) in msg and ID_SCAN in msg and "engine_plans" in msg
    assert plans.load(db).problems == ()  # the row was written again


def test_broken_body_found_during_the_hunt_falls_back(small: tuple[Path, Path]) -> None:
    """A head that reads well with a body that does not (checksum mismatch) is only opened
    when its events come: the rule is prepared from its analysis there, and reported."""
    _, db = small
    h = plans.loads(rows(db)[ID_SCAN], plans.PlanHead)
    bad = plans.PlanHead(h.rule, h.keys, h.reason, h.tactics, h.joins, h.check,
                         h.body[:-3] + b"xyz")
    set_plan(db, ID_SCAN, plans.dumps(bad))
    report = HuntReport()
    got, loaded = cached(db, [str(GRIXBA)], report)
    assert loaded.problems == ()
    assert [f[0] for f in got] == [ID_SCAN]
    assert len(report.problems) == 1 and ID_SCAN in str(report.problems[0])


def test_plan_of_a_different_rule_is_refused(small: tuple[Path, Path]) -> None:
    _, db = small
    set_plan(db, ID_MISS, rows(db)[ID_SCAN])
    got, loaded = cached(db, [str(GRIXBA)])
    assert [f[0] for f in got] == [ID_SCAN]
    assert len(loaded.problems) == 1 and "holds the plan of" in str(loaded.problems[0])


def test_catalog_that_cannot_be_written_still_hunts(small: tuple[Path, Path],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Plans recomputed by a hunt on a catalog it may not write (read-only file, a build
    holding the lock): the findings are the same, the failure to store is reported."""
    from ruleatlas.store import plans as store

    _, db = small
    with closing(sqlite3.connect(db)) as c, c:
        c.execute("DELETE FROM engine_plans")

    def refuse(*_a: Any, **_k: Any) -> None:
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(store, "write", refuse)
    got, loaded = cached(db, [str(GRIXBA)])
    assert [f[0] for f in got] == [ID_SCAN]
    assert loaded.computed == 3
    assert len(loaded.problems) == 1
    assert "plans not stored (attempt to write a readonly database)" in str(loaded.problems[0])


@pytest.mark.slow
def test_cached_equals_uncached_on_the_corpus(corpus_db: Path, tmp_path: Path) -> None:
    """The full catalog (Sigma + Splunk): every regression EVTX and one OTRF archive give the
    same findings with and without the cache."""
    db = tmp_path / "catalog.db"
    shutil.copy(corpus_db, db)
    evtx = sorted(str(p) for p in REGRESSION.rglob("*.evtx"))
    archive = sorted(str(p) for p in (OTRF / "datasets" / "atomic" / "windows").rglob("*.zip"))
    paths = [*evtx, archive[0]]
    got, loaded = cached(db, paths)
    assert loaded.computed == 0 and not loaded.problems  # the build wrote every plan
    assert len(got) > 200  # the regression files hold at least one finding per rule tested
    assert got == uncached(db, paths)


def test_catalog_without_the_plan_tables(small: tuple[Path, Path]) -> None:
    """A catalog written before the cache existed: the first hunt prepares every rule and
    creates the tables; the next one reads them."""
    _, db = small
    with closing(sqlite3.connect(db)) as c, c:
        c.execute("DROP TABLE engine_plans")
        c.execute("DROP TABLE engine_plans_state")
    got, loaded = cached(db, [str(GRIXBA)])
    assert [f[0] for f in got] == [ID_SCAN] and loaded.computed == 3
    assert set(rows(db)) == {ID_SCAN, ID_MISS, ID_LINUX}
    assert plans.load(db).computed == 0


def test_cli_hunt_reports_a_broken_row_and_finds_the_same(small: tuple[Path, Path]) -> None:
    import json

    from typer.testing import CliRunner

    from ruleatlas.cli import app

    _, db = small
    set_plan(db, ID_SCAN, b"garbage")
    res = CliRunner().invoke(app, ["hunt", str(GRIXBA), "--db", str(db), "--format", "jsonl"])
    assert res.exit_code == 0, res.output
    assert f"engine_plans row '{ID_SCAN}'" in res.stderr
    assert "plan cache: 1 rule(s) prepared and cached" in res.stderr
    lines = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
    assert [(d["rule_id"], d["record_id"]) for d in lines] == [(ID_SCAN, 142649)]
    assert lines[0]["matched"] == {"CommandLine": "GRB_NET.exe  -m:scan -i:f -d:list.txt"}
