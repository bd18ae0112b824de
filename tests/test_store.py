"""The store on its own: schema versions and migration, read-only opening, FTS quoting."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ruleatlas.store import SCHEMA_VERSION, Catalog, CatalogError, fts_query
from ruleatlas.store.catalog import SCHEMA_PATH


def test_new_catalog_has_current_schema(tmp_path: Path) -> None:
    with Catalog.open(tmp_path / "c.db") as c:
        assert c.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert c.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        for t in ("rules", "files", "rules_fts", "meta", "test_results", "indicator_counts"):
            assert c.has_table(t)


def test_version_1_catalog_is_migrated(tmp_path: Path) -> None:
    """A catalog made from the first schema (no size/mtime/side columns) gains them."""
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    conn.executescript(
        "CREATE TABLE files (source TEXT NOT NULL, root TEXT NOT NULL, path TEXT NOT NULL, "
        "sha256 TEXT NOT NULL, rules INTEGER NOT NULL DEFAULT 0, errors INTEGER NOT NULL "
        "DEFAULT 0, PRIMARY KEY (root, path));"
        "CREATE TABLE load_errors (source TEXT NOT NULL, root TEXT NOT NULL, path TEXT NOT "
        "NULL, line INTEGER, col INTEGER, kind TEXT NOT NULL, reason TEXT NOT NULL);"
        "CREATE TABLE rules (id TEXT PRIMARY KEY, source TEXT NOT NULL, root TEXT NOT NULL, "
        "path TEXT NOT NULL, title TEXT NOT NULL, language TEXT NOT NULL, query TEXT NOT NULL,"
        " body TEXT NOT NULL, rule_json TEXT NOT NULL);"
        "INSERT INTO files VALUES ('sigma', '/r', 'a.yml', 'x', 1, 0);"
        "PRAGMA user_version = 1;")
    conn.close()
    with Catalog.open(db) as c:
        cols = {r[1] for r in c.conn.execute("PRAGMA table_info(files)")}
        assert {"size", "mtime_ns"} <= cols
        assert "side" in {r[1] for r in c.conn.execute("PRAGMA table_info(load_errors)")}
        assert c.conn.execute("SELECT size FROM files").fetchone()[0] == -1
        assert c.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert c.has_table("rules_fts")


def test_too_new_or_foreign_files_are_clear_errors(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(CatalogError, match="schema version"):
        Catalog.open(db)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CatalogError, match="not a Rule Atlas catalog"):
        Catalog.open(junk)
    with pytest.raises(CatalogError, match="no catalog"):
        Catalog.open(tmp_path / "missing.db", readonly=True)


def test_schema_file_is_the_one_applied() -> None:
    assert "rules_fts" in SCHEMA_PATH.read_text()


@pytest.mark.parametrize(("text", "want"), [
    # hand-written from the documented semantics (store/search.py module doc)
    ("wmiexec", '"wmiexec"*'),  # the last unquoted word is a prefix
    ("invoke wmiexec", '"invoke" "wmiexec"*'),
    ("wmi* exec", '"wmi"* "exec"*'),  # a trailing * makes any word a prefix
    ('"invoke-wmiexec"', '"invoke-wmiexec"'),  # a phrase, never a prefix
    ('say "hi there" now', '"say" "hi there" "now"*'),
    ('foo" OR (bar*', '"foo" "OR (bar*"'),  # an open quote runs to the end
    ('a"b', '"a" "b"'),
    ("NEAR(", '"NEAR("*'),
    ("title:x", '"title:x"*'),
    ("( ) * - ^", None),  # no letter or digit: nothing to search
    ('""', None),
    ("", None),
    (None, None),
])
def test_fts_query_quotes_everything(text: str | None, want: str | None) -> None:
    assert fts_query(text) == want


def test_fts_query_is_always_valid_fts5(tmp_path: Path) -> None:
    """Whatever the text, the query parses: FTS5 itself is the judge."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE t USING fts5(x)")
    conn.execute("INSERT INTO t VALUES ('invoke-wmiexec or bar near')")
    for text in ['"', "((", 'a" OR "b', "NEAR(a b)", "x AND", "*", "a*b", "-x", "^a", "é中文",
                 "{a b}", "a:b", '"unclosed phrase', "\\", "'; DROP", "AND OR NOT"]:
        q = fts_query(text)
        if q is not None:
            conn.execute("SELECT count(*) FROM t WHERE t MATCH ?", (q,)).fetchone()
    assert conn.execute("SELECT count(*) FROM t WHERE t MATCH ?",
                        (fts_query('foo" OR (bar*'),)).fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM t WHERE t MATCH ?",
                        (fts_query("wmiex"),)).fetchone() == (1,)


def test_a_second_writer_gets_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    with Catalog.open(db) as first, Catalog.open(db) as second:
        second.conn.execute("PRAGMA busy_timeout = 50")
        with first.transaction():
            with pytest.raises(CatalogError, match="another build"):
                with second.transaction():
                    pass
