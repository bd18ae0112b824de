"""Hunt benchmark: all Windows Sigma rules over the OTRF archives and the regression EVTX files.

Prints, from ONE run, for the same events:

* ``read floor``: only reading and flattening (``engine.readers.read_events``);
* ``engine``: reading + routing + literal pre-filter + compiled matchers (``ruleatlas hunt``);
* ``engine, no pre-filter``: routing + compiled matchers, every routed rule on every event
  (on a sample, extrapolated);
* ``naive``: every rule's tree interpreted on every event, no routing, no pre-filter, no compile
  (``compile.interpret``; on a sample, extrapolated and said so);

and the ratios to the read floor. Goal (issue 6): engine within 5x of the read floor.

``--startup`` measures instead how long ``ruleatlas hunt`` takes from the command line with the
full catalog (Sigma + Splunk, built into a temporary file, or ``--db``), as a subprocess, end to
end (issue 16): on one small regression EVTX the time to the first finding printed and to exit,
with the plan cache cold (the first hunt after the build), warm, and emptied (every rule
prepared as before the cache); on the 40 smallest regression EVTX files end to end. Next to the
floors: ``python -c pass``, ``python -c "import ruleatlas.cli"``, ``ruleatlas hunt`` refusing a
missing file (the command line parsed and the engine imported, no rule read) and reading the
file alone.
Goal: under 1 s end to end. The subprocesses get a bytecode cache (``PYTHONPYCACHEPREFIX``), as
an installed package has.

``--jobs`` measures instead ``hunt --jobs 1`` and ``--jobs 2`` (``engine.hunt.run``, worker
processes sharing out the input files) on the OTRF archives, with the read floor in the same run,
the CPU time of the parent and of the workers, and the load average (issue 15: ``--jobs 2`` at
least 1.7x ``--jobs 1``; the findings of both are compared too).

``--vendors --db F`` measures instead, in one process and one run, the read floor and the hunt
of the OTRF archives with each vendor's rules alone (Sigma, Splunk, Elastic) and with all three,
from a catalog built from the three repositories (its plan cache, as ``ruleatlas hunt`` loads
them): wall and CPU time (the machine is shared: CPU time is the steadier figure), findings,
candidate rules per event, ratios to the floor (issue 14: all three within 5x of the floor).

``--backends`` measures instead the backends against the local engine (issue 15), in one run
on the OTRF archives: the read floor; ``ruleatlas convert`` of the corpus to Parquet (time,
size); the local engine ``--jobs 1`` and ``--jobs 2`` on the archives; Spark ``local[1]`` and
``local[2]`` with ``--spark-mode plans`` (each in its own process, as a JVM's master is fixed;
the session's start, JVM then Python workers, reported apart from the hunt's clock) and DuckDB
(2 threads, SQL; ``--no-duckdb`` leaves it out) on the Parquet folder; the findings of each
compared with ``--jobs 1``'s (rule, file, position, in order). Goals: ``--jobs 2`` at least 1.7x
``--jobs 1``; Spark ``local[2]`` at least 1.7x ``local[1]`` and, start apart, at least as fast
as ``--jobs 1``. (``--spark-mode sql`` does not finish the corpus in 25 minutes here: left out.)
``--rounds N`` runs the four hunts N times in turn and prints each round's ratios and those of
the best times (the host's noise: one round's ratio moves by 20 % from run to run).

Usage: ``.venv/bin/python bench/hunt.py [--sample N] [--limit-files N] [--startup [--db F]]
[--jobs] [--vendors --db F] [--backends [--keep DIR] [--no-duckdb] [--rounds N]]``
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ruleatlas.engine.catalog import from_repos
from ruleatlas.engine.compile import interpret
from ruleatlas.engine.events import ReadError
from ruleatlas.engine.readers import read_events
from ruleatlas.engine.runner import Engine, prepare

ROOT = Path(__file__).resolve().parent.parent
CORPUS = (ROOT.parent / "shared" / "corpus").resolve()
OTRF = CORPUS / "otrf" / "datasets" / "atomic" / "windows"
SIGMA = CORPUS / "sigma"
SPLUNK = CORPUS / "security_content"
REGRESSION = SIGMA / "regression_data"


def inputs(limit: int | None) -> list[tuple[str, list[str]]]:
    otrf = sorted(str(p) for p in OTRF.rglob("*") if p.suffix in (".zip", ".gz"))
    evtx = sorted(str(p) for p in REGRESSION.rglob("*.evtx"))
    if limit:
        otrf, evtx = otrf[:limit], evtx[:limit]
    return [("OTRF archives", otrf), ("regression EVTX", evtx)]


def read_floor(paths: list[str]) -> tuple[int, float]:
    errors: list[ReadError] = []
    t = time.perf_counter()
    n = 0
    for _ in read_events(paths, errors):
        n += 1
    return n, time.perf_counter() - t


def run_engine(engine: Engine, paths: list[str]) -> tuple[int, int, float]:
    errors: list[ReadError] = []
    t = time.perf_counter()
    n = found = 0
    for ev in read_events(paths, errors):
        n += 1
        for _ in engine.match(ev):
            found += 1
    for _ in engine.finish():
        found += 1
    return n, found, time.perf_counter() - t


def sample_events(paths: list[str], k: int) -> list:
    """Every (total/k)-th event, so the sample spans all archives and channels."""
    errors: list[ReadError] = []
    evs = list(read_events(paths, errors))
    step = max(1, len(evs) // k)
    return evs[::step][:k]


SMALL = (REGRESSION / "rules-emerging-threats" / "2025" / "Malware" / "Grixba"
         / "proc_creation_win_malware_grixba_recon" / "af688c76-4ce4-4309-bfdd-e896f01acf27.evtx")


def _env(pycache: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), PYTHONPYCACHEPREFIX=pycache)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("ruleatlas")
    if script.is_file():
        return [sys.executable, str(script)]
    return [sys.executable, "-c", "from ruleatlas.cli import main; main()"]


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float | None, int]:
    """(seconds to exit, seconds to the first line on stdout or None, lines) of a command."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert p.stdout is not None
    first = None
    n = 0
    for _ in p.stdout:
        if first is None:
            first = time.perf_counter() - t
        n += 1
    p.wait()
    return time.perf_counter() - t, first, n


def best(cmd: list[str], env: dict[str, str], k: int) -> tuple[float, float | None, int]:
    runs = [timed(cmd, env) for _ in range(k)]
    return min(runs, key=lambda r: r[0])


def startup(db_arg: str | None, k: int) -> None:
    """The ``--startup`` figures (see the module docstring)."""
    tmp = tempfile.mkdtemp(prefix="bench-hunt-")
    env = _env(str(Path(tmp) / "pycache"))
    try:
        if db_arg:
            db = Path(db_arg)
        else:
            db = Path(tmp) / "catalog.db"
            t = time.perf_counter()
            subprocess.run([*_cli(), "build", "--db", str(db), str(SIGMA), str(SPLUNK)],
                           env=env, check=True, stdout=subprocess.DEVNULL)
            print(f"catalog: built in {time.perf_counter() - t:.1f}s (plans included)")
        hunt = [*_cli(), "hunt", "--db", str(db), "--format", "jsonl"]
        one = [str(SMALL)]
        small40 = [str(p) for p in sorted(REGRESSION.rglob("*.evtx"),
                                          key=lambda p: (p.stat().st_size, str(p)))[:40]]
        n_one, t_read = read_floor(one)
        n_40, t_read40 = read_floor(small40)
        cold = timed([*hunt, *one], env)  # first hunt after the build (plans from the build)
        warm = best([*hunt, *one], env, k)
        warm40 = best([*hunt, *small40], env, k)
        py = best([sys.executable, "-c", "pass"], env, k)
        imp = best([sys.executable, "-c", "import ruleatlas.cli"], env, k)
        # the command line parsed (typer builds a pydantic adapter per option) and the engine
        # imported, then the missing log file refused: everything but the rules and the events
        cli = best([*hunt, str(Path(tmp) / "missing.evtx")], env, k)
        con = sqlite3.connect(db)
        with con:
            con.execute("DELETE FROM engine_plans")  # every rule prepared, as before the cache
        con.close()
        nocache = timed([*hunt, *one], env)
        again = timed([*hunt, *one], env)  # the hunt above stored the plans back
        print(f"one EVTX: {SMALL.name} ({n_one} event); 40 smallest: {n_40} events")
        print(f"{'figure':44} {'exit s':>8} {'1st finding s':>14} {'findings':>9}")
        rows = [("floor: python -c pass", py), ("floor: python -c 'import ruleatlas.cli'", imp),
                ("floor: ruleatlas hunt <missing file>", cli),
                ("hunt, one EVTX, cold (first after build)", cold),
                ("hunt, one EVTX, warm", warm),
                ("hunt, one EVTX, no plan cache", nocache),
                ("hunt, one EVTX, plans stored by that hunt", again),
                ("hunt, 40 small EVTX, warm", warm40)]
        for label, (ex, first, n) in rows:
            f = f"{first:14.3f}" if first is not None else f"{'-':>14}"
            print(f"{label:44} {ex:8.3f} {f} {n if 'floor' not in label else '':>9}")
        print(f"read floor (in process): one EVTX {t_read * 1e3:.1f} ms, 40 EVTX "
              f"{t_read40 * 1e3:.1f} ms")
        print(f"goal: under 1 s end to end -> warm one EVTX {warm[0]:.2f}s: "
              f"{'met' if warm[0] < 1 else 'not met'}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def jobs_figures(runnable: list, paths: list[str]) -> None:
    """The ``--jobs`` figures (see the module docstring)."""
    import resource

    from ruleatlas.engine.hunt import HuntReport, run

    def cpu() -> float:
        me = resource.getrusage(resource.RUSAGE_SELF)
        ch = resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + ch.ru_utime + ch.ru_stime

    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    gc.collect()
    n_read, t_read = read_floor(paths)
    print(f"read floor : {n_read:>8} events {t_read:7.1f}s {n_read / t_read:>9.0f} ev/s")
    got: dict[int, tuple[float, list]] = {}
    for jobs in (1, 2):
        gc.collect()
        rep = HuntReport()
        c, t = cpu(), time.perf_counter()
        found = [(f.rule.rule.id, f.event.file, f.event.position)
                 for f in run(runnable, paths, rep, jobs=jobs)]
        wall, used = time.perf_counter() - t, cpu() - c
        got[jobs] = (wall, found)
        print(f"--jobs {jobs}   : {rep.events:>8} events {wall:7.1f}s "
              f"{rep.events / wall:>9.0f} ev/s  {len(found)} findings, CPU {used:.1f}s "
              f"({wall / t_read:.2f}x the read floor; load now "
              f"{os.getloadavg()[0]:.2f})")
        sys.stdout.flush()
    ratio = got[1][0] / got[2][0]
    met = "met" if ratio >= 1.7 else "not met"
    print(f"--jobs 2 / --jobs 1: {ratio:.2f}x (goal >= 1.7x: {met})"
          f"; same findings in the same order: {got[1][1] == got[2][1]}")


def timed_run(label: str, fn: Any) -> tuple[Any, float, float]:
    """(result, wall seconds, CPU seconds of this process) of ``fn()``."""
    gc.collect()
    w, c = time.perf_counter(), time.process_time()
    got = fn()
    return got, time.perf_counter() - w, time.process_time() - c


def vendors(db: str, paths: list[str]) -> None:
    """The ``--vendors`` figures (see the module docstring)."""
    import dataclasses

    from ruleatlas.engine.catalog import is_retired
    from ruleatlas.engine.plans import load

    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    plans = load(db)
    heads = [h for h in plans.plans if not is_retired(h.rule)]
    (n_read, _), w1, c1 = timed_run("floor", lambda: read_floor(paths))
    print(f"read floor       : {n_read:>8} events {w1:7.1f}s wall {c1:7.1f}s CPU "
          f"{n_read / w1:>9.0f} ev/s")
    rows = []
    for label in ("sigma", "splunk", "elastic", "all three"):
        chosen = tuple(h for h in heads if label == "all three" or h.rule.source == label)
        rules = dataclasses.replace(plans, plans=chosen).engine_rules([])
        engine = Engine(rules)
        (n, found, _), w, c = timed_run(label, lambda e=engine: run_engine(e, paths))
        rows.append((label, len(rules), n, found, engine.candidates / max(n, 1), w, c))
        print(f"{label:17}: {len(rules):>5} rules {n:>8} events {w:7.1f}s wall {c:7.1f}s CPU "
              f"{n / w:>9.0f} ev/s {found:>6} findings "
              f"{engine.candidates / max(n, 1):5.1f} cand/ev  -> {w / w1:.2f}x wall, "
              f"{c / c1:.2f}x CPU of the floor (load now {os.getloadavg()[0]:.2f})")
        sys.stdout.flush()
    (_, _), w2, c2 = timed_run("floor", lambda: read_floor(paths))
    wf, cf = min(w1, w2), min(c1, c2)
    print(f"read floor again : {w2:7.1f}s wall {c2:7.1f}s CPU; floor used: {wf:.1f}s wall, "
          f"{cf:.1f}s CPU ({n_read / wf:.0f} ev/s)")
    print("\n| rules | rules run | events/s | findings | candidates/event | wall / floor "
          "| CPU / floor |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, k, n, found, cand, w, c in rows:
        print(f"| {label} | {k:,} | {n / w:,.0f} | {found:,} | {cand:.1f} | {w / wf:.2f}x "
              f"| {c / cf:.2f}x |")


def _sql_run(engine: str, runnable: list, pq: str, master: str | None = None,
             threads: int | None = None, mode: str = "sql") -> dict:
    """One SQL hunt of the Parquet folder: timings, counts and the findings' keys."""
    from ruleatlas.engine.hunt import HuntReport
    from ruleatlas.engine.sql import duckdb as duck
    from ruleatlas.engine.sql.hunt import SqlSummary, hunt_sql, start_backend

    summary = SqlSummary(engine, master, mode)
    be = (start_backend(engine, master, summary) if engine == "spark"
          else duck.DuckDBBackend(duck.connect(threads)))
    rep = HuntReport()
    t = time.perf_counter()
    found = [(f.rule.rule.id, f.event.file, f.event.position)
             for f in hunt_sql(runnable, [pq], rep, summary, backend=be)]
    wall = time.perf_counter() - t
    return {"wall": wall, "events": rep.events, "found": found, "in_sql": summary.in_sql,
            "on_workers": summary.on_workers,
            "fell_back": len(summary.fallback), "seconds": summary.seconds,
            "reasons": dict(summary.reasons().most_common(8))}


def spark_child(master: str, pq: str, mode: str) -> None:
    """``--spark-run MASTER --parquet DIR --spark-mode M``: one Spark run, its figures as JSON
    on stdout."""
    import json

    loaded = [lr for lr in from_repos([SIGMA], languages=["sigma"])
              if lr.rule.logsource.get("product") == "windows"]
    runnable = [p for p in (prepare(lr.rule, lr.analysis) for lr in loaded) if p.runnable]
    gc.freeze()  # as the parent process and the CLI do with the rules they hunt with
    got = _sql_run("spark", runnable, pq, master, mode=mode)
    print(json.dumps(got))


def _spark_figures(master: str, pq: str, mode: str) -> dict:
    import json

    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    p = subprocess.run([sys.executable, __file__, "--spark-run", master, "--parquet", pq,
                        "--spark-mode", mode],
                       env=env, capture_output=True, text=True, check=False)
    if p.returncode:
        raise RuntimeError(f"Spark {master} run failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def backends_figures(runnable: list, paths: list[str], keep: str | None,
                     no_duckdb: bool = False, rounds: int = 1) -> None:
    """The ``--backends`` figures (see the module docstring)."""
    from ruleatlas.engine.hunt import HuntReport, run
    from ruleatlas.engine.sql.columnar import convert

    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    n_read, t_read = read_floor(paths)
    tmp = keep or tempfile.mkdtemp(prefix="bench-backends-")
    pq = str(Path(tmp) / "pq")
    try:
        t = time.perf_counter()
        rep = convert(paths, pq)
        t_conv = time.perf_counter() - t
        rows: list[tuple[str, float, int, str]] = [("read floor", t_read, n_read, "")]
        rows.append(("convert to Parquet", t_conv, rep.events,
                     f"{rep.files} files, {rep.bytes / 1e6:.1f} MB, {len(rep.kinds)} kinds"))
        base: list = []
        walls: dict[str, list[float]] = {}
        for k in range(rounds):  # the four hunts in turn, so a slow spell of the host is shared
            tag = f" #{k + 1}" if rounds > 1 else ""
            for jobs in (1, 2):
                gc.collect()
                r = HuntReport()
                t = time.perf_counter()
                found = [(f.rule.rule.id, f.event.file, f.event.position)
                         for f in run(runnable, paths, r, jobs=jobs)]
                wall = time.perf_counter() - t
                walls.setdefault(f"jobs{jobs}", []).append(wall)
                base = base or found
                rows.append((f"local --jobs {jobs}{tag}", wall, r.events,
                             f"{len(found)} findings, same: {found == base}"))
                print(rows[-1], flush=True)
            for master in ("local[1]", "local[2]"):
                got = _spark_figures(master, pq, "plans")
                walls.setdefault(master, []).append(got["wall"])  # the JVM's start apart
                sec = ", ".join(f"{k} {v:.1f}" for k, v in got["seconds"].items())
                rows.append((f"Spark {master} plans{tag}", got["wall"], got["events"],
                             f"{got['on_workers']} rules on the workers; {sec}; same "
                             f"findings: {[tuple(x) for x in got['found']] == base}"))
                print(rows[-1], flush=True)
        for threads in () if no_duckdb else (2,):
            got = _sql_run("duckdb", runnable, pq, threads=threads)
            sec = ", ".join(f"{k} {v:.1f}" for k, v in got["seconds"].items())
            rows.append((f"DuckDB, {threads} thread(s)", got["wall"], got["events"],
                         f"{got['in_sql']} in SQL, {got['fell_back']} fell back; {sec}; same "
                         f"findings: {got['found'] == base}"))
            print(rows[-1], flush=True)
        print(f"\n{'figure':34} {'seconds':>9} {'events/s':>10}  notes")
        for label, secs, n, note in rows:
            print(f"{label:34} {secs:9.1f} {n / secs:10.0f}  {note}")
        goals = (("--jobs 2 / --jobs 1", "jobs1", "jobs2", 1.7),
                 ("Spark local[2] / local[1]", "local[1]", "local[2]", 1.7),
                 ("Spark local[2] / --jobs 1", "jobs1", "local[2]", 1.0))
        for label, slow, fast, goal in goals:
            each = [a / b for a, b in zip(walls[slow], walls[fast], strict=True)]
            best = min(walls[slow]) / min(walls[fast])
            print(f"{label}: {', '.join(f'{x:.2f}x' for x in each)}"
                  + (f" (each round); best of {rounds}: {best:.2f}x" if rounds > 1 else "")
                  + f" (goal >= {goal}x)")
        print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        if keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sample", type=int, default=300, help="events for the slow baselines")
    ap.add_argument("--limit-files", type=int, default=None)
    ap.add_argument("--startup", action="store_true", help="hunt start-up figures (issue 16)")
    ap.add_argument("--db", default=None, help="--startup: an existing full catalog")
    ap.add_argument("--repeat", type=int, default=5, help="--startup: best of N warm runs")
    ap.add_argument("--jobs", action="store_true", help="--jobs 1 vs 2 figures (issue 15)")
    ap.add_argument("--vendors", action="store_true",
                    help="each vendor alone and all three, with --db (issue 14)")
    ap.add_argument("--backends", action="store_true",
                    help="local vs Spark vs DuckDB on the converted corpus (issue 15)")
    ap.add_argument("--keep", default=None, help="--backends: keep the Parquet folder here")
    ap.add_argument("--no-duckdb", action="store_true", help="--backends: leave DuckDB out")
    ap.add_argument("--rounds", type=int, default=1,
                    help="--backends: the local and Spark hunts this many times, in turn")
    ap.add_argument("--spark-mode", default="plans", help=argparse.SUPPRESS)
    ap.add_argument("--spark-run", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--parquet", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.spark_run:
        spark_child(args.spark_run, args.parquet, args.spark_mode)
        return
    if args.vendors:
        if not args.db:
            ap.error("--vendors needs --db (a catalog of the three vendors)")
        vendors(args.db, inputs(args.limit_files)[0][1])
        return
    if args.startup:
        startup(args.db, args.repeat)
        return

    t = time.perf_counter()
    loaded = [lr for lr in from_repos([SIGMA], languages=["sigma"])
              if lr.rule.logsource.get("product") == "windows"]
    prepared = [prepare(lr.rule, lr.analysis) for lr in loaded]
    runnable = [p for p in prepared if p.runnable]
    print(f"rules: {len(loaded)} Windows Sigma rules, {len(runnable)} runnable "
          f"(load+analyze+prepare {time.perf_counter() - t:.1f}s)")
    if args.jobs:
        gc.freeze()  # as the CLI does: the workers inherit the rules copy-on-write
        jobs_figures(runnable, inputs(args.limit_files)[0][1])
        return
    if args.backends:
        gc.freeze()
        backends_figures(runnable, inputs(args.limit_files)[0][1], args.keep, args.no_duckdb,
                         args.rounds)
        return

    for label, paths in inputs(args.limit_files):
        print(f"\n== {label}: {len(paths)} files")
        gc.collect()
        n_read, t_read1 = read_floor(paths)
        engine = Engine(runnable)
        n, found, t_eng = run_engine(engine, paths)
        gc.collect()
        _, t_read2 = read_floor(paths)
        # the machine is shared: reading is timed before and after, the faster run is the floor
        t_read = min(t_read1, t_read2)
        print(f"read floor          : {n_read:>8} events {t_read:7.1f}s "
              f"{n_read / t_read:>9.0f} ev/s  (runs: {t_read1:.1f}s, {t_read2:.1f}s)")
        print(f"engine (hunt)       : {n:>8} events {t_eng:7.1f}s {n / t_eng:>9.0f} ev/s  "
              f"{found} findings, {engine.candidates / max(n, 1):.1f} candidate rules/event"
              f"  -> {t_eng / t_read:.2f}x the read floor")
        match_only = t_eng - t_read
        sample = sample_events(paths, args.sample)
        # routing only (no pre-filter), compiled
        e2 = Engine(runnable, prefilter=False)
        t0 = time.perf_counter()
        for ev in sample:
            for _ in e2.match(ev):
                pass
        per_ev = (time.perf_counter() - t0) / len(sample)
        est = t_read + per_ev * n
        print(f"no pre-filter       : sample {len(sample)} events, {per_ev * 1e6:8.0f} us/event"
              f" match -> est. {n / est:9.0f} ev/s ({est / t_read:.1f}x read floor, "
              "extrapolated)")
        # naive: interpret every tree on every event (no routing, no pre-filter, no compile)
        k = max(10, len(sample) // 10)
        t0 = time.perf_counter()
        for ev in sample[:k]:
            for p in runnable:
                interpret(p.analysis.condition, ev.fields)
        per_naive = (time.perf_counter() - t0) / k
        est_n = t_read + per_naive * n
        print(f"naive interpreter   : sample {k} events, {per_naive * 1e3:8.1f} ms/event "
              f"-> est. {n / est_n:9.1f} ev/s ({est_n / t_read:.0f}x read floor, extrapolated)")
        print(f"matching alone      : engine {match_only / n * 1e6:.1f} us/event vs naive "
              f"{per_naive * 1e6:.0f} us/event ({per_naive / max(match_only / n, 1e-9):.0f}x)")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
