"""Benchmark the KQL parser on every corpus KQL query (Elastic rules and building blocks).

Prints queries/s, median and worst time for: a baseline measured in the same run (tokenizing
only, the floor any parser pays), parsing, and full analysis (parse + lowering into the model),
with ratios to the baseline.

    .venv/bin/python bench/kql.py [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ELASTIC = ROOT.parent / "shared" / "corpus" / "elastic"
sys.path.insert(0, str(ROOT / "src"))

from ruleatlas.languages.kql import analyze_kql_query, parse  # noqa: E402
from ruleatlas.languages.kql.tokens import tokenize  # noqa: E402


def queries() -> list[str]:
    out = []
    for folder in ("rules", "rules_building_block"):
        for path in sorted((ELASTIC / folder).rglob("*.toml")):
            text = path.read_text(encoding="utf-8")
            if "kuery" not in text:
                continue
            rule = tomllib.loads(text).get("rule", {})
            if rule.get("language") == "kuery":
                out.append(rule["query"])
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
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    qs = queries()
    rows = [
        ("tokenize only (baseline)", tokenize),
        ("parse", parse),
        ("analyze (parse+lower)", analyze_kql_query),
    ]
    print(f"{len(qs)} KQL queries ({sum(map(len, qs)):,} characters)")
    base = None
    for name, fn in rows:
        total, each = measure(fn, qs, args.repeat)
        base = base or total
        print(f"{name:26s} {len(qs) / total:9.0f} queries/s  total {total:6.3f} s  "
              f"median {statistics.median(each) * 1e3:6.3f} ms  worst {max(each) * 1e3:7.2f} ms"
              f"  x{total / base:4.1f} of baseline")


if __name__ == "__main__":
    main()
