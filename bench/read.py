"""Read floor: how fast the event readers read and flatten real logs, per format.

Reads, in place, every OTRF archive (``../shared/corpus/otrf``, ~678,000 JSON-lines events in
.zip and .tar.gz) and every Sigma regression EVTX file, plus a Splunk XmlWinEventLog file made
from those EVTX records (evtx's own XML rendering, one record per line, repeated), and prints
events/s for each, with baselines measured in the same run:

* ``raw``: only decompressing and splitting into lines / iterating the EVTX parser's records
  (what no reader can beat; the regression EVTX files hold ~1 record each, so per-file costs
  dominate that line);
* ``stdlib``: ``json.loads`` per line without flattening (what a naive reader costs).

``ruleatlas hunt``'s benchmark compares against the ``read_events`` figures ("read floor").

Usage: ``.venv/bin/python bench/read.py [--repeat-xml N]``
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

import evtx

from ruleatlas.engine.readers import ReadError, read_events
from ruleatlas.engine.readers.evtx import evtx_parser

ROOT = Path(__file__).resolve().parent.parent
CORPUS = (ROOT.parent / "shared" / "corpus").resolve()
OTRF = CORPUS / "otrf" / "datasets" / "atomic" / "windows"
REGRESSION = CORPUS / "sigma" / "regression_data"


def _members(paths: Iterable[Path]) -> Iterable[Iterable[bytes]]:
    for p in paths:
        if p.suffix == ".zip":
            with zipfile.ZipFile(p) as zf:
                for i in zf.infolist():
                    if not i.filename.startswith("__MACOSX/") and not i.is_dir():
                        with zf.open(i) as fh:
                            yield io.BufferedReader(fh, 1 << 20)  # type: ignore[arg-type,type-var]
        else:
            with tarfile.open(p, "r|*") as tf:
                for m in tf:
                    f = tf.extractfile(m) if m.isfile() else None
                    if f is not None and not m.name.split("/")[-1].startswith("._"):
                        yield f


def raw_lines(paths: list[Path]) -> int:
    n = 0
    for fh in _members(paths):
        for line in fh:
            if line.strip():
                n += 1
    return n


def stdlib_json(paths: list[Path]) -> int:
    n = 0
    for fh in _members(paths):
        for line in fh:
            if line.strip():
                try:
                    json.loads(line)
                except ValueError:
                    continue
                n += 1
    return n


def ours(paths: list[Path]) -> int:
    errors: list[ReadError] = []
    n = sum(1 for _ in read_events(paths, errors))
    if errors:
        print(f"    ({len(errors)} read errors, first: {errors[0]})", file=sys.stderr)
    return n


def raw_evtx(paths: list[Path]) -> int:
    """The Rust parser alone, with the options the reader uses (no JSON parse, no flatten)."""
    return sum(1 for p in paths for _ in evtx_parser(str(p), 1).records_json())


def timed(fn: Callable[[list[Path]], int], paths: list[Path]) -> tuple[int, float]:
    t = time.perf_counter()
    n = fn(paths)
    return n, time.perf_counter() - t


def row(label: str, n: int, s: float, base: float | None = None) -> float:
    rate = n / s if s else 0.0
    ratio = f"  x{base / rate:.2f} slower than floor" if base and rate else ""
    print(f"  {label:<34} {n:>9,} events {s:>7.2f} s {rate:>11,.0f} ev/s{ratio}")
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat-xml", type=int, default=200, help="copies of the XML records")
    args = ap.parse_args()

    archives = sorted(p for p in OTRF.glob("*/host/*") if p.suffix in (".zip", ".gz"))
    evtx_files = sorted(REGRESSION.rglob("*.evtx"))
    print(f"OTRF archives: {len(archives)} (.zip {sum(p.suffix == '.zip' for p in archives)}, "
          f".tar.gz {sum(p.suffix == '.gz' for p in archives)}); EVTX files: {len(evtx_files)}")

    print("JSON lines inside archives (OTRF)")
    n, s = timed(raw_lines, archives)
    floor = row("raw: decompress + split lines", n, s)
    n, s = timed(stdlib_json, archives)
    row("baseline: stdlib json.loads", n, s, floor)
    n, s = timed(ours, archives)
    json_rate = row("read_events (parse + flatten)", n, s, floor)

    print("EVTX (Sigma regression data)")
    reps = 20  # the files are small: repeat to get a measurable time
    n, s = timed(lambda ps: sum(raw_evtx(ps) for _ in range(reps)), evtx_files)
    floor = row(f"raw: evtx records_json x{reps}", n, s)
    n, s = timed(lambda ps: sum(ours(ps) for _ in range(reps)), evtx_files)
    evtx_rate = row(f"read_events x{reps}", n, s, floor)

    print("Splunk XmlWinEventLog text (evtx XML of the same records, one per line)")
    records = [
        " ".join(r["data"].split("\n")[1:]).strip()  # drop the <?xml ...?> line
        for p in evtx_files
        for r in evtx.PyEvtxParser(str(p)).records()
    ]
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "xmlwineventlog.log"
        with log.open("w", encoding="utf-8") as fh:
            for _ in range(args.repeat_xml):
                fh.write("\n".join(records) + "\n")
        n, s = timed(ours, [log])
        xml_rate = row(f"read_events ({len(records)} records x{args.repeat_xml})", n, s)

    print("Summary (events/s, read floor for bench/hunt.py):")
    print(f"  json-lines archives {json_rate:,.0f}   evtx {evtx_rate:,.0f}   xml {xml_rate:,.0f}")


if __name__ == "__main__":
    main()
