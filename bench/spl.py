"""Benchmark the SPL parser on every corpus search (detections and their drilldown searches).

Prints searches/s, median and worst time for: a baseline measured in the same run (tokenizing
only, the floor any parser pays), parsing, and full analysis (macro expansion + parse + lowering
into the model), with ratios to the baseline.

    .venv/bin/python bench/spl.py [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SPLUNK = ROOT.parent / "shared" / "corpus" / "security_content"
sys.path.insert(0, str(ROOT / "src"))

from ruleatlas.languages.spl import analyze_query, parse  # noqa: E402
from ruleatlas.languages.spl.tokens import tokenize  # noqa: E402
from ruleatlas.sources.splunk import load_macros  # noqa: E402


def searches() -> list[str]:
    out = []
    for path in sorted((SPLUNK / "detections").rglob("*.yml")):
        d = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
        out.append(d["search"])
        out.extend(dd["search"] for dd in d.get("drilldown_searches") or [])
    return out


def measure(fn: Callable[[str], object], qs: list[str], repeat: int) -> tuple[float, list[float]]:
    best_total = float("inf")
    best_each: list[float] = []
    for _ in range(repeat):
        each = []
        t0 = time.perf_counter()
        for q in qs:
            t = time.perf_counter()
            fn(q)
            each.append(time.perf_counter() - t)
        total = time.perf_counter() - t0
        if total < best_total:
            best_total, best_each = total, each
    return best_total, best_each


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    qs = searches()
    macros = load_macros(SPLUNK)
    rows = [
        ("tokenize only (baseline)", lambda q: tokenize(q)),
        ("parse", parse),
        ("analyze (expand+parse+lower)", lambda q: analyze_query(q, macros)),
    ]
    print(f"{len(qs)} searches (1,711 detections + their drilldown searches)")
    base = None
    for name, fn in rows:
        total, each = measure(fn, qs, args.repeat)
        base = base or total
        print(f"{name:30s} {len(qs) / total:9.0f} searches/s  total {total:6.3f} s  "
              f"median {statistics.median(each) * 1e3:6.3f} ms  worst {max(each) * 1e3:7.2f} ms"
              f"  x{total / base:4.1f} of baseline")


if __name__ == "__main__":
    main()
