"""What the parser benchmarks share (bench/spl.py, eql.py, kql.py, esql.py): timing each query
through one step, best of N, and the report line against the first step (tokenizing alone)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

Step = tuple[str, Callable[[str], object]]


def measure(fn: Callable[[str], object], qs: Sequence[str],
            repeat: int) -> tuple[float, list[float]]:
    """(total seconds, seconds per query) of the fastest of ``repeat`` passes over ``qs``."""
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


def report(rows: Sequence[Step], qs: Sequence[str], repeat: int, unit: str = "queries") -> None:
    """One line per step: rate, total, median, worst, and the ratio to the first step."""
    base = None
    width = max(len(name) for name, _ in rows) + 2
    for name, fn in rows:
        total, each = measure(fn, qs, repeat)
        base = base or total
        print(f"{name:{width}s} {len(qs) / total:9.0f} {unit}/s  total {total:6.3f} s  "
              f"median {statistics.median(each) * 1e3:6.3f} ms  worst {max(each) * 1e3:7.2f} ms"
              f"  x{total / base:4.1f} of baseline")
