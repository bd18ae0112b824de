"""Catalog build benchmark: the three-vendor build against pySigma loading Sigma alone.

Prints, measured in the same run, on the same corpus (Sigma, Splunk security_content, Elastic
detection-rules):

* reference: pySigma alone loading the Sigma rules, ``SigmaCollection.from_yaml(text,
  collect_errors=True)`` over every Sigma rule file (4,039), serially, as a pySigma user loads
  them; the goal is a whole three-vendor build faster than that;
* floor: only parsing every rule file of the three repositories (PyYAML's C loader for the YAML,
  the standard library's ``tomllib`` for the TOML), nothing else;
* full build of the three repositories into a fresh catalog (parse, validate, analyze,
  indicators, events, write, FTS, counts): wall time and CPU time (this process and its
  workers), and its ratio to the reference and to the floor;
* the same full build per source, alone (Sigma, Splunk, Elastic), into fresh catalogs;
* rebuild with nothing changed.

Usage: ``.venv/bin/python bench/build.py [--repeat N] [--workers N] [--breakdown]``
(``--breakdown``: also the serial cost of each pipeline stage, to show where the time goes).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from ruleatlas.build import build  # noqa: E402
from ruleatlas.sources import SOURCES  # noqa: E402

T = TypeVar("T")
CORPUS = (ROOT.parent / "shared" / "corpus").resolve()
REPOS = {"sigma": CORPUS / "sigma", "splunk": CORPUS / "security_content",
         "elastic": CORPUS / "elastic"}


def _files(name: str) -> list[Path]:
    return list(SOURCES[name].rule_files(REPOS[name]))


def pysigma_load(files: list[Path]) -> tuple[float, int]:
    """pySigma alone: every Sigma rule file through ``SigmaCollection.from_yaml``."""
    from sigma.collection import SigmaCollection

    t = time.perf_counter()
    n = 0
    for f in files:
        coll = SigmaCollection.from_yaml(f.read_text("utf-8", "replace"), collect_errors=True)
        n += len(coll.rules)
    return time.perf_counter() - t, n


def floor(files: list[Path]) -> float:
    """Parse only: YAML with the C loader, TOML with tomllib (errors counted as parsed)."""
    t = time.perf_counter()
    for f in files:
        data = f.read_bytes()
        if f.suffix == ".toml":
            try:
                tomllib.loads(data.decode("utf-8", "replace"))
            except tomllib.TOMLDecodeError:
                pass
            continue
        try:
            for _ in yaml.load_all(data, Loader=yaml.CSafeLoader):
                pass
        except yaml.YAMLError:
            pass
    return time.perf_counter() - t


def _cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn: Callable[[], T]) -> tuple[float, float, T]:
    """(wall, CPU) seconds of ``fn()`` and its result; CPU counts the worker processes too
    (children are counted once they have been waited for: the build's pool is closed)."""
    c, t = _cpu(), time.perf_counter()
    out = fn()
    return time.perf_counter() - t, _cpu() - c, out


def breakdown() -> None:
    """Serial CPU cost of each pipeline stage (one process), to show where a build's time goes."""
    from ruleatlas import coverage, indicators
    from ruleatlas.languages import AnalysisContext, analyze

    print("serial stage costs (one process):")
    for name, root in REPOS.items():
        src = SOURCES[name]
        t = time.perf_counter()
        side = src.side_tables(root)
        files = list(src.rule_files(root))
        t_side = time.perf_counter() - t
        t = time.perf_counter()
        rules = [r for f in files for r in src.load_file(root, f).rules]
        t_load = time.perf_counter() - t
        ctx = AnalysisContext(macros=side.macros, data_sources=side.data_sources)
        coverage.configure(side.data_sources)
        t = time.perf_counter()
        an = [analyze(r, ctx) for r in rules]
        t_an = time.perf_counter() - t
        t = time.perf_counter()
        for r, a in zip(rules, an, strict=True):
            indicators.extract(r, a)
        t_ind = time.perf_counter() - t
        t = time.perf_counter()
        for r, a in zip(rules, an, strict=True):
            coverage.events_for(r, a)
        t_ev = time.perf_counter() - t
        print(f"  {name:7} {len(files)} files: list+side tables {t_side:.2f}s, read "
              f"{t_load:.2f}s, analyze {t_an:.2f}s, indicators {t_ind:.2f}s, events {t_ev:.2f}s")


def _runs(xs: list[float], fmt: str = ".2f") -> str:
    return ", ".join(f"{x:{fmt}}" for x in xs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--breakdown", action="store_true",
                    help="also time each pipeline stage serially")
    args = ap.parse_args()
    by_source = {name: _files(name) for name in REPOS}
    files = [f for fs in by_source.values() for f in fs]
    print(f"corpus: {len(files)} rule files ("
          + ", ".join(f"{k} {len(v)}" for k, v in by_source.items())
          + f"); cpus: {os.cpu_count()}; load {os.getloadavg()[0]:.1f}")
    repos = list(REPOS.values())
    refs: list[tuple[float, float]] = []
    floors: list[float] = []
    fulls: list[tuple[float, float]] = []
    summary = None
    noops: list[float] = []
    alone: dict[str, list[float]] = {k: [] for k in REPOS}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            wall, cpu, (_, nrules) = timed(lambda: pysigma_load(by_source["sigma"]))
            refs.append((wall, cpu))
            floors.append(floor(files))
            db = Path(tmp) / f"bench{i}.db"
            wall, cpu, summary = timed(lambda db=db: build(repos, db, workers=args.workers))
            fulls.append((wall, cpu))
            noops.append(timed(lambda db=db: build(repos, db, workers=args.workers))[0])
            for name, root in REPOS.items():
                one = Path(tmp) / f"{name}{i}.db"
                alone[name].append(timed(lambda r=root, d=one: build([r], d,
                                                                      workers=args.workers))[0])
        assert summary is not None
        print(f"  pySigma loaded {nrules} Sigma rules")
        print(f"  built: {summary.by_source()}")
        print("  last full build phases: "
              + ", ".join(f"{k} {v:.2f}s" for k, v in summary.timings.items()))
    if args.breakdown:
        breakdown()
    r, f = statistics.median(w for w, _ in refs), statistics.median(floors)
    rcpu = statistics.median(c for _, c in refs)
    b = statistics.median(w for w, _ in fulls)
    cpu = statistics.median(c for _, c in fulls)
    n = statistics.median(noops)
    print(f"reference: pySigma from_yaml, Sigma only : {r:6.2f} s  (CPU {rcpu:.2f} s; runs: "
          f"{_runs([w for w, _ in refs])})")
    print(f"floor: YAML C loader + tomllib, 3 repos  : {f:6.2f} s  (runs: {_runs(floors)})")
    print(f"full build, 3 repos, fresh catalog       : {b:6.2f} s  = {b / r:4.2f}x reference, "
          f"{b / f:4.2f}x floor  (goal < 1x reference; runs: {_runs([w for w, _ in fulls])})")
    print(f"  CPU time of that build (all processes) : {cpu:6.2f} s  = {cpu / rcpu:4.2f}x the "
          "reference's CPU time")
    for name, xs in alone.items():
        m = statistics.median(xs)
        print(f"full build, {name:7} alone              : {m:6.2f} s  (runs: {_runs(xs)})")
    print(f"rebuild, nothing changed                 : {n:6.3f} s  (goal < 0.3 s; runs: "
          f"{_runs(noops, '.3f')})")


if __name__ == "__main__":
    main()
