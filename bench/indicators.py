"""Benchmark: indicators of the whole corpus (extract) and corpus counts (recount).

Prints, for the shared corpus (Sigma rules* + Splunk detections):

* baseline: walking every predicate of every analysis (what any consumer of the trees pays);
* extract: ``indicators.extract`` over all analyzed rules, and its ratio to the baseline;
* write + recount: inserting the rows into a real SQLite catalog file (schema.sql) and
  ``store.indicators.recount``; the recount alone, and the ratio of recount to a plain
  ``SELECT COUNT(*)`` scan of the same table (its baseline).

Loading and analysis are timed too but are not this area's cost. Usage:
``.venv/bin/python bench/indicators.py [CORPUS_DIR]``.
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from ruleatlas.indicators import explain, extract
from ruleatlas.languages import AnalysisContext, analyze
from ruleatlas.model import Analysis, Rule, predicates
from ruleatlas.sources import SOURCES
from ruleatlas.store import indicators as store

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "corpus"
REPOS = {"sigma": CORPUS / "sigma", "splunk": CORPUS / "security_content"}


def load() -> list[tuple[Rule, Analysis]]:
    out: list[tuple[Rule, Analysis]] = []
    for name, root in REPOS.items():
        src = SOURCES[name]
        side = src.side_tables(root)
        ctx = AnalysisContext(macros=side.macros, data_sources=side.data_sources)
        for f in src.rule_files(root):
            for rule in src.load_file(root, f).rules:
                out.append((rule, analyze(rule, ctx)))
    return out


def best_of(n: int, fn):  # type: ignore[no-untyped-def]
    """Best wall time of ``n`` runs (the least disturbed by the other jobs on the machine)."""
    best = float("inf")
    result = None
    for _ in range(n):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def main() -> None:
    t = time.perf_counter()
    pairs = load()
    t_load = time.perf_counter() - t
    by_source = Counter(r.source for r, _ in pairs)
    print(f"rules loaded and analyzed: {len(pairs)} {dict(by_source)} in {t_load:.2f}s")

    def walk_all() -> int:
        n = 0
        for _, a in pairs:
            for _ in predicates(a.condition):
                n += 1
            for _ in a.all_predicates():
                n += 1
        return n

    def extract_all() -> list[tuple[Rule, tuple]]:  # type: ignore[type-arg]
        return [(r, extract(r, a)) for r, a in pairs]

    t_base, npred = best_of(3, walk_all)
    t_ext, rows = best_of(3, extract_all)
    assert rows is not None
    nrows = sum(len(i) for _, i in rows)
    nvals = sum(len(x.values) for _, i in rows for x in i)
    print(f"baseline: walk {npred} predicates (condition + stages): {t_base * 1000:.1f} ms")
    print(f"extract: {nrows} indicator rows, {nvals} values: {t_ext * 1000:.1f} ms "
          f"(x{t_ext / t_base:.1f} the baseline, {t_ext / len(pairs) * 1e6:.0f} µs/rule)")

    skipped = Counter(s.reason.split(":")[0].split(" ")[0] for r, a in pairs
                      for s in explain(r, a)[1])
    print(f"not indicators (with reasons): {dict(skipped)}")

    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(Path(tmp) / "bench.db")
        conn.executescript((Path(store.__file__).with_name("schema.sql")).read_text())
        t = time.perf_counter()
        for rule, inds in rows:
            store.write_indicators(conn, rule.id, rule.source, inds)
        conn.commit()
        t_write = time.perf_counter() - t
        t_scan, _ = best_of(3, lambda: conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT rule_id) FROM indicators").fetchone())
        t_rc, ncounts = best_of(3, lambda: store.recount(conn))
        conn.commit()
        shared = conn.execute(
            "SELECT COUNT(*) FROM indicator_counts WHERE total > 1").fetchone()[0]
        cross = conn.execute(
            "SELECT COUNT(*) FROM indicator_counts "
            "WHERE json_extract(by_source, '$.sigma') > 0 "
            "AND json_extract(by_source, '$.splunk') > 0"
        ).fetchone()[0]
        print(f"write {nvals} rows to SQLite: {t_write * 1000:.1f} ms")
        print(f"recount: {ncounts} distinct indicators ({shared} shared by 2+ rules, {cross} "
              f"across sigma and splunk): {t_rc * 1000:.1f} ms "
              f"(baseline scan {t_scan * 1000:.1f} ms, x{t_rc / t_scan:.1f})")
        conn.close()
    print(f"total indicators cost (extract + write + recount): "
          f"{(t_ext + t_write + t_rc):.2f}s for {len(pairs)} rules")


if __name__ == "__main__":
    main()
