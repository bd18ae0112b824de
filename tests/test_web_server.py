"""The web server under hostile input and at shutdown, as the real ``ruleatlas serve`` process on
a loopback port, and the catalog generation its caches are keyed on.

The hostile catalog is built from a temporary Sigma repository holding one rule whose
description is "suspicious process" 40,000 times (760 KB): FTS5 ``snippet()`` over it takes
~12 s of one C call (it costs the square of the matches), during which SQLite runs no VM step,
so neither the progress handler nor ``interrupt()`` can stop it. The build is told to index all
of it (``RULEATLAS_MAX_FTS_TEXT_CHARS``, default 256 K characters).
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from ruleatlas.build import build
from ruleatlas.store import Catalog, catalog_generation
from ruleatlas.store.connection import ReadPool, connect, connection_stamp
from ruleatlas.web.app import CACHE_CONTROL, CachedPage, PageCache, create_app

HUGE_ID = "bbbbbbbb-0000-4000-8000-000000000666"
SMALL_ID = "bbbbbbbb-0000-4000-8000-000000000001"
REPEAT = 40_000  # "suspicious process " repeats: ~760 KB, snippet() ~12 s on this machine
ROOT = Path(__file__).resolve().parent.parent


def sigma_rule(rid: str, title: str, description: str) -> str:
    return (f"title: {title}\nid: {rid}\nstatus: test\ndescription: {description}\n"
            "logsource:\n    product: windows\n    category: process_creation\n"
            "detection:\n    selection:\n        Image|endswith: '\\\\evil.exe'\n"
            "    condition: selection\nlevel: high\n")


def make_repo(base: Path, huge: bool = True) -> Path:
    root = base / "sigma"
    (root / "rules" / "windows").mkdir(parents=True)
    (root / "rules" / "windows" / "small.yml").write_text(
        sigma_rule(SMALL_ID, "Small Suspicious Rule", "A suspicious process starts"))
    if huge:
        (root / "rules" / "windows" / "huge.yml").write_text(
            sigma_rule(HUGE_ID, "Huge Rule", "suspicious process " * REPEAT))
    return root


@pytest.fixture(scope="module")
def hostile_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("hostile-web")
    db = base / "atlas.db"
    before = os.environ.get("RULEATLAS_MAX_FTS_TEXT_CHARS")
    os.environ["RULEATLAS_MAX_FTS_TEXT_CHARS"] = "4M"  # index the whole huge text
    try:
        build([make_repo(base)], db, workers=1)
    finally:
        if before is None:
            del os.environ["RULEATLAS_MAX_FTS_TEXT_CHARS"]
        else:
            os.environ["RULEATLAS_MAX_FTS_TEXT_CHARS"] = before
    conn = connect(db)
    (n,) = conn.execute("SELECT length(description) FROM rules_fts WHERE id = ?",
                        (HUGE_ID,)).fetchone()
    conn.close()
    assert n >= len("suspicious process ") * REPEAT - 1  # the huge text IS indexed
    return db


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(hostile_db: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``ruleatlas serve`` on the hostile catalog, 2 workers, a 1 s query limit, and snippets
    allowed over the whole huge text (so that a search for ``suspicious`` runs the 12 s call)."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "RULEATLAS_MAX_QUERY_SECONDS": "1",
           "RULEATLAS_MAX_SNIPPET_TEXT_CHARS": "4M"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ruleatlas.cli", "serve", "--db", str(hostile_db), "--port",
         str(port), "--workers", "2", "--server", "uvicorn"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(base + "/api/ping", timeout=1).read()
            break
        except OSError:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
    try:
        yield proc, base
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def get(url: str, timeout: float = 30) -> tuple[int, bytes, float]:
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read(), time.monotonic() - t0
    except urllib.error.HTTPError as e:
        return e.code, e.read(), time.monotonic() - t0


def test_huge_rule_search_answers_503_within_the_limit(
        server: tuple[subprocess.Popen[bytes], str]) -> None:
    _, base = server
    status, body, took = get(base + "/api/rules?q=suspicious")
    assert status == 503, body[:300]
    assert b"query took longer than 1s" in body
    assert took < 1 + 1 + 1.5  # the limit, PAGE_GRACE, and slack for a loaded machine
    # the server still answers other requests meanwhile
    status, _, took = get(base + "/api/ping", timeout=5)
    assert status == 200


def test_sigterm_ends_the_server_with_a_slow_request_in_flight(
        server: tuple[subprocess.Popen[bytes], str]) -> None:
    proc, base = server
    results: list[int] = []

    def slow() -> None:
        try:
            results.append(get(base + "/rules?q=suspicious+process", timeout=30)[0])
        except OSError:  # the connection closed by the stopping server
            results.append(-1)

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.5)  # the request is in the snippet() call now
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=15)
    took = time.monotonic() - t0
    t.join(30)
    assert took < 5, f"server took {took:.1f}s to stop"
    assert results and results[0] != 200


def test_default_snippet_bound_answers_fast(hostile_db: Path) -> None:
    """With the default ``snippet_text_chars`` the huge rule is found, without a snippet of its
    description (the title gives none either: it does not hold the word)."""
    client = TestClient(create_app(hostile_db))
    t0 = time.monotonic()
    r = client.get("/api/rules", params={"q": "suspicious"})
    assert r.status_code == 200
    assert time.monotonic() - t0 < 3
    rows = {row["id"]: row for row in r.json()["rows"]}
    assert set(rows) == {HUGE_ID, SMALL_ID}
    assert rows[SMALL_ID]["snippet"] and not rows[HUGE_ID].get("snippet")


def test_pool_deadline_covers_every_connection_of_the_thread(hostile_db: Path) -> None:
    """The limit is the thread's: a query on a second connection opened during the call (as the
    whole-catalog caches do) is interrupted too."""
    pool = ReadPool(hostile_db, timeout=0.2)
    slow = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
            "SELECT count(*) FROM n")

    def side_connection(_: sqlite3.Connection) -> object:
        other = connect(hostile_db)
        try:
            return other.execute(slow).fetchone()
        finally:
            other.close()

    from ruleatlas.store import QueryTimeout

    t0 = time.monotonic()
    with pytest.raises(QueryTimeout, match=r"longer than 0\.2s"):
        pool.run(side_connection)
    assert time.monotonic() - t0 < 2
    pool.close()


# ------------------------------------------------------------------ generation and caches


def small_catalog(base: Path) -> tuple[Path, Path]:
    repo = make_repo(base, huge=False)
    db = base / "atlas.db"
    build([repo], db, workers=1)
    return repo, db


def test_generation_moves_with_a_commit_not_with_the_wal(tmp_path: Path) -> None:
    repo, db = small_catalog(tmp_path)
    g1 = catalog_generation(db)
    assert g1 >= 1
    reader = connect(db)
    stamp = connection_stamp(reader)
    wal = Path(f"{db}-wal")
    wal.touch()
    os.utime(wal, (time.time() + 100, time.time() + 100))
    with open(wal, "ab"):
        pass
    assert connection_stamp(reader) == stamp  # touching the WAL changes nothing
    (repo / "rules" / "windows" / "small.yml").write_text(
        sigma_rule(SMALL_ID, "Small Suspicious Rule, edited", "A suspicious process starts"))
    build([repo], db, workers=1)
    assert catalog_generation(db) == g1 + 1
    assert connection_stamp(reader) == (stamp[0], (g1 + 1,))
    with Catalog.open(db) as cat, cat.transaction():
        pass  # any write transaction (test results too) is a new generation
    assert connection_stamp(reader)[1] == (g1 + 2,)
    reader.close()


def test_wal_is_cut_after_a_build_with_a_reader_open(tmp_path: Path) -> None:
    repo, db = small_catalog(tmp_path)
    pool = ReadPool(db)
    assert pool.run(lambda c: c.execute("SELECT count(*) FROM rules").fetchone()[0]) == 1
    for i in range(3):
        (repo / "rules" / "windows" / f"n{i}.yml").write_text(sigma_rule(
            f"bbbbbbbb-0000-4000-8000-00000000010{i}", f"New {i}", "words " * 2000))
        build([repo], db, workers=1, full=True)
        assert pool.run(lambda c: c.execute("SELECT count(*) FROM rules").fetchone()[0]) == i + 2
        assert Path(f"{db}-wal").stat().st_size == 0
    pool.close()


def test_page_cache_etag_and_generation(tmp_path: Path) -> None:
    repo, db = small_catalog(tmp_path)
    client = TestClient(create_app(db))
    site = client.app.state.site  # type: ignore[attr-defined]
    url = f"/rules/{SMALL_ID}"
    r1 = client.get(url)
    assert r1.status_code == 200
    etag = r1.headers["etag"]
    assert r1.headers["cache-control"] == CACHE_CONTROL
    assert len(site.cache) == 1
    # If-None-Match -> 304 without a body
    r304 = client.get(url, headers={"if-none-match": etag})
    assert r304.status_code == 304 and r304.content == b"" and r304.headers["etag"] == etag
    assert client.get(url, headers={"if-none-match": f'W/{etag}, "x"'}).status_code == 304
    # touching the WAL: the same page from the cache, same ETag
    wal = Path(f"{db}-wal")
    wal.touch()
    os.utime(wal, (time.time() + 50, time.time() + 50))
    r2 = client.get(url)
    assert r2.headers["etag"] == etag and r2.content == r1.content
    # a build: new generation, new ETag, new content, the old ETag is no longer a 304
    (repo / "rules" / "windows" / "small.yml").write_text(
        sigma_rule(SMALL_ID, "Renamed Small Rule", "A suspicious process starts"))
    build([repo], db, workers=1)
    r3 = client.get(url, headers={"if-none-match": etag})
    assert r3.status_code == 200 and r3.headers["etag"] != etag
    assert b"Renamed Small Rule" in r3.content
    # errors are never cached
    r404 = client.get("/rules/no-such-rule")
    assert r404.status_code == 404 and "etag" not in r404.headers
    assert r404.headers["cache-control"] == "no-store"


def test_page_cache_bounds() -> None:
    cache = PageCache(entries=3, budget=100, max_page=60)

    def page(n: int) -> CachedPage:
        return CachedPage(b"x" * n, "text/html", ())

    for k in "abc":
        cache.put(1, k, page(10))
    assert len(cache) == 3
    cache.get(1, "a")  # a is now the most recent
    cache.put(1, "d", page(10))
    assert cache.get(1, "b") is None and cache.get(1, "a") is not None  # LRU out
    cache.put(1, "big", page(61))  # over max_page: not kept
    assert cache.get(1, "big") is None
    cache.put(1, "e", page(60))
    cache.put(1, "f", page(35))  # 60 + 35 + 10... over the byte budget: oldest out
    assert cache.bytes <= 100
    assert cache.get(2, "f") is None and len(cache) == 0  # a new generation empties it
    cache.put(1, "old", page(5))  # a page of an older generation is not kept
    assert len(cache) == 0
