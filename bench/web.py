"""Web catalog under load: 32 keep-alive clients on the rule page and the search page, without
and with a full rebuild of the served catalog running in a loop, against the /api/ping baseline.

    python bench/web.py --db ruleatlas.db [--clients 32] [--seconds 5] [--builds 2]
                        [--workers 0] [--server auto]

The catalog is copied to a temporary folder (SQLite backup), served from there by
``ruleatlas serve`` (``--workers``, ``--server``: see docs/web.md) on a free loopback port, and
rebuilt there by ``ruleatlas build --full`` of the repositories its last build read. The client
is this process: a minimal keep-alive HTTP/1.1 client on asyncio streams, so it costs little next
to the server (it shares the machine's cores with it). Every scenario is bounded in time and in
requests. Scenarios:

* ``ping``: ``/api/ping``, the cost of HTTP and the framework alone;
* ``rule page``: 200 rule pages in turn (each rendered once per worker and generation, then
  served from the page cache); ``rule page, first view``: 400 other rules, once each;
* ``search``: ``/rules?q=WORD`` for 10 words (cached after their first view);
  ``search, first view``: 300 different searches (word x filter x page), once each;
* ``... during rebuild``: the rule page and search scenarios again, in turns, while a build loop
  commits ``--builds`` full builds into the served catalog (each commit is a new generation: every
  cache of every worker starts again).

Reports req/s, p50 and p99 latency (client side) and the server's own p50 (``Server-Timing``),
the server's RSS (all its processes) before and after, the WAL size after, and the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

WORDS = ["wmiexec", "powershell", "mimikatz", "registry+run", "lsass", "certutil", "schtasks",
         "rundll32", "base64", "cobalt"]
FILTERS = ["", "&source=sigma", "&source=splunk", "&severity=high", "&tactic=execution",
           "&sort=title"]
TIMING = re.compile(rb"server-timing: app;dur=([0-9.]+)", re.I)
GOALS = {"rule page": (20.0, 50.0), "search": (50.0, None)}  # p50, p99 ms at 32 clients
ROOT = Path(__file__).resolve().parent.parent


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
    elif status not in (204, 304):  # chunked
        while True:
            size = int((await reader.readline()).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    t = TIMING.search(head)
    return status, float(t.group(1)) if t else None


async def run(port: int, paths: list[str], clients: int, seconds: float,
              max_requests: int) -> dict[str, Any]:
    """``clients`` keep-alive connections requesting ``paths`` in turn until ``seconds`` pass or
    ``max_requests`` were sent."""
    lat: list[float] = []
    server: list[float] = []
    errors: dict[int, int] = {}
    sent = 0
    stop_at = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal sent, errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while sent < max_requests and time.perf_counter() < stop_at:
                path = paths[sent % len(paths)]
                sent += 1
                t0 = time.perf_counter()
                status, st = await _one(reader, writer, path)
                lat.append((time.perf_counter() - t0) * 1000)
                if st is not None:
                    server.append(st)
                if status != 200:
                    errors[status] = errors.get(status, 0) + 1
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.perf_counter() - t0
    lat.sort()
    return {"requests": len(lat), "seconds": wall, "lat": lat, "server": server,
            "errors": errors}


def summary(name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    lat = sorted(x for r in runs for x in r["lat"])
    server = [x for r in runs for x in r["server"]]
    n = len(lat)
    return {"scenario": name, "requests": n,
            "rps": n / max(sum(r["seconds"] for r in runs), 1e-9),
            "p50": statistics.median(lat) if lat else float("nan"),
            "p99": lat[min(n - 1, int(n * 0.99))] if lat else float("nan"),
            "server_p50": statistics.median(server) if server else float("nan"),
            "errors": {k: sum(r["errors"].get(k, 0) for r in runs)
                       for k in sorted({k for r in runs for k in r["errors"]})}}


def rss_kb(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants (KB)."""
    total = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        m = re.search(r"VmRSS:\s+(\d+)", status)
        total += int(m.group(1)) if m else 0
        todo += [int(c) for c in children]
    return total


def copy_catalog(src: Path, dst: Path) -> list[str]:
    """``src`` backed up into ``dst``; the repositories its last build read."""
    a, b = sqlite3.connect(src), sqlite3.connect(dst)
    a.backup(b)
    row = b.execute("SELECT value FROM meta WHERE key = 'last_build'").fetchone()
    a.close()
    b.close()
    repos = list(json.loads(row[0])["repos"]) if row else []
    missing = [r for r in repos if not Path(r).is_dir()]
    if not repos or missing:
        sys.exit(f"{src}: cannot rebuild it (repositories {missing or 'unknown'})")
    return repos


def cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from ruleatlas.cli import main; main()", *args]


class BuildLoop(threading.Thread):
    """``ruleatlas build --full`` into the served catalog, ``count`` times (then stops)."""

    def __init__(self, db: Path, repos: list[str], count: int, env: dict[str, str],
                 nice: int = 10) -> None:
        super().__init__(daemon=True)
        self.db, self.repos, self.count, self.env, self.nice = db, repos, count, env, nice
        self.done = 0
        self.seconds: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while self.done < self.count and not self.stop.is_set():
            t0 = time.perf_counter()
            subprocess.run(cli("build", "--full", "--nice", str(self.nice), "--db", str(self.db),
                               *self.repos),
                           env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           check=False, timeout=900)
            self.seconds.append(time.perf_counter() - t0)
            self.done += 1


def get_json(base: str, path: str) -> Any:
    with urllib.request.urlopen(base + path, timeout=60) as r:
        return json.load(r)


def scenario_paths(base: str) -> dict[str, list[str]]:
    ids = [r["id"] for p in (1, 2, 3) for r in get_json(
        base, f"/api/rules?per_page=200&sort=title&page={p}")["rows"]]
    searches = [f"/rules?q={w}{f}&per_page={n}" for n in (10, 20, 30, 40, 50) for w in WORDS
                for f in FILTERS]
    return {
        "ping": ["/api/ping"],
        "rule page": [f"/rules/{i}" for i in ids[:200]],
        "rule page, first view": [f"/rules/{i}" for i in ids[200:600]],
        "search": [f"/rules?q={w}" for w in WORDS],
        "search, first view": searches[:300],
    }


def measure(port: int, paths: dict[str, list[str]], a: argparse.Namespace,
            pid: int) -> dict[str, Any]:
    out: dict[str, Any] = {"rss_before_kb": rss_kb(pid), "results": []}
    for name in ("rule page", "search"):  # first pass: each page rendered (per worker)
        asyncio.run(run(port, paths[name], 4, 60, len(paths[name]) * 4))
    for name in ("ping", "rule page", "rule page, first view", "search", "search, first view"):
        first = name.endswith("first view")
        res = asyncio.run(run(port, paths[name], a.clients, a.seconds * (6 if first else 1),
                              len(paths[name]) if first else a.max_requests))
        out["results"].append(summary(name, [res]))
    return out


def measure_rebuild(port: int, paths: dict[str, list[str]], a: argparse.Namespace,
                    db: Path, repos: list[str], env: dict[str, str]) -> dict[str, Any]:
    loop = BuildLoop(db, repos, a.builds, env, a.build_nice)
    gen0 = generation(db)
    loop.start()
    runs: dict[str, list[dict[str, Any]]] = {"rule page": [], "search": []}
    deadline = time.perf_counter() + a.rebuild_timeout
    while loop.is_alive() and time.perf_counter() < deadline:
        for name in runs:
            runs[name].append(asyncio.run(run(port, paths[name], a.clients, a.seconds,
                                              a.max_requests)))
    loop.stop.set()
    loop.join()
    return {"results": [summary(f"{n} during rebuild", r) for n, r in runs.items()],
            "builds": loop.done, "build_seconds": loop.seconds,
            "generations": generation(db) - gen0}


def generation(db: Path) -> int:
    c = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        row = c.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0]) if row else 0
    finally:
        c.close()


def print_table(rows: list[dict[str, Any]], ping_p50: float) -> None:
    print(f"{'scenario':32} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'server p50':>10} "
          f"{'vs ping':>8} {'n':>7}")
    for r in rows:
        print(f"{r['scenario']:32} {r['rps']:>8.0f} {r['p50']:>8.2f} {r['p99']:>8.2f} "
              f"{r['server_p50']:>10.2f} {r['p50'] / ping_p50:>7.1f}x {r['requests']:>7}"
              + "".join(f"  {n} x {k}" for k, n in r["errors"].items()))


def verdicts(rows: list[dict[str, Any]], clients: int) -> list[str]:
    by = {r["scenario"]: r for r in rows}
    out = []
    for name, (p50, p99) in GOALS.items():
        r = by[name]
        ok = r["p50"] < p50 and (p99 is None or r["p99"] < p99)
        want = f"p50 < {p50:g} ms" + (f", p99 < {p99:g} ms" if p99 else "")
        out.append(f"{name} at {clients} clients: {want}: p50 {r['p50']:.1f}, p99 "
                   f"{r['p99']:.1f} ({'met' if ok else 'NOT met'})")
        rb = by.get(f"{name} during rebuild")
        if rb:
            k50, k99 = rb["p50"] / r["p50"], rb["p99"] / r["p99"]
            out.append(f"{name} during rebuild: p50 x{k50:.1f}, p99 x{k99:.1f} of the figures "
                       f"without ({'met' if k50 <= 2 and k99 <= 2 else 'NOT met'}: <= 2x)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", default="ruleatlas.db")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=5.0, help="time bound per scenario")
    ap.add_argument("--max-requests", type=int, default=50_000, help="count bound per scenario")
    ap.add_argument("--builds", type=int, default=2, help="full rebuilds during the rebuild mix "
                    "(0: no rebuild mix)")
    ap.add_argument("--rebuild-timeout", type=float, default=600.0)
    ap.add_argument("--build-nice", type=int, default=10, help="the rebuilds' `build --nice` "
                    "(10, the default of `ruleatlas build`: the build yields the cores to the "
                    "server; 0: full priority)")
    ap.add_argument("--workers", type=int, default=0, help="server processes (0: one per core)")
    ap.add_argument("--server", default="auto", help="auto, granian or uvicorn")
    ap.add_argument("--json", action="store_true", help="print the results as JSON too")
    a = ap.parse_args()
    if not Path(a.db).is_file():
        sys.exit(f"no catalog at {a.db}: build one first (ruleatlas build --db {a.db} ...)")
    tmp = Path(tempfile.mkdtemp(prefix="ruleatlas-bench-web-"))
    db = tmp / "atlas.db"
    repos = copy_catalog(Path(a.db), db)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    port = free_port()
    proc = subprocess.Popen(cli("serve", "--db", str(db), "--port", str(port), "--workers",
                                str(a.workers), "--server", a.server),
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/api/ping", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        banner = proc.stderr.readline().decode().strip() if proc.stderr else ""
        print(f"{banner}\nload average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        paths = scenario_paths(base)
        plain = measure(port, paths, a, proc.pid)
        rows = plain["results"]
        rebuild: dict[str, Any] = {}
        if a.builds:
            rebuild = measure_rebuild(port, paths, a, db, repos, env)
            rows += rebuild["results"]
        rss_after = rss_kb(proc.pid)
        wal = Path(f"{db}-wal")
        ping = next(r for r in rows if r["scenario"] == "ping")
        print_table(rows, ping["p50"])
        print(f"\nserver RSS: {plain['rss_before_kb'] / 1024:.0f} MB before, "
              f"{rss_after / 1024:.0f} MB after (all processes)")
        if rebuild:
            took = ", ".join(f"{s:.0f}s" for s in rebuild["build_seconds"])
            print(f"rebuilds: {rebuild['builds']} ({took}, nice {a.build_nice}), "
                  f"{rebuild['generations']} new generations; WAL after: "
                  f"{wal.stat().st_size if wal.exists() else 0} bytes")
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        for line in verdicts(rows, a.clients):
            print("goal: " + line)
        if a.json:
            print(json.dumps({"rows": rows, "rebuild": {k: v for k, v in rebuild.items()
                                                        if k != "results"}}, indent=1))
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
