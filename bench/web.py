"""Web catalog benchmark: requests/s and p50/p99 latency at 1 and 32 concurrent clients.

    .venv/bin/python bench/web.py --db ruleatlas.db [--seconds 4] [--max-requests 2000]

Starts ``ruleatlas serve`` in a subprocess on a free loopback port, then drives it from a second
process (this one) with a minimal keep-alive HTTP/1.1 client on asyncio streams, so the client
costs little next to the server. Scenarios: the baseline routes ``/api/ping`` (trivial JSON) and
``/static/style.css`` (a static file), a rule page (rotating over 200 rules so caches do not flatter
it; "first view" requests 200 other rules once each, so nothing is memoised), a search
(rotating words, facets included) and the ATT&CK matrix (memoised after its first render).
Each runs for a bounded time and count. ``server p50`` is read from the
``Server-Timing: app;dur=`` header the app sets (time from request to response start, thread
hop included); the goal is a rule page under 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

WORDS = ["wmiexec", "powershell", "mimikatz", "registry run", "lsass", "certutil", "schtasks",
         "rundll32", "base64", "cobalt"]
TIMING = re.compile(rb"server-timing: app;dur=([0-9.]+)", re.I)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
               path: str) -> tuple[int, float | None]:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    m = re.search(rb"content-length: (\d+)", head, re.I)
    if m:
        await reader.readexactly(int(m.group(1)))
    else:  # chunked
        while True:
            size = int((await reader.readline()).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    t = TIMING.search(head)
    return status, float(t.group(1)) if t else None


async def run(port: int, paths: list[str], conc: int, seconds: float,
              max_requests: int, warm: bool = True) -> dict[str, float]:
    lat: list[float] = []
    server: list[float] = []
    errors = 0
    counter = 0
    stop_at = time.perf_counter() + seconds

    async def worker(k: int) -> None:
        nonlocal counter, errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while counter < max_requests and time.perf_counter() < stop_at:
                path = paths[counter % len(paths)]
                counter += 1
                t0 = time.perf_counter()
                status, st = await _one(reader, writer, path)
                lat.append((time.perf_counter() - t0) * 1000)
                if st is not None:
                    server.append(st)
                if status != 200:
                    errors += 1
        finally:
            writer.close()

    # warm-up: one pass over a few paths
    if warm:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        for p in paths[:5]:
            await _one(r, w, p)
        w.close()
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(conc)))
    wall = time.perf_counter() - t0
    lat.sort()
    return {
        "requests": len(lat),
        "rps": len(lat) / wall,
        "p50": statistics.median(lat),
        "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "server_p50": statistics.median(server) if server else float("nan"),
        "errors": errors,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", default="ruleatlas.db")
    ap.add_argument("--seconds", type=float, default=4.0, help="time bound per scenario")
    ap.add_argument("--max-requests", type=int, default=3000, help="count bound per scenario")
    ap.add_argument("--json", action="store_true", help="print the results as JSON too")
    a = ap.parse_args()
    if not Path(a.db).is_file():
        sys.exit(f"no catalog at {a.db}: build one first (ruleatlas build --db {a.db} ...)")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from ruleatlas.cli import main; main()", "serve", "--db", a.db,
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(base + "/api/ping", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        with urllib.request.urlopen(base + "/api/rules?per_page=200&sort=title") as resp:
            ids = [r["id"] for r in json.load(resp)["rows"]]
        cold: dict[int, list[str]] = {}
        for conc, page in ((1, 2), (32, 3)):  # rules never requested before: nothing memoised
            url = f"{base}/api/rules?per_page=200&sort=title&page={page}"
            with urllib.request.urlopen(url) as resp:
                cold[conc] = [f"/rules/{r['id']}" for r in json.load(resp)["rows"]]
        scenarios = {
            "baseline /api/ping": ["/api/ping"],
            "baseline static css": ["/static/style.css"],
            "rule page": [f"/rules/{i}" for i in ids],
            "rule page JSON": [f"/api/rules/{i}" for i in ids],
            "search (q + facets)": [f"/rules?q={w.replace(' ', '+')}" for w in WORDS],
            "ATT&CK matrix": ["/attack"],
        }
        results = []
        print(f"{'scenario':24} {'clients':>7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'server p50':>10} {'vs ping':>8} {'n':>6}")
        base_p50: dict[int, float] = {}
        for conc in (1, 32):
            runs = list(scenarios.items())
            runs.insert(3, ("rule page, first view", cold[conc]))
            for name, paths in runs:
                limit = len(paths) if name == "rule page, first view" else a.max_requests
                res = asyncio.run(run(port, paths, conc, a.seconds * 3, limit, warm=False)
                                  if name == "rule page, first view"
                                  else run(port, paths, conc, a.seconds, limit))
                if name == "baseline /api/ping":
                    base_p50[conc] = res["p50"]
                ratio = res["p50"] / base_p50[conc]
                results.append({"scenario": name, "clients": conc, **res, "ratio": ratio})
                print(f"{name:24} {conc:>7} {res['rps']:>9.0f} {res['p50']:>8.2f} "
                      f"{res['p99']:>8.2f} {res['server_p50']:>10.2f} {ratio:>7.1f}x "
                      f"{res['requests']:>6}" + (f"  errors={res['errors']}"
                                                 if res["errors"] else ""))
        rule1 = next(r for r in results if r["scenario"] == "rule page" and r["clients"] == 1)
        verdict = "met" if rule1["server_p50"] < 5 else "NOT met"
        print(f"\ngoal: rule page server p50 < 5 ms at 1 client: {rule1['server_p50']:.2f} ms "
              f"({verdict})")
        if a.json:
            print(json.dumps(results, indent=1))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
