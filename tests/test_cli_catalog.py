"""CLI catalog commands through Typer's CliRunner on real temporary catalogs, and ``sync`` on
local git repositories (file:// and paths) — never the network."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import EXAMPLE_ID
from ruleatlas.cli import app
from test_build import ID_A, ID_B, make_sigma, make_splunk
from test_build_clash import make_elastic

runner = CliRunner()


def run(*args: str, code: int = 0) -> str:
    res = runner.invoke(app, list(args))
    assert res.exit_code == code, (res.exit_code, res.output, res.exception)
    return res.output


@pytest.fixture()
def small_db(tmp_path: Path) -> str:
    db = str(tmp_path / "c.db")
    run("build", "--db", db, str(make_sigma(tmp_path)), str(make_splunk(tmp_path)))
    return db


def test_build_prints_summary_per_source(tmp_path: Path) -> None:
    db = str(tmp_path / "c.db")
    out = run("build", "--db", db, str(make_sigma(tmp_path)), str(make_splunk(tmp_path)))
    assert "sigma" in out and "splunk" in out and "built in" in out
    out = run("build", "--db", db, str(tmp_path / "sigma"), "--format", "json")
    doc = json.loads(out)
    assert doc["sources"]["sigma"] == {"files": 3, "rules": 3, "errors": 0}
    assert doc["repos"][0]["parsed"] == 0
    out = run("build", "--db", db, str(tmp_path / "nowhere"), code=2)  # nothing could be read
    assert "no such folder" in out


def test_stats_json(small_db: str) -> None:
    st = json.loads(run("stats", "--db", small_db, "--format", "json"))
    assert st["sources"]["sigma"]["files"] == 3
    assert st["sources"]["splunk"] == {**st["sources"]["splunk"], "files": 1, "rules": 1,
                                       "errors": 0}
    assert "sigma" in run("stats", "--db", small_db)


def test_show_json_and_text(small_db: str) -> None:
    doc = json.loads(run("show", EXAMPLE_ID, "--db", small_db, "--format", "json"))
    assert doc["id"] == EXAMPLE_ID
    assert doc["attack"][0]["name"] == "Windows Management Instrumentation"
    text = run("show", EXAMPLE_ID, "--db", small_db)
    assert "PowerShell Invoke WmiExec Usage" in text and "T1047" in text
    assert "Windows Management Instrumentation" in text
    by_title = json.loads(run("show", "Alpha Shell", "--db", small_db, "--format", "json"))
    assert by_title["id"] == ID_A
    assert "no rule" in run("show", "nothing like this", "--db", small_db, code=1)


def test_list_and_search(small_db: str) -> None:
    out = json.loads(run("list", "--db", small_db, "--source", "sigma", "--format", "json"))
    assert out["total"] == 3
    out = json.loads(run("list", "--db", small_db, "--technique", "T1059", "--format", "json"))
    assert [r["id"] for r in out["rules"]] == [ID_A]
    out = json.loads(run("list", "--db", small_db, "--severity", "high", "--status", "test",
                         "--format", "json", "--limit", "1"))
    assert out["total"] == 3 and len(out["rules"]) == 1
    out = json.loads(run("search", "bravo", "--db", small_db, "--format", "json"))
    assert [r["id"] for r in out["rules"]] == [ID_B]
    assert "[Bravo]" in out["rules"][0]["snippet"] or "[bravo]" in out["rules"][0]["snippet"]
    for hostile in ('"', "NEAR(", "((", "*", 'a" OR "b'):
        json.loads(run("search", hostile, "--db", small_db, "--format", "json"))
    assert "Bravo" in run("search", "bravo", "--db", small_db)


def test_errors_command(tmp_path: Path) -> None:
    sig = make_sigma(tmp_path)
    (sig / "rules" / "windows" / "broken.yml").write_text("title: [x\n")
    db = str(tmp_path / "c.db")
    out = run("build", "--db", db, str(sig), code=1)  # 1: some files are load errors
    assert "ruleatlas errors" in out
    rows = json.loads(run("errors", "--db", db, "--format", "json"))
    assert [r["path"] for r in rows] == ["rules/windows/broken.yml"]
    assert rows[0]["line"] and rows[0]["reason"]
    assert "broken.yml" in run("errors", "--db", db)


def test_missing_catalog_is_a_clear_error(tmp_path: Path) -> None:
    out = run("stats", "--db", str(tmp_path / "none.db"), code=1)
    assert "no catalog" in out


# --------------------------------------------------------------------------------------------
# sync
# --------------------------------------------------------------------------------------------


def _git(*args: str, cwd: Path | None = None) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
                        "HOME": str(cwd or Path.cwd()), "PATH": "/usr/bin:/bin"})


def _repo(src: Path) -> Path:
    _git("init", "-q", "-b", "main", cwd=src)
    _git("add", "-A", cwd=src)
    _git("commit", "-q", "-m", "init", cwd=src)
    return src


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_sync_clones_then_pulls_local_repositories(tmp_path: Path) -> None:
    up = tmp_path / "upstream"
    up.mkdir()
    sig = _repo(make_sigma(up))
    spl = _repo(make_splunk(up))
    el = _repo(make_elastic(up, {"rules/x.toml": ("bbbbbbbb-0000-4000-8000-000000000001",
                                                  "Elastic One")}))
    cache = tmp_path / "cache"
    db = str(tmp_path / "c.db")
    urls = ["--url", f"sigma={sig.as_uri()}", "--url", f"security_content={spl}",
            "--url", f"elastic={el}"]
    doc = json.loads(run("sync", str(cache), "--db", db, *urls, "--format", "json"))
    assert doc["sources"] == {"sigma": {"files": 3, "rules": 3, "errors": 0},
                              "splunk": {"files": 1, "rules": 1, "errors": 0},
                              "elastic": {"files": 1, "rules": 1, "errors": 0}}
    assert (cache / "sigma" / ".git").is_dir()
    # upstream gains a rule: the second sync pulls it
    (sig / "rules" / "windows" / "d.yml").write_text(
        (sig / "rules" / "windows" / "b.yml").read_text()
        .replace(ID_B, "aaaaaaaa-0000-4000-8000-0000000000dd"))
    _git("add", "-A", cwd=sig)
    _git("commit", "-q", "-m", "more", cwd=sig)
    doc = json.loads(run("sync", str(cache), "--db", db, *urls, "--format", "json"))
    assert doc["sources"]["sigma"]["rules"] == 4
    assert [r["parsed"] for r in doc["repos"]] == [1, 0, 0]


def test_sync_without_network_fails_at_once(tmp_path: Path) -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    res = runner.invoke(app, ["sync", str(tmp_path / "cache"), "--db", str(tmp_path / "c.db"),
                              "--url", f"sigma=http://127.0.0.1:{port}/x.git",
                              "--url", f"security_content=http://127.0.0.1:{port}/y.git"])
    assert res.exit_code == 2, res.output
    assert "no network" in res.output and f"127.0.0.1:{port}" in res.output
    assert time.monotonic() - t0 < 10
    assert not (tmp_path / "c.db").exists()


def test_sync_rejects_malformed_url_option(tmp_path: Path) -> None:
    assert "NAME=URL" in run("sync", str(tmp_path), "--url", "nonsense", code=1)


def test_example_page_body_end_to_end(tmp_path: Path) -> None:
    """The example page's rule body (newer schema) built and shown: severity from the finding
    score, the finding entity kept, ATT&CK named, stories listed."""
    from conftest import EXAMPLE_PAGE

    lines = EXAMPLE_PAGE.read_text(encoding="utf-8").splitlines()
    body = "\n".join(lines[lines.index("Rule body splunk") + 1:
                           lines.index("Stages and Predicates")]).strip() + "\n"
    root = tmp_path / "security_content"
    (root / "detections" / "endpoint").mkdir(parents=True)
    (root / "macros").mkdir()
    (root / "detections" / "endpoint" / "powershell_invoke_wmiexec_usage.yml").write_text(body)
    db = str(tmp_path / "c.db")
    run("build", "--db", db, str(root))
    doc = json.loads(run("show", EXAMPLE_ID, "--db", db, "--format", "json"))
    assert doc["severity"] == "medium"
    assert doc["extra"]["finding"]["entity"]["score"] == 50
    assert doc["attack"][0]["name"] == "Windows Management Instrumentation"
    assert doc["stories"] == ["Scattered Lapsus$ Hunters", "Suspicious WMI Use"]
    assert doc["body"] == body


def test_every_catalog_command_and_option_is_documented() -> None:
    """House rule 10: docs/catalog.md names each catalog command and each of its options."""
    import typer.main

    from ruleatlas.cli import catalog

    docs = (Path(__file__).resolve().parent.parent / "docs" / "catalog.md").read_text()
    click_app = typer.main.get_command(app)
    for name in ("build", "stats", "show", "list", "search", "errors", "sync"):
        assert f"`ruleatlas {name}" in docs, name
        cmd = click_app.commands[name]  # type: ignore[attr-defined]
        for p in cmd.params:
            for opt in getattr(p, "opts", ()):
                if opt.startswith("--") and opt not in ("--help",):
                    assert opt in docs, f"{name} {opt}"
    assert catalog.UPSTREAM["sigma"].endswith("SigmaHQ/sigma.git")
