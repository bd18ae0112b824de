"""Benchmark the EQL parser on every EQL query of Elastic's corpus (rules, building blocks and
EQL hunting queries).

Prints queries/s, median and worst time for: a baseline measured in the same run (tokenizing
only, the floor any parser pays), parsing, generating the text back from the tree, and full
analysis (parse + lowering into the model), with ratios to the baseline.

    .venv/bin/python bench/eql.py [--repeat N]
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ELASTIC = ROOT.parent / "shared" / "corpus" / "elastic"
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from parsebench import report  # noqa: E402
from ruleatlas.languages.eql import analyze_eql_query, generate, parse  # noqa: E402
from ruleatlas.languages.eql.tokens import tokenize  # noqa: E402


def queries() -> list[str]:
    out: list[str] = []
    for sub in ("rules", "rules_building_block"):
        for path in sorted((ELASTIC / sub).rglob("*.toml")):
            rule = tomllib.loads(path.read_text(encoding="utf-8")).get("rule", {})
            if rule.get("language") == "eql":
                out.append(rule["query"])
    for path in sorted((ELASTIC / "hunting").rglob("*.toml")):
        hunt = tomllib.loads(path.read_text(encoding="utf-8")).get("hunt", {})
        if "EQL" in hunt.get("language", []):
            out.extend(hunt["query"])
    return out



def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    qs = queries()
    trees = {q: parse(q) for q in qs}
    rows: list[tuple[str, Callable[[str], object]]] = [
        ("tokenize only (baseline)", tokenize),
        ("parse", parse),
        ("generate (tree -> text)", lambda q: generate(trees[q])),
        ("analyze (parse+lower)", analyze_eql_query),
    ]
    print(f"{len(qs)} EQL queries ({sum(len(q) for q in qs):,} characters)")
    report(rows, qs, args.repeat)


if __name__ == "__main__":
    main()
