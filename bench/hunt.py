"""Hunt benchmark: all Windows Sigma rules over the OTRF archives and the regression EVTX files.

Prints, from ONE run, for the same events:

* ``read floor``: only reading and flattening (``engine.readers.read_events``);
* ``engine``: reading + routing + literal pre-filter + compiled matchers (``ruleatlas hunt``);
* ``engine, no pre-filter``: routing + compiled matchers, every routed rule on every event
  (on a sample, extrapolated);
* ``naive``: every rule's tree interpreted on every event, no routing, no pre-filter, no compile
  (``compile.interpret``; on a sample, extrapolated and said so);

and the ratios to the read floor. Goal (issue 6): engine within 5x of the read floor.

Usage: ``.venv/bin/python bench/hunt.py [--sample N] [--limit-files N]``
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

from ruleatlas.engine.catalog import from_repos
from ruleatlas.engine.compile import interpret
from ruleatlas.engine.events import ReadError
from ruleatlas.engine.readers import read_events
from ruleatlas.engine.runner import Engine, prepare

ROOT = Path(__file__).resolve().parent.parent
CORPUS = (ROOT.parent / "shared" / "corpus").resolve()
OTRF = CORPUS / "otrf" / "datasets" / "atomic" / "windows"
SIGMA = CORPUS / "sigma"
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sample", type=int, default=300, help="events for the slow baselines")
    ap.add_argument("--limit-files", type=int, default=None)
    args = ap.parse_args()

    t = time.perf_counter()
    loaded = [lr for lr in from_repos([SIGMA], languages=["sigma"])
              if lr.rule.logsource.get("product") == "windows"]
    prepared = [prepare(lr.rule, lr.analysis) for lr in loaded]
    runnable = [p for p in prepared if p.runnable]
    print(f"rules: {len(loaded)} Windows Sigma rules, {len(runnable)} runnable "
          f"(load+analyze+prepare {time.perf_counter() - t:.1f}s)")

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
