"""Benchmark the ES|QL parser on every ES|QL query of the Elastic corpus (rules, building
blocks and the ES|QL hunting queries).

Prints queries/s, median and worst time for: a baseline measured in the same run (tokenizing
only, the floor any parser pays), parsing, parse + generate, and full analysis (parse + lowering
into the model), with ratios to the baseline.

    .venv/bin/python bench/esql.py [--repeat N]
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
from ruleatlas.languages.esql import (  # noqa: E402
    analyze_esql_query,
    generate,
    parse,
    query_language,
    strip_fence_tag,
)
from ruleatlas.languages.esql.tokens import tokenize  # noqa: E402
from ruleatlas.languages.parsing import ParseError  # noqa: E402


def queries() -> list[str]:
    out: list[str] = []
    for path in sorted(ELASTIC.rglob("*.toml")):
        d = tomllib.loads(path.read_text(encoding="utf-8"))
        rule = d.get("rule") or {}
        if rule.get("language") == "esql":
            out.append(rule["query"])
        hunt = d.get("hunt") or {}
        if "ES|QL" in hunt.get("language", []):
            out.extend(strip_fence_tag(q)[0] for q in hunt.get("query", [])
                       if query_language(q) == "esql")
    return out


def parsable(qs: list[str]) -> list[str]:
    ok = []
    for q in qs:
        try:
            parse(q)
        except ParseError:
            continue
        ok.append(q)
    return ok



def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    every = queries()
    qs = parsable(every)
    rows = [
        ("tokenize only (baseline)", tokenize),
        ("parse", parse),
        ("parse + generate", lambda q: generate(parse(q))),
        ("analyze (parse+lower)", analyze_esql_query),
    ]
    chars = sum(len(q) for q in qs)
    print(f"{len(qs)} ES|QL queries ({len(every) - len(qs)} invalid hunting queries left out), "
          f"{chars:,} characters")
    report(rows, qs, args.repeat)


if __name__ == "__main__":
    main()
