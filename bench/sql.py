"""SQL backends benchmark: the event-level Sigma rules on the same events, local engine vs Spark
``local[1]``/``local[2]`` vs DuckDB (1 and 2 threads), from ONE run.

Inputs: the Sigma regression EVTX files, and a few OTRF archives (``--otrf N``, the N largest
Windows host archives), each converted once to Parquet (``ruleatlas convert``; time reported).
Reported per input: the read floor (reading + flattening), the local engine (1 core: read +
route + pre-filter + match, only the event-level rules the SQL backends run), the JVM start
(once, apart), and per SQL backend: reading the table's schema and kinds, compiling the rules,
running the one query; plus whether the findings equal the local engine's (rule, file,
position), which they must.

Usage: ``.venv/bin/python bench/sql.py [--otrf N] [--skip-spark]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from ruleatlas.engine.catalog import from_repos, is_retired
from ruleatlas.engine.events import ReadError
from ruleatlas.engine.readers import read_events
from ruleatlas.engine.runner import Engine, EngineRule, prepare
from ruleatlas.engine.sql import duckdb as duck
from ruleatlas.engine.sql import spark as sp
from ruleatlas.engine.sql.backend import needs_plan
from ruleatlas.engine.sql.columnar import convert
from ruleatlas.engine.sql.hunt import event_sql

ROOT = Path(__file__).resolve().parent.parent
CORPUS = (ROOT.parent / "shared" / "corpus").resolve()
OTRF = CORPUS / "otrf" / "datasets" / "atomic" / "windows"
SIGMA = CORPUS / "sigma"
REGRESSION = SIGMA / "regression_data"

Found = set[tuple[str, str, int]]


def inputs(n_otrf: int) -> list[tuple[str, list[str]]]:
    evtx = sorted(str(p) for p in REGRESSION.rglob("*.evtx"))
    arch = sorted((p for p in OTRF.rglob("*") if p.suffix in (".zip", ".gz")),
                  key=lambda p: -p.stat().st_size)[:n_otrf]
    out = [("regression EVTX", evtx)]
    if arch:
        out.append((f"OTRF, {len(arch)} largest archives", [str(p) for p in arch]))
    return out


def local(rules: list[EngineRule], paths: list[str]) -> tuple[Found, int, float, float]:
    errors: list[ReadError] = []
    t = time.perf_counter()
    events = list(read_events(paths, errors))
    floor = time.perf_counter() - t
    t = time.perf_counter()
    eng = Engine(rules)
    found = {(f.rule.rule.id, f.event.file, f.event.position)
             for ev in read_events(paths, []) for f in eng.match(ev)}
    return found, len(events), floor, time.perf_counter() - t


def row(name: str, secs: float, extra: str = "") -> None:
    print(f"  {name:<34} {secs:8.2f} s  {extra}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--otrf", type=int, default=6)
    ap.add_argument("--skip-spark", action="store_true")
    args = ap.parse_args()
    t = time.perf_counter()
    loaded = [lr for lr in from_repos([SIGMA]) if not is_retired(lr.rule)]
    prepared = [prepare(lr.rule, lr.analysis) for lr in loaded]
    event_level = [er for er in prepared if er.runnable and needs_plan(er) is None]
    print(f"{len(loaded)} Sigma rules, {len(event_level)} runnable event-level "
          f"(loaded in {time.perf_counter() - t:.1f} s)")
    spark: Any = None
    if not args.skip_spark:
        spark, jvm = sp.start("local[1]")
        print(f"JVM + SparkSession start (local[1]): {jvm:.2f} s")
    for name, paths in inputs(args.otrf):
        print(f"\n{name}: {len(paths)} files")
        found, n, floor, eng = local(event_level, paths)
        row("read floor", floor, f"{n} events")
        row("local engine, 1 core", eng, f"{len(found)} findings, {eng / floor:.1f}x floor")
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            rep = convert(paths, Path(tmp) / "pq")
            row("convert to Parquet", time.perf_counter() - t,
                f"{rep.files} files, {rep.bytes / 1e6:.1f} MB, {len(rep.kinds)} kinds")
            sql_runs(event_level, Path(tmp) / "pq", found, spark)
    if spark is not None:
        spark.stop()


def sql_runs(rules: list[EngineRule], pq: Path, found: Found, spark: Any) -> None:
    for threads in (1, 2):
        run = event_sql(duck.DuckDBBackend(duck.connect(threads)), rules, str(pq))
        report(f"DuckDB, {threads} thread(s)", run, found)
    if spark is None:
        return
    for master in ("local[1]", "local[2]"):
        spark.stop()
        t = time.perf_counter()
        spark, _ = sp.start(master)
        start = time.perf_counter() - t
        run_ = event_sql(sp.SparkBackend(spark), rules, str(pq))
        report(f"Spark {master} (session {start:.1f} s)", run_, found)
        run_ = event_sql(sp.SparkBackend(spark), rules, str(pq))
        report(f"Spark {master}, second run", run_, found)


def report(name: str, run: Any, found: Found) -> None:
    got = {(f.rule_id, f.file, f.position) for f in run.findings}
    want = {f for f in found if f[0] not in run.plan.fallback}
    total = run.read_seconds + run.compile_seconds + run.run_seconds
    row(name, total, f"read {run.read_seconds:.2f} + compile {run.compile_seconds:.2f} + run "
        f"{run.run_seconds:.2f}; {len(got)} findings, {len(run.plan.rules)} rules as SQL, "
        f"{len(run.plan.fallback)} fall back; "
        f"{'same findings' if got == want else f'DIFFERENT: {len(got ^ want)}'}")


if __name__ == "__main__":
    main()
