"""Time to lower every Sigma rule of the corpus into the predicate model.

Baseline, measured in the same run on the same rules: what pySigma alone does to read them
(libyaml parse of each document + ``SigmaRule.from_dict`` + the post-processed condition trees),
and ``from_dict`` alone on dicts parsed beforehand. Usage::

    .venv/bin/python bench/sigma_lowering.py [SIGMA_ROOT]
"""

from __future__ import annotations

import gc
import sys
import time
from pathlib import Path

import yaml
from sigma.rule import SigmaRule

from ruleatlas.languages import AnalysisContext
from ruleatlas.languages.sigma import analyze_sigma
from ruleatlas.sources import SOURCES

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT.parent / "shared" / "corpus" / "sigma"


def best_of(n: int, fn) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(n):
        gc.collect()
        t = time.perf_counter()
        keep = fn()
        times.append(time.perf_counter() - t)
        del keep
    return min(times)


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    src = SOURCES["sigma"]
    rules = [r for p in src.rule_files(root) for r in src.load_file(root, p).rules
             if r.type == "detection" and not r.extra.get("query_generated")]
    ctx = AnalysisContext()

    def ours():  # type: ignore[no-untyped-def]
        return [analyze_sigma(r, ctx) for r in rules]

    def pysigma():  # type: ignore[no-untyped-def]
        out = []
        for r in rules:
            rule = SigmaRule.from_dict(yaml.load(r.body, Loader=yaml.CSafeLoader),
                                       collect_errors=True)
            trees = []
            for c in rule.detection.parsed_condition:
                try:
                    trees.append(c.parse())
                except Exception as exc:  # Sigma 1 pipes etc.: count, go on
                    trees.append(exc)
            out.append((rule, trees))
        return out

    dicts = [yaml.load(r.body, Loader=yaml.CSafeLoader) for r in rules]

    def from_dict_only():  # type: ignore[no-untyped-def]
        return [SigmaRule.from_dict(d, collect_errors=True) for d in dicts]

    ours()  # warm caches shared by both (imports, pyparsing packrat)
    base = best_of(3, pysigma)
    floor = best_of(3, from_dict_only)
    mine = best_of(3, ours)
    n = len(rules)
    print(f"rules: {n}")
    print(f"baseline pySigma (yaml + from_dict + condition): {base:.3f} s "
          f"({base / n * 1e3:.3f} ms/rule)")
    print(f"floor pySigma from_dict only (dicts pre-parsed): {floor:.3f} s "
          f"({floor / n * 1e3:.3f} ms/rule)")
    print(f"ruleatlas analyze_sigma (yaml with marks + lowering): {mine:.3f} s "
          f"({mine / n * 1e3:.3f} ms/rule)")
    print(f"ratio ours/baseline: {mine / base:.2f}; ours/from_dict floor: {mine / floor:.2f}")


if __name__ == "__main__":
    main()
