"""Event-level rules on DuckDB (embedded, columnar, all local cores): the same compiler and
queries as Spark (:mod:`.backend`), generated for the ``duckdb`` dialect, over the Parquet
layout ``ruleatlas convert`` writes (schemas unioned by name, ``_kind`` from the partition
directory)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from sqlglot import exp

from ruleatlas.engine.runner import EngineRule
from ruleatlas.engine.sql.backend import VIEW, SqlFinding, SqlPlan, findings, plan_queries
from ruleatlas.engine.sql.columnar import KIND_COLUMN


@dataclass(slots=True)
class DuckRun:
    findings: list[SqlFinding] = field(default_factory=list)
    plan: SqlPlan = field(default_factory=SqlPlan)
    read_seconds: float = 0.0
    compile_seconds: float = 0.0
    run_seconds: float = 0.0


def connect(threads: int | None = None) -> Any:
    import duckdb

    con = duckdb.connect(":memory:")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    return con


def attach(con: Any, root: str | Path) -> list[str]:
    """The view ``events`` over ``root/_kind=*/*.parquet``; returns its column names."""
    glob = str(Path(root) / "**" / "*.parquet")
    src = exp.Literal.string(glob).sql("duckdb")
    con.execute(f"CREATE OR REPLACE VIEW {VIEW}_raw AS SELECT * FROM read_parquet({src}, "
                "hive_partitioning = true, union_by_name = true, hive_types_autocast = false)")
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


def hunt(con: Any, rules: Sequence[EngineRule], root: str | Path) -> DuckRun:
    run = DuckRun()
    t0 = time.perf_counter()
    cols = attach(con, root)
    kinds = [r[0] for r in con.execute(f"SELECT {KIND_COLUMN} FROM _kinds").fetchall()]
    t1 = time.perf_counter()
    run.read_seconds = t1 - t0
    run.plan = plan_queries(rules, cols, kinds, "duckdb")
    t2 = time.perf_counter()
    run.compile_seconds = t2 - t1
    for q in run.plan.queries:
        rows = con.execute(q).fetchall()
        run.findings.extend(findings(run.plan, rows))
    run.run_seconds = time.perf_counter() - t2
    return run
