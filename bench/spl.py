"""Benchmark the SPL parser on every corpus search (detections and their drilldown searches).

Prints searches/s, median and worst time for: a baseline measured in the same run (tokenizing
only, the floor any parser pays), parsing, and full analysis (macro expansion + parse + lowering
into the model), with ratios to the baseline.

    .venv/bin/python bench/spl.py [--repeat N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SPLUNK = ROOT.parent / "shared" / "corpus" / "security_content"
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from parsebench import report  # noqa: E402
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
    report(rows, qs, args.repeat, 'searches')


if __name__ == "__main__":
    main()
