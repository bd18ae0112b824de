"""``ruleatlas test --samples FILE``: user samples for rules of any source, and Elastic rules
(which ship no per-rule samples) in ``ruleatlas test``.

The samples are Sigma's recorded regression EVTX files (``../shared/corpus/sigma/
regression_data``), read in place. Each expectation was written by reading the rule's query and
the file's one Sysmon 1 event (docs/testing.md quotes both):

* dsquery: ``dsquery  * -filter "(objectClass=trustedDomain)" -attr *`` from
  C:\\Windows\\System32\\dsquery.exe: Elastic 06a7a03c (``process.args :
  "*objectClass=trustedDomain*"``) and Sigma 3bad990e fire.
* certutil encode: ``certutil  -encode file.bat file_.base64``: Elastic fd70c98a
  (``process.args : "?encode"``) fires.
* certutil addstore: ``certutil  -addstore -f root ...\\cert.cer``: none of fd70c98a's verbs
  (?decode ?encode ?urlcache ?verifyctl ?encodehex ?decodehex ?exportPFX), so it must not fire;
  neither may Sigma e62a9f0c ("File Encoded To Base64 Via Certutil.EXE", wants ``-encode``).
* gpresult: ``gpresult  /z``: Elastic 94a401ba (``process.args : ("/z", ...)``) fires.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from conftest import ELASTIC, ROOT, SIGMA
from ruleatlas.cli import app
from ruleatlas.engine.samples import Sample, SamplesError, load_samples
from ruleatlas.limits import Limits

PC = SIGMA / "regression_data" / "rules" / "windows" / "process_creation"
DSQUERY = PC / "proc_creation_win_dsquery_domain_trust_discovery" / \
    "3bad990e-4848-4a78-9530-b427d854aac0.evtx"
ENCODE = PC / "proc_creation_win_certutil_encode" / "e62a9f0c-ca1e-46b2-85d5-a6da77f86d1a.evtx"
ADDSTORE = PC / "proc_creation_win_certutil_certificate_installation" / \
    "d2125259-ddea-4c1c-9c22-977eb5b29cf0.evtx"
GPRESULT = PC / "proc_creation_win_gpresult_execution" / \
    "e56d3073-83ff-4021-90fe-c658e0709e72.evtx"

EL_DSQUERY = "06a7a03c-c735-47a6-a313-51c354aef6c3"
EL_CERTUTIL = "fd70c98a-c410-42dc-a2e3-761c71848acf"
EL_GPRESULT = "94a401ba-4fa2-455c-b7ae-b6e037afc0b7"
EL_ML = "02b4420d-eda2-4529-9e46-4a60eccb7e2d"  # "Spike in Group Privilege Change Events"
SG_DSQUERY = "3bad990e-4848-4a78-9530-b427d854aac0"
SG_ENCODE = "e62a9f0c-ca1e-46b2-85d5-a6da77f86d1a"
DOC_SAMPLES = ROOT / "docs" / "samples" / "elastic-on-sigma-regression.yaml"
KNOWN = frozenset({EL_DSQUERY, EL_CERTUTIL, EL_GPRESULT, SG_DSQUERY, SG_ENCODE})


def known(ids: Any) -> set[str]:
    return KNOWN.intersection(ids)


def write(tmp_path: Path, text: str, name: str = "samples.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def problems(path: Path, **kw: Any) -> list[str]:
    with pytest.raises(SamplesError) as ei:
        load_samples(path, known, **kw)
    return [str(p) for p in ei.value.problems]


# --------------------------------------------------------------------------------------------
# The samples file: shapes and located errors (no catalog)
# --------------------------------------------------------------------------------------------


def test_the_three_shapes_of_a_sample(tmp_path: Path) -> None:
    p = write(tmp_path, f"""\
{EL_DSQUERY}: {DSQUERY}
{EL_CERTUTIL}:
  - {ENCODE}
  - {{files: {ADDSTORE}, fire: false}}
  - files: [{ENCODE}, {ADDSTORE}]
{EL_GPRESULT}:
  files: {GPRESULT}
  fire: yes
""")
    sf = load_samples(p, known)
    assert sf.samples == (
        Sample(EL_DSQUERY, (DSQUERY,)),
        Sample(EL_CERTUTIL, (ENCODE,)),
        Sample(EL_CERTUTIL, (ADDSTORE,), fire=False),
        Sample(EL_CERTUTIL, (ENCODE, ADDSTORE)),
        Sample(EL_GPRESULT, (GPRESULT,)),
    )
    assert [str(s.span) for s in sf.samples] == [
        f"{p}:1:39", f"{p}:3:5", f"{p}:4:5", f"{p}:5:5", f"{p}:7:3"]
    assert sf.rule_ids() == (EL_DSQUERY, EL_CERTUTIL, EL_GPRESULT)
    assert len(sf.for_rule(EL_CERTUTIL)) == 3 and sf.for_rule("nope") == ()


def test_relative_paths_are_read_from_the_samples_file_folder(tmp_path: Path) -> None:
    sub = tmp_path / "cfg"
    sub.mkdir()
    rel = os.path.relpath(DSQUERY, sub)
    assert not Path(rel).is_absolute() and rel.startswith("..")
    sf = load_samples(write(sub, f"{EL_DSQUERY}: {rel}\n"), known)
    assert sf.samples[0].files == (sub / rel,) and sf.samples[0].files[0].is_file()


def test_the_documented_samples_file_is_valid() -> None:
    sf = load_samples(DOC_SAMPLES, known)
    assert [(s.rule_id, s.files[0].resolve(), s.fire) for s in sf.samples] == [
        (EL_DSQUERY, DSQUERY, True), (EL_CERTUTIL, ENCODE, True),
        (EL_CERTUTIL, ADDSTORE, False), (EL_GPRESULT, GPRESULT, True)]


def test_not_yaml_is_located(tmp_path: Path) -> None:
    p = write(tmp_path, f"{EL_DSQUERY}: [a.evtx\nx: y\n")
    [msg] = problems(p)
    assert msg.startswith("not valid YAML: ") and msg.endswith(f"({p}:2:2)")


def test_a_list_at_the_top_is_refused(tmp_path: Path) -> None:
    p = write(tmp_path, f"- {EL_DSQUERY}\n")
    assert problems(p) == [f"expected a mapping of rule id -> log files, got a list ({p}:1:1)"]


def test_an_empty_file_is_refused(tmp_path: Path) -> None:
    p = write(tmp_path, "# nothing yet\n")
    assert problems(p) == [
        f"empty samples file: expected a mapping of rule id -> log files ({p}:1:1)"]


def test_unknown_rule_id_and_missing_file(tmp_path: Path) -> None:
    p = write(tmp_path, f"""\
{EL_DSQUERY}: {DSQUERY}
00000000-0000-0000-0000-000000000000: {DSQUERY}
{EL_GPRESULT}:
  - gone.evtx
""")
    assert problems(p) == [
        "unknown rule id '00000000-0000-0000-0000-000000000000' (samples name rules by exact "
        f"id) ({p}:2:1)",
        f"{EL_GPRESULT}: no such log file or folder: gone.evtx (looked for "
        f"{tmp_path / 'gone.evtx'}) ({p}:4:5)"]


def test_wrong_types_each_located(tmp_path: Path) -> None:
    p = write(tmp_path, f"""\
{EL_DSQUERY}:
{EL_CERTUTIL}:
  - [{ENCODE}]
  - {{files: {ENCODE}, fire: maybe}}
  - {{file: {ENCODE}}}
  - {{fire: false}}
{EL_GPRESULT}: []
{SG_DSQUERY}: {{files: []}}
""")
    assert problems(p) == [
        f"{EL_DSQUERY}: a log file path must be text, got nothing (null) ({p}:1:38)",
        f"{EL_CERTUTIL}: a sample is a path or a mapping {{files, fire}}, got a list ({p}:3:5)",
        # "  - {files: " is 12 characters, then the path, then ", fire: " (8): col len + 21
        f"{EL_CERTUTIL}: fire must be true or false, got text 'maybe' "
        f"({p}:4:{len(str(ENCODE)) + 21})",
        f"{EL_CERTUTIL}: unknown key 'file' in a sample (known: files, fire) ({p}:5:6)",
        f"{EL_CERTUTIL}: a sample mapping needs files: PATH or a list ({p}:6:5)",
        f"{EL_GPRESULT}: empty list of samples ({p}:7:39)",
        f"{SG_DSQUERY}: files is an empty list ({p}:8:47)"]


def test_a_rule_id_given_twice(tmp_path: Path) -> None:
    p = write(tmp_path, f"{EL_DSQUERY}: {DSQUERY}\n\n{EL_DSQUERY}: {ENCODE}\n")
    assert problems(p) == [f"rule id '{EL_DSQUERY}' given twice (first on line 1) ({p}:3:1)"]


def test_a_samples_file_over_the_limit(tmp_path: Path) -> None:
    p = write(tmp_path, f"{EL_DSQUERY}: {DSQUERY}\n" + "# pad\n" * 200)
    size = p.stat().st_size
    assert problems(p, limits=Limits(samples_file_bytes=1024)) == [
        f"samples file exceeds 1 KB ({size} bytes); not read ({p}:1:1)"]


def test_a_samples_file_that_is_not_utf8(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_bytes(b"\xff\xfe\x00bad")
    [msg] = problems(p)
    assert msg.startswith("cannot read the samples file: ") and msg.endswith(f"({p}:1:1)")


# --------------------------------------------------------------------------------------------
# Through the CLI, on the corpus catalog
# --------------------------------------------------------------------------------------------


def run(args: list[str]) -> Any:
    return CliRunner().invoke(app, ["test", *args])


def rows(res: Any) -> dict[str, dict[str, Any]]:
    start = res.stdout.index("[")
    return {r["id"]: r for r in json.loads(res.stdout[start:])}


@pytest.mark.slow
def test_documented_samples_pass(corpus_db: Path) -> None:
    res = run(["--samples", str(DOC_SAMPLES), "--db", str(corpus_db), "--no-store",
               "--format", "json"])
    assert res.exit_code == 0, res.output
    got = rows(res)
    assert {k: (r["status"], r["source"]) for k, r in got.items()} == {
        EL_DSQUERY: ("pass", "elastic"), EL_CERTUTIL: ("pass", "elastic"),
        EL_GPRESULT: ("pass", "elastic")}
    assert got[EL_CERTUTIL]["reason"] == "2 sample(s) as expected (1 fire, 1 do not)"
    assert got[EL_CERTUTIL]["expected"] == 1 and got[EL_CERTUTIL]["matched"] == 1


@pytest.mark.slow
def test_wrong_expectations_fail_with_exit_1(corpus_db: Path, tmp_path: Path) -> None:
    p = write(tmp_path, f"""\
{EL_CERTUTIL}:
  - {{files: {ENCODE}, fire: false}}
  - {ADDSTORE}
{SG_DSQUERY}: {DSQUERY}
{SG_ENCODE}: {{files: {ADDSTORE}, fire: false}}
""")
    res = run(["--samples", str(p), "--db", str(corpus_db), "--no-store", "--format", "json"])
    assert res.exit_code == 1, res.output
    got = rows(res)
    assert {k: r["status"] for k, r in got.items()} == {
        EL_CERTUTIL: "fail", SG_DSQUERY: "pass", SG_ENCODE: "pass"}
    assert got[EL_CERTUTIL]["reason"] == (
        f"{ENCODE.name}: 1 finding(s), expected not to fire; "
        f"{ADDSTORE.name}: no finding in 1 events, expected to fire")


@pytest.mark.slow
def test_elastic_rules_without_samples(corpus_db: Path) -> None:
    res = run([EL_DSQUERY, EL_ML, "--db", str(corpus_db), "--no-store", "--format", "json"])
    assert res.exit_code == 0, res.output
    got = rows(res)
    assert got[EL_DSQUERY]["status"] == "no-data"
    assert got[EL_DSQUERY]["reason"] == (
        "Elastic ships no per-rule samples (map samples to the rule with --samples FILE); "
        "the rule runs on events")
    assert got[EL_ML]["status"] == "not-runnable"
    assert got[EL_ML]["reason"].startswith("not runnable: machine-learning rule")
    assert got[EL_ML]["reason"].endswith("; Elastic ships no per-rule samples")


@pytest.mark.slow
def test_with_samples_a_named_rule_uses_them_and_others_keep_their_data(corpus_db: Path,
                                                                       tmp_path: Path) -> None:
    p = write(tmp_path, f"{EL_GPRESULT}: {GPRESULT}\n")
    res = run([EL_GPRESULT, EL_DSQUERY, SG_DSQUERY, "--samples", str(p), "--db",
               str(corpus_db), "--no-store", "--format", "json"])
    assert res.exit_code == 0, res.output
    got = rows(res)
    assert {k: r["status"] for k, r in got.items()} == {
        EL_GPRESULT: "pass", EL_DSQUERY: "no-data", SG_DSQUERY: "pass"}
    assert got[SG_DSQUERY]["reason"] is None  # its own regression data, as before


@pytest.mark.slow
def test_unreadable_samples_exit_1(corpus_db: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.evtx"
    junk.write_bytes(b"not an evtx file at all" * 10)
    p = write(tmp_path, f"""\
{EL_DSQUERY}: junk.evtx
{EL_GPRESULT}:
  - junk.evtx
  - {GPRESULT}
""")
    res = run(["--samples", str(p), "--db", str(corpus_db), "--no-store", "--format", "json"])
    assert res.exit_code == 1, res.output
    got = rows(res)
    assert got[EL_DSQUERY]["status"] == "no-data"
    assert got[EL_DSQUERY]["reason"].startswith(
        f"no sample could be read: junk.evtx: could not be read ({junk}")
    assert got[EL_GPRESULT]["status"] == "pass"
    assert "skipped: junk.evtx: could not be read" in got[EL_GPRESULT]["reason"]
    assert got[EL_GPRESULT]["read_errors"] == 1
    assert f"read errors: {EL_DSQUERY}: 1 (first: {junk}" in res.stderr


@pytest.mark.slow
@pytest.mark.parametrize("case", ["unknown id", "missing file", "no samples file"])
def test_broken_samples_file_exits_2(corpus_db: Path, tmp_path: Path, case: str) -> None:
    text = {"unknown id": f"{EL_DSQUERY}: {DSQUERY}\n\nnot-a-rule-id: {DSQUERY}\n",
            "missing file": f"{EL_DSQUERY}:\n  - {tmp_path / 'nope.evtx'}\n"}.get(case)
    p = write(tmp_path, text) if text else tmp_path / "absent.yaml"
    res = run(["--samples", str(p), "--db", str(corpus_db), "--no-store"])
    assert res.exit_code == 2, res.output
    line = {"unknown id": f"  unknown rule id 'not-a-rule-id' (samples name rules by exact id) "
                          f"({p}:3:1)",
            "missing file": f"  {EL_DSQUERY}: no such log file or folder: "
                            f"{tmp_path / 'nope.evtx'} ({p}:2:5)",
            "no samples file": "  cannot read the samples file: "}[case]
    assert res.stderr.startswith(f"error: samples file {p}: 1 problem\n{line}")
    assert res.stdout == ""


@pytest.mark.slow
def test_results_are_stored_with_their_files(corpus_db: Path, tmp_path: Path) -> None:
    from ruleatlas.store.results import read_results

    db = tmp_path / "catalog.db"
    shutil.copy(corpus_db, db)
    res = run(["--samples", str(DOC_SAMPLES), "--db", str(db)])
    assert res.exit_code == 0, res.output
    [stored] = read_results(db, [EL_CERTUTIL])
    assert stored["status"] == "pass" and stored["matched"] == 1
    detail = stored["detail"]
    assert Path(detail["samples_file"]) == DOC_SAMPLES
    assert [(Path(e["files"][0]).resolve(), e["fire"], e["ok"], e["matched"])
            for e in detail["samples"]] == [(ENCODE, True, True, 1), (ADDSTORE, False, True, 0)]


@pytest.mark.slow
def test_samples_with_rules_read_from_a_clone() -> None:
    """--repo: ids are checked against the rules read from the clone (here Elastic's)."""
    res = run(["--samples", str(DOC_SAMPLES), "--repo", str(ELASTIC), "--format", "json"])
    assert res.exit_code == 0, res.output
    assert {k: r["status"] for k, r in rows(res).items()} == {
        EL_DSQUERY: "pass", EL_CERTUTIL: "pass", EL_GPRESULT: "pass"}
