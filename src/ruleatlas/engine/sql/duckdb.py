"""Event-level rules on DuckDB (embedded, columnar, all local cores): the same compiler and
queries as Spark (:mod:`.backend`), generated for the ``duckdb`` dialect, over the Parquet
layout ``ruleatlas convert`` writes (schemas unioned by name, ``_kind`` from the partition
directory)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from sqlglot import exp

from ruleatlas.engine.sql.backend import VIEW
from ruleatlas.engine.sql.columnar import EPOCH, KIND_COLUMN, SEQ, dir_kind


def connect(threads: int | None = None) -> Any:
    import duckdb

    con = duckdb.connect(":memory:")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    return con


def _json_source(con: Any, root: str | Path) -> str:
    """``read_json`` over the JSON lines layout, every field a string (or a list of strings),
    as Spark reads it: the columns are given, so DuckDB detects no dates or numbers."""
    src = exp.Literal.string(str(Path(root) / "**" / "*.jsonl")).sql("duckdb")
    opts = "format = 'newline_delimited', union_by_name = true, hive_partitioning = true"
    desc = con.execute(f"DESCRIBE SELECT * FROM read_json({src}, {opts}, sample_size = -1)"
                       ).fetchall()
    typed = {"_position": "BIGINT", SEQ: "BIGINT", EPOCH: "DOUBLE"}
    cols = {name: typed.get(name, "VARCHAR[]" if typ.endswith("[]") else "VARCHAR")
            for name, typ, *_ in desc if name != KIND_COLUMN}
    spec = "{" + ", ".join(f"{exp.Literal.string(n).sql('duckdb')}: '{t}'"
                           for n, t in cols.items()) + "}"
    return f"read_json({src}, {opts}, columns = {spec})"


def _q(name: str) -> str:
    return exp.column(name, quoted=True).sql("duckdb")


def parquet_source(con: Any, root: str | Path) -> tuple[str, dict[str, str]]:
    """The union of ``root``'s Parquet files with every column under a name DuckDB keeps
    apart, and the aliases (column -> its name in the union) where that differs.

    DuckDB's names are case-insensitive: ``union_by_name`` would merge Sysmon's ``ProcessID``
    (System) into ``ProcessId`` (EventData) across files, and inside one file it renames the
    second ``X_1``. So the files are read per exact schema (names from the Parquet footers), each
    column selected by DuckDB's name for its position and aliased: the first casing of a name
    (in sorted order) keeps it, the others become ``name#2``, ``name#3``..."""
    import pyarrow.parquet as pq

    files = sorted(Path(root).rglob("*.parquet"))
    groups: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for f in files:  # per kind (its folder) and exact schema
        kind = dir_kind(f.parent.name) or ""
        groups.setdefault((kind, tuple(pq.read_schema(f).names)), []).append(str(f))
    casings: dict[str, list[str]] = {}
    for name in sorted({n for _, names in groups for n in names}):
        casings.setdefault(name.lower(), []).append(name)
    alias = {n: n if i == 0 else f"{n}#{i + 1}" for ns in casings.values()
             for i, n in enumerate(ns)}
    parts = []
    for (kind, names), fs in groups.items():
        lst = "[" + ", ".join(exp.Literal.string(f).sql("duckdb") for f in fs) + "]"
        read = f"read_parquet({lst}, hive_partitioning = false)"
        duck = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {read}").fetchall()]
        cols = ", ".join(f"{_q(d)} AS {_q(alias[n])}" for d, n in zip(duck, names, strict=True))
        # the kind a constant of its branch: a filter on it prunes the other branches' scans
        parts.append(f"SELECT {cols}, {exp.Literal.string(kind).sql('duckdb')} AS "
                     f"{KIND_COLUMN} FROM {read}")
    if not parts:
        raise ValueError(f"no Parquet files under {root}")
    return " UNION ALL BY NAME ".join(parts), {n: a for n, a in alias.items() if n != a}


def attach(con: Any, root: str | Path, fmt: str = "parquet") -> list[str]:
    """The view ``events`` over ``root/_kind=*/*.parquet`` (or ``*.jsonl``); returns its
    column names (case-variant names: see :func:`parquet_source`)."""
    aliases: dict[str, str] = {}
    con.execute("CREATE OR REPLACE TEMP TABLE _aliases (name VARCHAR, alias VARCHAR)")
    if fmt != "jsonl":
        union, aliases = parquet_source(con, root)
        con.execute(f"CREATE OR REPLACE VIEW {VIEW} AS {union}")
        if aliases:
            con.executemany("INSERT INTO _aliases VALUES (?, ?)", list(aliases.items()))
        cols = [r[0] for r in con.execute(f"DESCRIBE {VIEW}").fetchall()]
        back = {a: n for n, a in aliases.items()}
        return [back.get(c, c) for c in cols]
    con.execute(f"CREATE OR REPLACE VIEW {VIEW}_raw AS SELECT * FROM "
                f"{_json_source(con, root)}")
    # partition values come url-quoted (``%2F``, ``%7C``): decode them once, in Python
    kinds = [r[0] for r in con.execute(f"SELECT DISTINCT {KIND_COLUMN} FROM {VIEW}_raw")
             .fetchall()]
    con.execute(f"CREATE OR REPLACE TEMP TABLE _kinds (raw VARCHAR, {KIND_COLUMN} VARCHAR)")
    con.executemany("INSERT INTO _kinds VALUES (?, ?)", [(k, unquote(k)) for k in kinds])
    cols = [r[0] for r in con.execute(f"DESCRIBE {VIEW}_raw").fetchall()]
    keep = ", ".join(exp.column(c, quoted=True).sql("duckdb") for c in cols if c != KIND_COLUMN)
    con.execute(f"CREATE OR REPLACE VIEW {VIEW} AS SELECT {keep}, k.{KIND_COLUMN} "
                f"FROM {VIEW}_raw e JOIN _kinds k ON e.{KIND_COLUMN} = k.raw")
    return cols


def aliases_of(con: Any) -> dict[str, str]:
    """The aliases :func:`attach` gave (column -> its name in the view)."""
    return dict(con.execute("SELECT name, alias FROM _aliases").fetchall())


class DuckDBBackend:
    """The runner :mod:`.hunt` drives: the layout at ``root`` as the view ``events``."""

    name = "duckdb"
    dialect = "duckdb"

    def __init__(self, con: Any) -> None:
        self.con = con
        self.aliases: dict[str, str] = {}  # column -> its name in the view (case variants)

    def attach(self, root: str | Sequence[str], fmt: str) -> tuple[list[str], dict[str, int]]:
        if not isinstance(root, (str, Path)):
            if len(root) != 1:
                raise ValueError("DuckDB reads one converted folder at a time")
            root = root[0]
        cols = attach(self.con, root, fmt)
        self.aliases = aliases_of(self.con)
        counts = self.con.execute(f"SELECT {KIND_COLUMN}, COUNT(*) FROM {VIEW} "
                                  f"GROUP BY {KIND_COLUMN}").fetchall()
        return cols, {k: int(n) for k, n in counts}

    def event_rows(self, queries: Sequence[str]) -> list[tuple[str, int, int, int]]:
        out: list[tuple[str, int, int, int]] = []
        for q in queries:
            out.extend(self.con.execute(q).fetchall())
        return out

    def agg_rows(self, queries: Sequence[str]) -> list[list[dict[str, Any]]]:
        return [self.rows(q) for q in queries]

    def rows(self, sql: str) -> list[dict[str, Any]]:
        cur = self.con.execute(sql)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def fetch(self, kinds: Sequence[str],
              keys: Sequence[tuple[str, int]]) -> Iterator[dict[str, Any]]:
        """The rows of ``kinds`` and the rows at ``keys`` (file, position), by ``_seq``."""
        self.con.execute("CREATE OR REPLACE TEMP TABLE _want (_file VARCHAR, _position BIGINT)")
        if keys:
            self.con.executemany("INSERT INTO _want VALUES (?, ?)", list(keys))
        kind_list = ", ".join(exp.Literal.string(k).sql("duckdb") for k in kinds) or "NULL"
        cur = self.con.execute(
            f"SELECT * FROM {VIEW} e WHERE e.{KIND_COLUMN} IN ({kind_list}) OR EXISTS ("
            f"SELECT 1 FROM _want w WHERE w._file = e._file AND w._position = e._position) "
            f"ORDER BY e.{SEQ}")
        back = {a: n for n, a in self.aliases.items()}
        names = [back.get(d[0], d[0]) for d in cur.description]
        while True:
            batch = cur.fetchmany(2000)
            if not batch:
                return
            for r in batch:
                yield dict(zip(names, r, strict=True))
