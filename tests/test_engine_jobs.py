"""``hunt --jobs N``: the inputs shared out to worker processes give the findings of one
process, finding by finding and in the same order, and the same report (engine.jobs)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import OTRF, SIGMA

from ruleatlas.engine.events import InputRead
from ruleatlas.engine.hunt import HuntReport, hunt_plans
from ruleatlas.engine.jobs import default_jobs, units_of
from ruleatlas.engine.plans import load

REGRESSION = SIGMA / "regression_data"
# three OTRF archives: Sysmon + Security JSON lines (zip) and a tar.gz
ARCHIVES = ["execution/host/empire_launcher_vbs.zip",
            "credential_access/host/empire_mimikatz_logonpasswords.zip",
            "defense_evasion/host/empire_wdigest_downgrade.tar.gz"]


def _hunt(db: Path, paths: list[str], jobs: int) -> tuple[list[tuple[Any, ...]], HuntReport]:
    plans = load(db, store_back=False)
    report = HuntReport()
    got = [(f.rule.rule.id, f.event.file, f.event.position, f.event.record_id,
            sorted(f.matched.items(), key=str))
           for f in hunt_plans(plans, None, paths, report, jobs=jobs)]
    return got, report


def _same(db: Path, paths: list[str]) -> HuntReport:
    one, r1 = _hunt(db, paths, 1)
    two, r2 = _hunt(db, paths, 2)
    assert len(one) == len(two)
    for a, b in zip(one, two, strict=True):  # finding by finding, in order
        assert a == b
    assert (r2.events, r2.findings, r2.rules_run) == (r1.events, r1.findings, r1.rules_run)
    assert r2.by_rule == r1.by_rule and r2.by_tactic == r1.by_tactic
    assert r2.not_runnable == r1.not_runnable
    assert r2.errors == r1.errors and r2.inputs == r1.inputs
    assert r2.exit_code() == r1.exit_code()
    return r1


@pytest.mark.slow
def test_regression_evtx_jobs_2_equals_jobs_1(corpus_db: Path) -> None:
    r = _same(corpus_db, [str(REGRESSION)])
    assert r.events > 300 and r.findings > 300  # every regression file, Sigma + Splunk rules
    assert len(r.inputs) == len(units_of([str(REGRESSION)]))


@pytest.mark.slow
def test_otrf_archives_jobs_2_equals_jobs_1(corpus_db: Path) -> None:
    base = OTRF / "datasets" / "atomic" / "windows"
    paths = [str(base / a) for a in ARCHIVES]
    r = _same(corpus_db, paths)
    assert [i.file for i in r.inputs] == paths
    sources = {r.titles[k][2] for k in r.by_rule}
    assert sources == {"sigma", "splunk", "elastic"}  # every vendor found something


@pytest.mark.slow
def test_aggregating_rules_see_every_input(corpus_db: Path) -> None:
    """A stats rule grouped over events of several files: the workers each see a part, the
    parent's aggregation sees all (counts equal those of one process)."""
    base = OTRF / "datasets" / "atomic" / "windows"
    paths = [str(base / a) for a in ARCHIVES]
    one, _ = _hunt(corpus_db, paths + paths, 1)  # each archive twice: groups span inputs
    two, _ = _hunt(corpus_db, paths + paths, 2)
    assert one == two
    counts = [dict(m).get("count") for *_, m in one if dict(m).get("count") is not None]
    assert counts  # some aggregated rows, whose counts include both copies of an archive


def test_read_errors_and_missing_inputs_keep_their_place(tmp_path: Path) -> None:
    """Units in input order: a missing path and an unreadable file are reported where
    ``read_events`` reports them, with no rule at all (two workers)."""
    from ruleatlas.engine.hunt import run

    bad = tmp_path / "bad.evtx"
    bad.write_bytes(b"not an evtx file at all")
    empty = tmp_path / "empty"
    empty.mkdir()
    good = sorted(REGRESSION.rglob("*.evtx"))[:3]
    paths = [str(good[0]), str(tmp_path / "missing.json"), str(bad), str(empty),
             *map(str, good[1:])]
    reports = []
    for jobs in (1, 2):
        rep = HuntReport()
        assert list(run([], paths, rep, jobs=jobs)) == []
        reports.append(rep)
    r1, r2 = reports
    assert r2.errors == r1.errors and r2.inputs == r1.inputs and r2.events == r1.events
    assert [i.file for i in r2.inputs] == paths
    assert r2.inputs[1] == InputRead(str(tmp_path / "missing.json"), 0, 1)
    assert r2.inputs[2].status == "unreadable" and r2.inputs[0].status == "read"
    assert r2.exit_code() == 1


def test_units_follow_folder_order() -> None:
    folder = REGRESSION / "rules" / "windows" / "image_load"
    units = units_of([str(folder)])
    assert [u.path for u in units] == [str(p) for p in sorted(folder.rglob("*"))
                                       if p.suffix in (".evtx", ".json")]
    assert not any(u.path.endswith(".yml") for u in units if u.path)  # info.yml: no log


def test_default_jobs_is_the_usable_cores() -> None:
    assert default_jobs() == len(os.sched_getaffinity(0))


def test_a_dead_worker_is_reported_with_its_input(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker killed while reading one input: that input is reported unreadable (exit code
    1), the other inputs are read, nothing hangs."""
    import ruleatlas.engine.jobs as jobs
    from ruleatlas.engine.hunt import run

    good = [str(p) for p in sorted(REGRESSION.rglob("*.evtx"))[:4]]

    class Dying(jobs.Engine):
        def match(self, event: Any) -> Any:
            if event.file == good[1]:
                os._exit(3)  # as a segfault or the OOM killer would
            return super().match(event)

    monkeypatch.setattr(jobs, "Engine", Dying)
    rep = HuntReport()
    assert list(run([], good, rep, jobs=2)) == []
    assert [i.file for i in rep.inputs] == good
    assert rep.inputs[1] == InputRead(good[1], 0, 1)
    assert "worker process died (exit code 3)" in str(rep.errors[0])
    assert all(i.status == "read" for i in rep.inputs if i.file != good[1])
    assert rep.exit_code() == 1
