"""Opening the catalog file: the one place a ``sqlite3`` connection is made.

Every reader (the CLI, the web server, the export, the engine loading its rules) and every writer
(the build, ``ruleatlas test`` storing results) opens the catalog through :func:`connect`:

* ``readonly=True`` (the default) uses SQLite's ``mode=ro`` URI, so a bug in a reader can never
  write; the file must exist;
* ``readonly=False`` creates the file when missing (its folder must exist) and waits up to
  ``BUSY_TIMEOUT_MS`` for another writer instead of failing at once.

**Time limit.** Every connection made here checks, every ``PROGRESS_STEPS`` SQLite VM steps, the
query deadline of the thread running it (:func:`query_deadline`), and stops its query with
``interrupted`` past it. The deadline belongs to the thread, not to one connection, so a page's
queries on the pool connection AND on the short connections whole-catalog caches open while
the page is built share one limit. A single SQLite call that runs no VM steps for a long time
(an FTS5 ``snippet()`` over a huge text) is not stopped by it: the web server answers 503 when
the limit passes and calls ``interrupt()`` (see ``ReadPool.interrupt``), and the search bounds
the text it gives ``snippet()`` (``Limits.snippet_text_chars``).

**Generation.** Every write transaction of the catalog (``Catalog.transaction``: a build, test
results) increments the ``generation`` key of the ``meta`` table just before its COMMIT, so a
reader sees a new generation exactly when new content committed. :func:`generation` reads it
at most once per commit: ``PRAGMA data_version`` (a counter in shared memory, a few
microseconds) tells a connection whether any other connection committed since it last looked.
Caches of whole-catalog facts are keyed on ``(path, generation)`` (:func:`connection_stamp`),
never on the file's or the WAL's size or mtime (a build in progress writes the WAL for minutes
before it commits).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from ruleatlas.model import AtlasError

T = TypeVar("T")

BUSY_TIMEOUT_MS = 30_000  # a reader or second writer waits this long for the writer's lock
PROGRESS_STEPS = 10_000  # SQLite VM steps between two checks of the thread's query deadline
DEFAULT_QUERY_TIMEOUT = 5.0  # seconds of SQLite work per ReadPool.run call
GENERATION_KEY = "generation"  # meta key every write transaction increments
WATCH_BUSY_TIMEOUT_MS = 200  # the server's generation watch never waits longer on a lock


class CatalogError(AtlasError):
    """The catalog file is missing, unreadable, too new, or a rule reference is ambiguous."""


class QueryTimeout(CatalogError):
    """A call's queries ran past their time limit (SQLite interrupted them)."""


class _Deadline(threading.local):
    """Per thread: the monotonic time past which this thread's queries are interrupted."""

    at: float | None = None


_DEADLINE = _Deadline()


def _over_time() -> int:
    at = _DEADLINE.at
    return 1 if at is not None and time.monotonic() > at else 0


@contextmanager
def query_deadline(seconds: float) -> Iterator[float]:
    """Every query this thread runs inside the block (on any connection made by
    :func:`connect`) is interrupted ``seconds`` from now; an enclosing, earlier deadline
    stays. Yields the deadline (``time.monotonic()`` scale)."""
    before = _DEADLINE.at
    at = time.monotonic() + seconds
    _DEADLINE.at = at if before is None else min(before, at)
    try:
        yield _DEADLINE.at
    finally:
        _DEADLINE.at = before


class AtlasConnection(sqlite3.Connection):
    """A catalog connection: knows its file and the generation it last read."""

    file: str = ""
    seen_version: int = -1  # PRAGMA data_version when `seen_generation` was read
    seen_generation: int = 0


def connect(path: str | Path, readonly: bool = True,
            check_same_thread: bool = True) -> sqlite3.Connection:
    """A connection to the catalog at ``path`` with ``sqlite3.Row`` rows (see the module doc)."""
    p = Path(path)
    conn: AtlasConnection
    if readonly:
        if not p.is_file():
            raise CatalogError(f"no catalog at {p} (run `ruleatlas build` first)")
        conn = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True,
                               check_same_thread=check_same_thread, factory=AtlasConnection)
    else:
        if p.parent and not p.parent.is_dir():
            raise CatalogError(f"folder {p.parent} does not exist")
        conn = sqlite3.connect(p, check_same_thread=check_same_thread, factory=AtlasConnection)
    conn.file = str(p.resolve())
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.set_progress_handler(_over_time, PROGRESS_STEPS)
    return conn


def table_exists(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type IN ('table', 'view') AND name = ?", (name,)
    ).fetchone()
    return row is not None


def database_path(conn: sqlite3.Connection) -> str:
    """The file behind ``conn`` ('' for an in-memory database)."""
    if isinstance(conn, AtlasConnection) and conn.file:
        return conn.file
    return str(conn.execute("PRAGMA database_list").fetchone()[2] or "")


def read_generation(conn: sqlite3.Connection) -> int:
    """The ``generation`` stored in ``meta`` (0 for a catalog no write transaction of this
    version has committed to yet, or a file without a ``meta`` table)."""
    if not table_exists(conn, "meta"):
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (GENERATION_KEY,)).fetchone()
    return int(row[0]) if row else 0


def generation(conn: sqlite3.Connection) -> int:
    """The catalog generation as ``conn`` sees it now; read from ``meta`` only when
    ``PRAGMA data_version`` says another connection committed since the last call."""
    (version,) = conn.execute("PRAGMA data_version").fetchone()
    if isinstance(conn, AtlasConnection):
        if version == conn.seen_version:
            return conn.seen_generation
        gen = read_generation(conn)
        conn.seen_version, conn.seen_generation = version, gen
        return gen
    return read_generation(conn)


def bump_generation(conn: sqlite3.Connection) -> None:
    """Increment the generation (inside the caller's write transaction, before COMMIT)."""
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, '1') "
        "ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1", (GENERATION_KEY,))
    if isinstance(conn, AtlasConnection):
        conn.seen_version = -1  # its own commit does not change its data_version


def catalog_generation(path: str | Path) -> int:
    """The generation of the catalog at ``path`` (one short read-only connection)."""
    conn = connect(path)
    try:
        return read_generation(conn)
    finally:
        conn.close()


def with_connection(path: str | Path, fn: Callable[[sqlite3.Connection], T]) -> T:
    """``fn`` over a read-only connection of its own to ``path``, closed afterwards: what a cache
    keyed on :func:`connection_stamp` computes from (it must not keep the caller's connection)."""
    conn = connect(path)
    try:
        return fn(conn)
    finally:
        conn.close()


def connection_stamp(conn: sqlite3.Connection) -> tuple[str, tuple[int, ...]]:
    """``(path, (generation,))`` of the file behind ``conn``: the key of caches of
    whole-catalog facts computed from that connection."""
    path = database_path(conn)
    return path, (generation(conn),) if path else ()


class ReadPool:
    """One read-only connection per thread, a time limit per call of :meth:`run`, and the
    catalog generation watched from the event loop (:meth:`generation`)."""

    def __init__(self, path: str | Path, timeout: float = DEFAULT_QUERY_TIMEOUT) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._watch = connect(self.path, check_same_thread=False)  # fails early, clearly
        self._watch.execute(f"PRAGMA busy_timeout = {WATCH_BUSY_TIMEOUT_MS}")
        self._watch_lock = threading.Lock()
        self._generation = read_generation(self._watch)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._busy: dict[int, sqlite3.Connection] = {}  # thread id -> connection in a run
        self._lock = threading.Lock()
        self.closing = False

    def generation(self) -> int:
        """The catalog generation now (a few microseconds when nothing committed). A lock
        held by a checkpoint for longer than ``WATCH_BUSY_TIMEOUT_MS`` answers the last
        generation seen: the next call reads it again."""
        with self._watch_lock:
            try:
                self._generation = generation(self._watch)
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e):
                    raise
            return self._generation

    def get(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, check_same_thread=False)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def run(self, fn: Callable[[sqlite3.Connection], T], timeout: float | None = None) -> T:
        """``fn(conn)`` with every query it runs in this thread interrupted after ``timeout``
        seconds (default: the pool's); QueryTimeout when interrupted."""
        limit = self.timeout if timeout is None else timeout
        if self.closing:
            raise QueryTimeout("the server is shutting down")
        conn = self.get()
        me = threading.get_ident()
        with self._lock:
            self._busy[me] = conn
        try:
            with query_deadline(limit):
                return fn(conn)
        except sqlite3.OperationalError as e:
            if "interrupted" in str(e):
                why = "the server is shutting down" if self.closing else (
                    f"query took longer than {limit:g}s")
                raise QueryTimeout(why) from None
            raise
        finally:
            with self._lock:
                self._busy.pop(me, None)

    def interrupt(self, thread_id: int | None = None) -> int:
        """``interrupt()`` the connection running in thread ``thread_id`` (every running one
        when None); the number interrupted."""
        with self._lock:
            conns = list(self._busy.values()) if thread_id is None else (
                [self._busy[thread_id]] if thread_id in self._busy else [])
        for c in conns:
            c.interrupt()
        return len(conns)

    def shutdown(self) -> int:
        """Refuse new runs and interrupt the running ones (graceful shutdown)."""
        self.closing = True
        return self.interrupt()

    def close(self) -> None:
        """Shut down, then close every connection no thread is running a query on (closing one
        in use would wait for its query to end: SQLite holds a connection's mutex during a
        step; the process exiting ends it)."""
        self.shutdown()
        with self._lock:
            busy = {id(c) for c in self._busy.values()}
            idle = [c for c in self._all if id(c) not in busy]
            self._all = [c for c in self._all if id(c) in busy]
        for c in idle:
            c.close()
        with self._watch_lock:
            self._watch.close()


def wal_checkpoint(conn: sqlite3.Connection) -> tuple[int, int, int]:
    """``PRAGMA wal_checkpoint(TRUNCATE)`` after a write: copy the WAL into the file and cut
    the WAL to 0 bytes. It waits (``busy_timeout``) for readers still on an older snapshot;
    new readers do not hold it up. ``(busy, wal frames, frames checkpointed)``: busy 1 when a
    reader kept it from finishing (the next write's checkpoint catches up)."""
    busy, frames, done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return int(busy), int(frames), int(done)




__all__ = ["BUSY_TIMEOUT_MS", "GENERATION_KEY", "AtlasConnection", "CatalogError",
           "QueryTimeout", "ReadPool", "bump_generation", "catalog_generation", "connect",
           "connection_stamp", "database_path", "generation", "query_deadline",
           "read_generation", "table_exists", "wal_checkpoint", "with_connection"]
