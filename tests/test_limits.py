"""Limits on hostile input (issue 16): small files generated in tmp_path, limits lowered through
``Limits`` or the environment so that a "bomb" stays a few MB; one subprocess checks the RSS on
a real 150 MB decompressed member. Expectations come from how each file was written."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ruleatlas.cli import app
from ruleatlas.engine.events import InputRead, ReadError
from ruleatlas.engine.readers import read_events
from ruleatlas.engine.readers.archive import Capped, _spool
from ruleatlas.limits import LimitError, Limits, fmt_size, parse_size
from ruleatlas.sources.base import read_rule_file
from ruleatlas.sources.sigma import load_sigma_file
from test_build import make_sigma, sigma_rule

MB = 1 << 20
ROOT = Path(__file__).resolve().parent.parent
SMALL = Limits(member_bytes=1 * MB, archive_bytes=4 * MB, archive_depth=2,
               record_bytes=64 * 1024, skipped_records=20)
GOOD = b'{"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1, ' \
       b'"Image": "C:\\\\Windows\\\\System32\\\\cmd.exe"}\n'


def read(*paths: Path, limits: Limits = SMALL) -> tuple[int, list[ReadError], list[InputRead]]:
    errors: list[ReadError] = []
    inputs: list[InputRead] = []
    n = sum(1 for _ in read_events(list(paths), errors, limits, inputs))
    return n, errors, inputs


def zip_of(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


# --------------------------------------------------------------------------------------------
# The Limits object
# --------------------------------------------------------------------------------------------


def test_sizes_parse_and_print() -> None:
    assert parse_size("256M") == 256 * MB and parse_size("64k") == 65536
    assert parse_size(" 1G ") == 1 << 30 and parse_size("4096") == 4096
    assert parse_size("2MB") == 2 * MB and parse_size("3KiB") == 3072
    with pytest.raises(LimitError, match="not a size"):
        parse_size("lots")
    assert fmt_size(256 * MB) == "256 MB" and fmt_size(65536) == "64 KB"
    assert fmt_size(1000) == "1000 bytes"


def test_defaults_env_and_options() -> None:
    d = Limits()
    assert (d.rule_file_bytes, d.member_bytes, d.archive_bytes) == (4 * MB, 256 * MB, 1 << 30)
    assert (d.archive_depth, d.record_bytes, d.rule_ref_chars) == (3, 16 * MB, 512)
    env = {"RULEATLAS_MAX_MEMBER_BYTES": "64M", "RULEATLAS_MAX_ARCHIVE_DEPTH": "5"}
    got = Limits.from_env(env)
    assert got.member_bytes == 64 * MB and got.archive_depth == 5
    assert got.record_bytes == d.record_bytes
    assert Limits.from_env({}) == d
    over = d.with_options(["member_bytes=1M", "max-record-bytes=2K"])
    assert over.member_bytes == MB and over.record_bytes == 2048
    with pytest.raises(LimitError, match="RULEATLAS_MAX_RECORD_BYTES"):
        Limits.from_env({"RULEATLAS_MAX_RECORD_BYTES": "-1"})
    with pytest.raises(LimitError, match="NAME=VALUE"):
        d.with_options(["nonsense=3"])


def test_limit_error_names_its_location() -> None:
    e = LimitError("archive member exceeds 256 MB", "a.zip!b.json", limit="member_bytes")
    assert str(e) == "archive member exceeds 256 MB (a.zip!b.json)"
    assert e.limit == "member_bytes" and e.message == "archive member exceeds 256 MB"


def test_every_limit_is_in_the_docs_table() -> None:
    doc = (ROOT / "docs" / "limits.md").read_text()
    for name in Limits.names():
        assert f"`{name}`" in doc and f"`{Limits.env_var(name)}`" in doc, name


# --------------------------------------------------------------------------------------------
# Archives
# --------------------------------------------------------------------------------------------


def test_zip_member_over_the_cap_is_skipped_and_the_next_read(tmp_path: Path) -> None:
    big = GOOD * (5 * MB // len(GOOD))  # 5 MB of good lines: over the 1 MB cap
    z = zip_of(tmp_path / "a.zip", {"big.json": big, "small.json": GOOD * 3})
    n, errors, inputs = read(z)
    assert n == 3
    assert [str(e) for e in errors] == [
        f"{z}!big.json: archive member exceeds 1 MB (its header says {len(big)} bytes); "
        "skipped"]
    assert inputs == [InputRead(str(z), 3, 1)] and inputs[0].status == "partly read"


def test_gzip_member_is_counted_while_streaming(tmp_path: Path) -> None:
    """A .gz has no trustworthy size: the bytes are counted as they are decompressed, so the
    lines before the cap are read and the member stops there."""
    lines = 5 * MB // len(GOOD)
    gz = tmp_path / "x.json.gz"
    gz.write_bytes(gzip.compress(GOOD * lines))
    n, errors, _ = read(gz)
    assert 0 < n < lines and n >= (MB // len(GOOD)) - 1
    assert len(errors) == 1 and errors[0].file == str(gz)
    assert "archive member exceeds 1 MB" in errors[0].reason


def test_archive_total_over_the_cap_stops_the_archive(tmp_path: Path) -> None:
    part = GOOD * (900 * 1024 // len(GOOD))  # 0.9 MB each, under the member cap
    z = zip_of(tmp_path / "t.zip", {f"m{i}.json": part for i in range(8)})  # 7.2 MB > 4 MB
    n, errors, _ = read(z)
    per = part.count(b"\n")
    assert 4 * per <= n < 5 * per  # members 0-3 whole, member 4 cut at the budget
    assert len(errors) == 1 and errors[0].file == str(z)
    assert errors[0].reason.startswith("archive exceeds 4 MB decompressed (stopped at ")
    assert "!m4.json" in errors[0].reason


def test_tar_sizes_count_against_the_archive(tmp_path: Path) -> None:
    part = GOOD * (900 * 1024 // len(GOOD))
    t = tmp_path / "t.tar.gz"
    with tarfile.open(t, "w:gz") as tf:
        for i in range(8):
            info = tarfile.TarInfo(f"m{i}.json")
            info.size = len(part)
            tf.addfile(info, io.BytesIO(part))
    n, errors, _ = read(t)
    assert n == 4 * part.count(b"\n")  # a tar member's size is exact: m4 is refused whole
    assert len(errors) == 1 and "archive exceeds 4 MB decompressed" in errors[0].reason


def test_nested_zip_deeper_than_the_limit(tmp_path: Path) -> None:
    level3 = zip_of(tmp_path / "c.zip", {"deep.json": GOOD})
    level2 = zip_of(tmp_path / "b.zip", {"c.zip": level3.read_bytes(), "mid.json": GOOD * 2})
    top = zip_of(tmp_path / "a.zip", {"b.zip": level2.read_bytes(), "top.json": GOOD})
    n, errors, _ = read(top)  # depth limit 2: a.zip (1) > b.zip (2) > c.zip (3: skipped)
    assert n == 3
    assert [str(e) for e in errors] == [
        f"{top}!b.zip!c.zip: archive nested deeper than 2 levels; skipped"]


def test_nested_bomb_is_bounded_by_the_archive_total(tmp_path: Path) -> None:
    inner = zip_of(tmp_path / "in.zip", {"z.json": b"\n" * (900 * 1024)})
    top = zip_of(tmp_path / "bomb.zip", {f"in{i}.zip": inner.read_bytes() for i in range(10)})
    n, errors, _ = read(top)
    assert n == 0 and len(errors) > 0
    assert errors[-1].file == str(top) and "archive exceeds 4 MB" in errors[-1].reason


def test_zip_with_an_evtx_header_and_zeros(tmp_path: Path) -> None:
    header = b"ElfFile\x00" + b"\x00" * 4088
    z = zip_of(tmp_path / "e.zip", {"x.evtx": header + b"\x00" * (3 * MB)})
    n, errors, _ = read(z)  # over the 1 MB cap: refused from the header, nothing written
    assert n == 0 and [e.reason for e in errors] == [
        f"archive member exceeds 1 MB (its header says {4096 + 3 * MB} bytes); skipped"]
    z2 = zip_of(tmp_path / "e2.zip", {"x.evtx": header + b"\x00" * (512 * 1024)})
    n, errors, inputs = read(z2)  # under the cap: read, and reported as holding nothing
    assert n == 0 and [e.reason for e in errors] == [
        f"no event records in this EVTX file ({4096 + 512 * 1024} bytes)"]
    assert inputs[0].status == "unreadable"


def test_a_spooled_member_never_exceeds_the_cap() -> None:
    capped = Capped(io.BytesIO(b"\x00" * (3 * MB)), "a.zip!x.evtx", MB, None)
    with pytest.raises(LimitError, match="archive member exceeds 1 MB") as info:
        _spool(io.BufferedReader(capped, MB))
    assert info.value.path == "a.zip!x.evtx" and capped.count <= 2 * MB


# --------------------------------------------------------------------------------------------
# JSON and XML
# --------------------------------------------------------------------------------------------


def test_unterminated_json_string(tmp_path: Path) -> None:
    p = tmp_path / "u.json"
    p.write_bytes(b'{"a": "' + b"x" * (5 * MB))
    n, errors, inputs = read(p)
    assert n == 0 and [str(e) for e in errors] == [
        f"{p}:line 1: JSON line exceeds 64 KB; skipped"]
    assert inputs[0].status == "unreadable"


def test_unterminated_string_in_a_json_array(tmp_path: Path) -> None:
    p = tmp_path / "a.json"
    p.write_bytes(b'[{"EventID": 1},\n{"a": "' + b"x" * (5 * MB))
    n, errors, _ = read(p)
    assert n == 1 and [str(e) for e in errors] == [
        f"{p}:line 2: JSON value exceeds 64 KB; skipped to the next line starting a value"]


def test_over_long_array_value_is_skipped_and_the_next_read(tmp_path: Path) -> None:
    p = tmp_path / "a.json"
    big = b'{"EventID": 2, "x": "' + b"y" * (300 * 1024) + b'"}'
    p.write_bytes(b"[\n" + GOOD.strip() + b",\n" + big + b",\n" + GOOD.strip() + b"\n]\n")
    n, errors, _ = read(p)
    assert n == 2 and [(e.position, e.reason[:26]) for e in errors] == [
        (3, "JSON value exceeds 64 KB; ")]


def test_one_line_huge_json_object(tmp_path: Path) -> None:
    p = tmp_path / "o.json"
    p.write_bytes(b'{"a": "' + b"x" * (3 * MB) + b'"}\n' + GOOD + GOOD)
    n, errors, _ = read(p)
    assert n == 2 and [str(e) for e in errors] == [
        f"{p}:line 1: JSON line exceeds 64 KB; skipped"]


def test_over_long_line_in_the_middle_of_a_good_file(tmp_path: Path) -> None:
    p = tmp_path / "m.jsonl"
    huge = b'{"EventID": 9, "x": "' + b"y" * (200 * 1024) + b'"}\n'
    p.write_bytes(GOOD * 3 + huge + GOOD * 2)
    errors: list[ReadError] = []
    evs = list(read_events(p, errors, SMALL))
    assert [e.position for e in evs] == [1, 2, 3, 5, 6]
    assert [str(e) for e in errors] == [f"{p}:line 4: JSON line exceeds 64 KB; skipped"]


def test_a_one_line_array_is_streamed_whatever_its_size(tmp_path: Path) -> None:
    p = tmp_path / "arr.json"
    items = 200 * 1024 // len(GOOD) + 10  # the line is over the 64 KB record limit
    p.write_bytes(b"[" + b",".join([GOOD.strip()] * items) + b"]")
    n, errors, _ = read(p)
    assert n == items and errors == []


def test_over_long_xml_record(tmp_path: Path) -> None:
    rec = ("<Event><System><EventID>{}</EventID><Channel>Security</Channel></System>"
           "<EventData><Data Name='x'>{}</Data></EventData></Event>\n")
    p = tmp_path / "s.xml"
    p.write_text(rec.format(1, "a") + rec.format(2, "b" * (200 * 1024)) + rec.format(3, "c"))
    errors: list[ReadError] = []
    evs = list(read_events(p, errors, SMALL))
    assert [e["EventID"] for e in evs] == ["1", "3"]
    assert [str(e) for e in errors] == [
        f"{p}:line 2: record 2: <Event> exceeds 64 KB; skipped"]


def test_too_many_bad_records_skip_the_rest_of_the_file(tmp_path: Path) -> None:
    p = tmp_path / "bad.json"
    p.write_bytes(GOOD + b"{nope\n" * 100 + GOOD)
    n, errors, inputs = read(p)
    assert n == 1 and len(errors) == 21  # 20 bad lines, then the limit's own error
    assert str(errors[-1]) == (f"{p}:line 21: too many unreadable records (20): rest of file "
                               "skipped")
    assert inputs == [InputRead(str(p), 1, 21)]


def test_empty_random_and_blank_files(tmp_path: Path) -> None:
    empty = tmp_path / "e.json"
    empty.write_bytes(b"")
    blank = tmp_path / "b.json"
    blank.write_bytes(b"\n  \n")
    rand = tmp_path / "r.bin"
    rand.write_bytes(bytes(range(256)) * 40)
    folder = tmp_path / "nothing"
    folder.mkdir()
    n, errors, inputs = read(empty, blank, rand, folder)
    assert n == 0
    assert [e.reason for e in errors] == [
        "empty file", "no JSON content (empty or blank)",
        "unknown log format (not EVTX, JSON or event XML)",
        "no log files (EVTX, JSON, XML, archives) in this folder"]
    assert [i.status for i in inputs] == ["unreadable"] * 4


# --------------------------------------------------------------------------------------------
# Rule files
# --------------------------------------------------------------------------------------------


def test_an_over_size_rule_file_is_a_load_error(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RULEATLAS_MAX_RULE_FILE_BYTES", raising=False)
    root = make_sigma(tmp_path)
    big = root / "rules" / "windows" / "huge.yml"
    big.write_text(sigma_rule("aaaaaaaa-0000-4000-8000-000000000009", "Huge") + "# "
                   + "x" * (5 * MB) + "\n")
    fr = load_sigma_file(root, big)  # the default limit: 4 MB
    assert fr.rules == ()
    assert [(e.kind, e.path, e.reason) for e in fr.errors] == [
        ("limit", "rules/windows/huge.yml",
         f"rule file exceeds 4 MB ({big.stat().st_size} bytes); not read")]
    small = Limits(rule_file_bytes=1024)
    got = read_rule_file("sigma", "a.yml", root / "rules" / "windows" / "a.yml", limits=small)
    assert isinstance(got, bytes) and got.startswith(b"title: Alpha Shell")
    over = read_rule_file("sigma", "x.yml", big, data=b"x" * 2000, limits=small)
    assert not isinstance(over, bytes)
    assert over.reason == "rule file exceeds 1 KB (2000 bytes); not read"


# --------------------------------------------------------------------------------------------
# Exit codes
# --------------------------------------------------------------------------------------------


def hunt(repo: Path, *logs: Path, extra: tuple[str, ...] = ()) -> object:
    return CliRunner().invoke(app, ["hunt", *map(str, logs), "--repo", str(repo),
                                    "--format", "json", *extra])


def test_hunt_exit_codes(tmp_path: Path) -> None:
    repo = make_sigma(tmp_path)
    good = tmp_path / "good.json"
    good.write_bytes(GOOD * 2)
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"")
    rand = tmp_path / "rand.log"
    rand.write_bytes(os.urandom(4096).replace(b"{", b"x").replace(b"[", b"x").replace(b"<", b"x"))
    bomb = zip_of(tmp_path / "bomb.zip", {"big.json": GOOD * (2 * MB // len(GOOD))})

    res = hunt(repo, good)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["summary"]["findings"] == 6 and doc["summary"]["exit_code"] == 0  # 3 rules x 2

    res = hunt(repo, good, empty)
    assert res.exit_code == 1, res.output
    doc = json.loads(res.stdout)
    assert doc["summary"]["findings"] == 6  # findings still printed
    assert f"skipped: {empty}: empty file" in res.stderr
    assert "1 of 2 inputs read whole, 0 partly, 1 unreadable" in res.stderr
    assert [i["status"] for i in doc["summary"]["inputs"]] == ["read", "unreadable"]

    for nothing in ((empty,), (rand,), (empty, rand)):
        res = hunt(repo, *nothing)
        assert res.exit_code == 2, (nothing, res.output)

    res = hunt(repo, bomb, extra=("--limit", "member_bytes=1M"))
    assert res.exit_code == 2, res.output
    assert "archive member exceeds 1 MB" in res.stderr

    res = hunt(repo, good, extra=("--limit", "member_bytes=lots"))
    assert res.exit_code == 2 and "not a size" in res.stderr


def build(*args: str) -> object:
    return CliRunner().invoke(app, ["build", *args])


def test_build_exit_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_sigma(tmp_path)
    res = build("--db", str(tmp_path / "a.db"), str(repo))
    assert res.exit_code == 0, res.output

    (repo / "rules" / "windows" / "broken.yml").write_text("title: [x\n")
    res = build("--db", str(tmp_path / "b.db"), str(repo))
    assert res.exit_code == 1, res.output
    assert "ruleatlas errors" in res.stderr

    res = build("--db", str(tmp_path / "c.db"), str(tmp_path / "nowhere"))
    assert res.exit_code == 2 and "no such folder" in res.stderr
    res = build("--db", str(tmp_path / "c.db"), str(tmp_path))  # not a rule repository
    assert res.exit_code == 2, res.output

    only_bad = tmp_path / "bad" / "sigma"
    (only_bad / "rules" / "windows").mkdir(parents=True)
    (only_bad / "rules" / "windows" / "broken.yml").write_text("title: [x\n")
    res = build("--db", str(tmp_path / "d.db"), str(only_bad))
    assert res.exit_code == 2, res.output

    monkeypatch.setenv("RULEATLAS_MAX_RULE_FILE_BYTES", "oops")
    res = build("--db", str(tmp_path / "e.db"), str(repo))
    assert res.exit_code == 2 and "RULEATLAS_MAX_RULE_FILE_BYTES" in res.stderr


def test_build_with_an_over_size_rule_file(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_sigma(tmp_path)
    (repo / "rules" / "windows" / "huge.yml").write_text(
        sigma_rule("aaaaaaaa-0000-4000-8000-000000000009", "Huge") + "#" + "x" * 5000 + "\n")
    monkeypatch.setenv("RULEATLAS_MAX_RULE_FILE_BYTES", "4K")
    db = tmp_path / "c.db"
    res = build("--db", str(db), str(repo), "--format", "json")
    assert res.exit_code == 1, res.output
    assert json.loads(res.stdout)["sources"]["sigma"] == {"files": 4, "rules": 3, "errors": 1}
    res = CliRunner().invoke(app, ["errors", "--db", str(db), "--format", "json"])
    [row] = json.loads(res.stdout)
    assert row["path"] == "rules/windows/huge.yml" and row["kind"] == "limit"
    assert row["reason"].startswith("rule file exceeds 4 KB (")


# --------------------------------------------------------------------------------------------
# Memory on a real bomb (subprocess, ru_maxrss)
# --------------------------------------------------------------------------------------------

# The peak RSS of this process alone: /proc/self/status VmHWM belongs to the process's own
# memory map. (getrusage's ru_maxrss is not used: Linux carries the parent's high-water mark
# over exec after a vfork, so it would report pytest's own RSS.)
RSS_PROBE = """
import re, sys
from ruleatlas.engine.readers import read_events
errors = []
n = sum(1 for _ in read_events(sys.argv[1:], errors))
with open("/proc/self/status") as fh:
    rss = int(re.search(r"VmHWM:\\s+(\\d+) kB", fh.read()).group(1)) // 1024
print(n, len(errors), rss)
for e in errors:
    print(e)
"""


def test_bombs_stay_within_memory(tmp_path: Path) -> None:
    """150 MB decompressed (a few hundred KB on disk) with the default limits: a one-line
    unterminated JSON string in a .gz, and an unterminated string inside a JSON array in a
    zip. Before the limits each took more than 1 GB of RSS; the bound here is 300 MB."""
    size = 150 * MB
    gz = tmp_path / "line.json.gz"
    with gzip.open(gz, "wb", compresslevel=1) as g:
        g.write(b'{"a": "')
        block = b"x" * MB
        for _ in range(size // MB):
            g.write(block)
    z = tmp_path / "array.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("a.json", "w") as w:
            w.write(b'[{"EventID": 1}, {"a": "')
            for _ in range(size // MB):
                w.write(block)
    assert gz.stat().st_size < 2 * MB and z.stat().st_size < 2 * MB
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    env.pop("RULEATLAS_MAX_RECORD_BYTES", None)
    out = subprocess.run([sys.executable, "-c", RSS_PROBE, str(gz), str(z)], env=env,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    head, *errs = out.splitlines()
    n, n_err, rss = map(int, head.split())
    assert n == 1 and n_err == 2
    assert errs == [f"{gz}:line 1: JSON line exceeds 16 MB; skipped",
                    f"{z}!a.json:line 1: JSON value exceeds 16 MB; skipped to the next line "
                    "starting a value"]
    assert rss < 300, f"{rss} MB"


def test_runs_of_blank_lines_and_separators_are_skipped_fast(tmp_path: Path) -> None:
    """A member of millions of newlines (or array separators) is skipped a buffer at a time;
    the line numbers stay right."""
    lines = tmp_path / "n.jsonl"
    lines.write_bytes(GOOD + b"\n" * 3_000_000 + b"  \r\n" + GOOD)
    assert [e.position for e in read_events(lines, [], SMALL)] == [1, 3_000_003]
    arr = tmp_path / "a.json"
    arr.write_bytes(b"[" + GOOD.strip() + b" ,\n" * 1_000_000 + GOOD.strip() + b"]")
    assert [e.position for e in read_events(arr, [], SMALL)] == [1, 1_000_001]
