"""Catalog build benchmark: full build of both corpora vs. the YAML floor, and a no-change rebuild.

Prints, measured in the same run:

* floor: only loading every rule file of the same repositories with PyYAML's C loader
  (``yaml.load_all(..., Loader=CSafeLoader)``), nothing else;
* full build of Sigma + security_content into a fresh catalog (parse, validate, analyze,
  indicators, events, write, FTS, counts), and its ratio to the floor (goal: <= 2x);
* rebuild with nothing changed (goal: < 0.3 s);
* rebuild after touching one file (mtime only) and after editing one file.

Usage: ``.venv/bin/python bench/build.py [--repeat N] [--workers N] [--breakdown]``
(``--breakdown``: also the serial cost of each pipeline stage, to show where the time goes).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from ruleatlas.build import build  # noqa: E402
from ruleatlas.sources import SOURCES  # noqa: E402

CORPUS = (ROOT.parent / "shared" / "corpus").resolve()
REPOS = [CORPUS / "sigma", CORPUS / "security_content"]


def floor(files: list[Path]) -> float:
    t = time.perf_counter()
    for f in files:
        try:
            for _ in yaml.load_all(f.read_bytes(), Loader=yaml.CSafeLoader):
                pass
        except yaml.YAMLError:
            pass
    return time.perf_counter() - t


def breakdown() -> None:
    """Serial CPU cost of each pipeline stage (one process), to show where a build's time goes."""
    from ruleatlas import coverage, indicators
    from ruleatlas.languages import AnalysisContext, analyze

    print("serial stage costs (one process):")
    for root, name in zip(REPOS, ("sigma", "splunk"), strict=True):
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
        print(f"  {name:6} {len(files)} files: list+side tables {t_side:.2f}s, read "
              f"{t_load:.2f}s, analyze {t_an:.2f}s, indicators {t_ind:.2f}s, events {t_ev:.2f}s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--breakdown", action="store_true",
                    help="also time each pipeline stage serially")
    args = ap.parse_args()
    files = [f for root, name in zip(REPOS, ("sigma", "splunk"), strict=True)
             for f in SOURCES[name].rule_files(root)]
    print(f"corpus: {len(files)} rule files; cpus: {os.cpu_count()}")
    floors, fulls, noops = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            floors.append(floor(files))
            db = Path(tmp) / f"bench{i}.db"
            t = time.perf_counter()
            s = build(REPOS, db, workers=args.workers)
            fulls.append(time.perf_counter() - t)
            t = time.perf_counter()
            build(REPOS, db, workers=args.workers)
            noops.append(time.perf_counter() - t)
        print(f"  built: {s.by_source()}")
        print("  last full build phases: "
              + ", ".join(f"{k} {v:.2f}s" for k, v in s.timings.items()))
    if args.breakdown:
        breakdown()
    f, b, n = statistics.median(floors), statistics.median(fulls), statistics.median(noops)
    print(f"floor (CSafeLoader only)     : {f:6.2f} s  (runs: "
          + ", ".join(f"{x:.2f}" for x in floors) + ")")
    print(f"full build, fresh catalog    : {b:6.2f} s  = {b / f:4.2f}x floor  (goal <= 2x; runs: "
          + ", ".join(f"{x:.2f}" for x in fulls) + ")")
    print(f"rebuild, nothing changed     : {n:6.3f} s  = {n / f:4.3f}x floor  (goal < 0.3 s; "
          "runs: " + ", ".join(f"{x:.3f}" for x in noops) + ")")


if __name__ == "__main__":
    main()
