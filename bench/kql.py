"""Benchmark the KQL parser on every corpus KQL query (Elastic rules and building blocks).

Prints queries/s, median and worst time for: a baseline measured in the same run (tokenizing
only, the floor any parser pays), parsing, and full analysis (parse + lowering into the model),
with ratios to the baseline.

    .venv/bin/python bench/kql.py [--repeat N]
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ELASTIC = ROOT.parent / "shared" / "corpus" / "elastic"
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from parsebench import report  # noqa: E402
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
    report(rows, qs, args.repeat)


if __name__ == "__main__":
    main()
