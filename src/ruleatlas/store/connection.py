"""Opening the catalog file: the one place a ``sqlite3`` connection is made.

Every reader (the CLI, the web server, the export, the engine loading its rules) and every writer
(the build, ``ruleatlas test`` storing results) opens the catalog through :func:`connect`:

* ``readonly=True`` (the default) uses SQLite's ``mode=ro`` URI, so a bug in a reader can never
  write; the file must exist;
* ``readonly=False`` creates the file when missing (its folder must exist) and waits up to
  ``BUSY_TIMEOUT_MS`` for another writer instead of failing at once.

:class:`ReadPool` hands out one read-only connection per thread (Starlette runs page builders in
a thread pool) and enforces a time limit per call inside SQLite. :func:`catalog_stamp` is what
changes when the catalog does; whole-catalog caches are keyed on it.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ruleatlas.model import AtlasError

T = TypeVar("T")

BUSY_TIMEOUT_MS = 30_000  # a reader or second writer waits this long for the writer's lock
PROGRESS_STEPS = 20_000  # SQLite VM steps between two checks of a ReadPool deadline
DEFAULT_QUERY_TIMEOUT = 5.0  # seconds of SQLite work per ReadPool.run call


class CatalogError(AtlasError):
    """The catalog file is missing, unreadable, too new, or a rule reference is ambiguous."""


class QueryTimeout(CatalogError):
    """A call's queries ran past their time limit (SQLite interrupted them)."""


def connect(path: str | Path, readonly: bool = True,
            check_same_thread: bool = True) -> sqlite3.Connection:
    """A connection to the catalog at ``path`` with ``sqlite3.Row`` rows (see the module doc)."""
    p = Path(path)
    if readonly:
        if not p.is_file():
            raise CatalogError(f"no catalog at {p} (run `ruleatlas build` first)")
        conn = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True,
                               check_same_thread=check_same_thread)
    else:
        if p.parent and not p.parent.is_dir():
            raise CatalogError(f"folder {p.parent} does not exist")
        conn = sqlite3.connect(p, check_same_thread=check_same_thread)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


def table_exists(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type IN ('table', 'view') AND name = ?", (name,)
    ).fetchone()
    return row is not None


def database_path(conn: sqlite3.Connection) -> str:
    """The file behind ``conn`` ('' for an in-memory database)."""
    return str(conn.execute("PRAGMA database_list").fetchone()[2] or "")


def catalog_stamp(path: str | Path) -> tuple[int, ...]:
    """What changes when the catalog does: size and mtime of the file and of its WAL (a writer
    in WAL mode, e.g. ``ruleatlas test`` recording results, touches only the ``-wal`` file
    until a checkpoint)."""
    out: list[int] = []
    for p in (Path(path), Path(f"{path}-wal")):
        try:
            st = p.stat()
        except OSError:
            out += [-1, -1]
        else:
            out += [st.st_size, st.st_mtime_ns]
    return tuple(out)


def with_connection(path: str | Path, fn: Callable[[sqlite3.Connection], T]) -> T:
    """``fn`` over a read-only connection of its own to ``path``, closed afterwards: what a cache
    keyed on :func:`connection_stamp` computes from (it must not keep the caller's connection)."""
    conn = connect(path)
    try:
        return fn(conn)
    finally:
        conn.close()


def connection_stamp(conn: sqlite3.Connection) -> tuple[str, tuple[int, ...]]:
    """``(path, catalog_stamp(path))`` of the file behind ``conn``: the key of caches of
    whole-catalog facts computed from that connection."""
    path = database_path(conn)
    return path, catalog_stamp(path) if path else ()


class ReadPool:
    """One read-only connection per thread, with a time limit per call of :meth:`run` enforced
    inside SQLite by a progress handler."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        connect(self.path).close()  # fail early, with a clear message
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def get(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, check_same_thread=False)
            local = self._local
            local.deadline = None

            def over_time() -> int:
                d = local.deadline
                return 1 if d is not None and time.monotonic() > d else 0

            conn.set_progress_handler(over_time, PROGRESS_STEPS)
            local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def run(self, fn: Callable[[sqlite3.Connection], T],
            timeout: float = DEFAULT_QUERY_TIMEOUT) -> T:
        """``fn(conn)`` with every query it runs interrupted after ``timeout`` seconds."""
        conn = self.get()
        self._local.deadline = time.monotonic() + timeout
        try:
            return fn(conn)
        except sqlite3.OperationalError as e:
            if "interrupted" in str(e):
                raise QueryTimeout(f"query took longer than {timeout:g}s") from None
            raise
        finally:
            self._local.deadline = None

    def close(self) -> None:
        with self._lock:
            for c in self._all:
                c.close()
            self._all.clear()


__all__ = ["BUSY_TIMEOUT_MS", "CatalogError", "QueryTimeout", "ReadPool", "catalog_stamp",
           "connect", "connection_stamp", "database_path", "table_exists",
           "with_connection"]
