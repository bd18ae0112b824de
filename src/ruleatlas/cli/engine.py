"""CLI commands: engine — ``ruleatlas test`` (rules on their own test data) and
``ruleatlas hunt`` (every applicable rule over your logs).

Rules come from the catalog (``--db``); ``--repo DIR`` reads repository clones directly instead
(no build needed). Progress goes to stderr (a Rich bar on a terminal), results to stdout.
"""

from __future__ import annotations

import csv
import gc
import json
import sys
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ruleatlas.cli.app import DEFAULT_DB, app
from ruleatlas.cli.common import Format, fail, open_catalog, resolve
from ruleatlas.engine.catalog import R
from ruleatlas.store import listings

GLOB_CHARS = frozenset("*?[")


class HuntEngine(StrEnum):
    local = "local"
    spark = "spark"
    duckdb = "duckdb"


class SparkMode(StrEnum):
    plans = "plans"
    sql = "sql"


class HuntFormat(StrEnum):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"


def _load(db: str, repos: list[str] | None, refs: list[str] | None) -> list[Any]:
    """The rules to run. From ``--repo`` clones: every rule, then ``select(refs)``. From the
    catalog: the rules :func:`_pick` chooses."""
    from ruleatlas.engine.catalog import from_db, from_repos, select

    if repos:
        missing = [r for r in repos if not Path(r).is_dir()]
        if missing:
            raise fail(f"no such repository folder: {', '.join(missing)}", 2)
        return select(from_repos(repos), refs)
    if not Path(db).is_file():
        raise fail(f"no catalog at {db}: run `ruleatlas build` first, or pass --repo DIR", 2)
    if not refs:
        return from_db(db)
    ids, patterns = _refs(db, refs)
    return from_db(db, ids) if not patterns else _pick(from_db(db), ids, patterns)


def _refs(db: str, refs: list[str]) -> tuple[list[str], list[str]]:
    """(rule ids, patterns) of rule references: a source name or a glob (``*``, ``?``, ``[``)
    selects by source, title or path; any other reference goes through the one rule resolver
    (id, unique id prefix, unique title), which refuses unknown, ambiguous or impossible
    references."""
    with open_catalog(db) as cat:
        sources = set(listings.sources(cat.conn))
        patterns = [r for r in refs if r.lower() in sources or GLOB_CHARS & set(r)]
        ids = list(dict.fromkeys(resolve(cat, r) for r in refs if r not in patterns))
    return ids, patterns


def _pick(every: Sequence[R], ids: list[str], patterns: list[str]) -> list[R]:
    """The rules (loaded rules or cached plans) named by ``ids`` or matching ``patterns``."""
    from ruleatlas.engine.catalog import select

    chosen = set(ids)
    named = [x for x in every if x.rule.id in chosen]
    return named + [x for x in select(every, patterns) if x.rule.id not in chosen] \
        if patterns else named


def _plans(db: str, con: Console) -> Any:
    """The catalog's rules as cached plans (``engine.plans``: computed and stored where the
    cache is stale); the cache's problems go to stderr."""
    if not Path(db).is_file():
        raise fail(f"no catalog at {db}: run `ruleatlas build` first, or pass --repo DIR", 2)
    from ruleatlas.engine.plans import load
    from ruleatlas.store.plans import PlanStoreError

    gc.disable()  # ~1M small objects arrive at once: no collection may walk them meanwhile
    try:
        got = load(db)
    except PlanStoreError as exc:
        raise fail(str(exc), 2) from None
    finally:
        gc.freeze()  # they live as long as the hunt: out of every later collection
        gc.enable()
    for p in got.problems[:20]:
        con.print(f"[yellow]plan cache[/]: {p}", markup=True, highlight=False)
    if got.computed:
        con.print(f"plan cache: {got.computed} rule(s) prepared and cached", highlight=False)
    return got


def _err() -> Console:
    return Console(stderr=True)


@app.command("test")
def test_cmd(
    rules: list[str] = typer.Argument(
        None, help="Rules: ids, unique id prefixes or titles; sources or globs on title or "
                   "path (default: all)."),
    db: str = typer.Option(DEFAULT_DB, "--db", help="Catalog database file."),
    repo: list[str] = typer.Option(None, "--repo", help="Read rules from this clone (repeat)."),
    attack_data: Path = typer.Option(None, "--attack-data",
                                     help="Local copy of splunk/attack_data for Splunk tests."),
    samples: Path = typer.Option(None, "--samples",
                                 help="YAML of rule id -> log files to test those rules on "
                                      "(docs/testing.md)."),
    fmt: Format = typer.Option(Format.table, "--format", help="table or json"),
    only_with_tests: bool = typer.Option(True, "--with-tests/--all",
                                         help="Only rules that name test data (or, with "
                                              "--samples, the rules it names)."),
    store: bool = typer.Option(True, "--store/--no-store",
                               help="Write results into the catalog's test_results."),
) -> None:
    """Run each rule on its own test data: pass, fail, no-data or not-runnable.

    Sigma: regression_tests_path -> info.yml -> .evtx (match_count is a lower bound). Splunk:
    the attack_data files of its tests section, found under --attack-data DIR. Elastic ships no
    per-rule samples: no-data. --samples FILE maps rules of any source to your own log files
    (each must make the rule fire, or not with fire: false). Exit code: 0 all good, 1 a rule
    failed or some test data could not be read, 2 a broken samples file or bad option."""
    from ruleatlas.engine.testing import run_one

    limits = _test_limits()
    loaded, sf = _test_rules(db, repo, rules, samples, only_with_tests, limits)
    results = []
    con = _err()
    with Progress(TextColumn("testing"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=con, disable=not con.is_terminal,
                  transient=True) as prog:
        task = prog.add_task("test", total=len(loaded))
        for lr in loaded:
            results.append(run_one(lr, attack_data, sf, limits))
            prog.advance(task)
    if store and Path(db).is_file() and not repo:
        from ruleatlas.store.results import write_results

        write_results(db, [r.to_dict() for r in results])
    _print_results(results, fmt)
    unread = _read_problems(con, results)
    if any(r.status == "fail" for r in results) or unread:
        raise typer.Exit(1)


def _test_limits() -> Any:
    from ruleatlas.limits import LimitError, Limits

    try:
        return Limits.from_env()
    except LimitError as exc:
        raise fail(str(exc), 2) from None


def _test_rules(db: str, repo: list[str] | None, rules: list[str] | None,
                samples: Path | None, only_with_tests: bool,
                limits: Any) -> tuple[list[Any], Any]:
    """The rules ``test`` runs, and the samples file (None without ``--samples``). With a
    samples file and no RULE, the rules it names (all rules with ``--all``)."""
    from ruleatlas.engine.catalog import from_db, select
    from ruleatlas.engine.samples import SamplesError, load_samples

    every: list[Any] | None = None
    if samples is not None and repo:
        every = _load(db, repo, None)
    elif samples is not None and not Path(db).is_file():
        raise fail(f"no catalog at {db}: run `ruleatlas build` first, or pass --repo DIR", 2)
    sf = None
    if samples is not None:
        try:
            sf = load_samples(samples, _known_ids(db, every), limits)
        except SamplesError as exc:
            raise fail(str(exc), 2) from None
    if sf is not None and not rules and only_with_tests:
        wanted = set(sf.rule_ids())
        loaded = ([lr for lr in every if lr.rule.id in wanted] if every is not None
                  else from_db(db, list(sf.rule_ids())))
        return loaded, sf
    loaded = select(every, rules) if every is not None else _load(db, repo, rules)
    if only_with_tests and not rules:
        loaded = [lr for lr in loaded if lr.rule.tests]
    if rules and not loaded:
        raise fail(f"no rule matches {' '.join(rules)}", 2)
    return loaded, sf


def _known_ids(db: str, every: list[Any] | None) -> Any:
    """Which of a list of ids name a rule: of the ``--repo`` rules, or in the catalog."""
    if every is not None:
        have = {lr.rule.id for lr in every}
        return lambda ids: have.intersection(ids)

    def in_catalog(ids: Sequence[str]) -> set[str]:
        with open_catalog(db) as cat:
            return {r["id"] for r in listings.rule_titles(cat.conn, ids)}

    return in_catalog


def _print_results(results: Sequence[Any], fmt: Format) -> None:
    from ruleatlas.engine.testing import summary

    if fmt is Format.json:
        typer.echo(json.dumps([{k: v for k, v in r.to_dict().items() if k != "detail"}
                               for r in results], indent=2, ensure_ascii=False))
        return
    t = Table(title="Rule tests")
    for col in ("Status", "Rule", "Matched", "Expected", "Reason"):
        t.add_column(col, overflow="fold")
    style = {"pass": "green", "fail": "red", "no-data": "yellow", "not-runnable": "magenta"}
    for r in results:
        t.add_row(f"[{style[r.status]}]{r.status}[/]", f"{r.title}\n[dim]{r.id}[/]",
                  str(r.matched), "" if r.expected is None else str(r.expected),
                  r.reason or "")
    Console().print(t)
    s = summary(results)
    typer.echo(", ".join(f"{k} {v}" for k, v in s.items()))


def _read_problems(con: Console, results: Sequence[Any]) -> int:
    """Print (stderr) the read errors met in the rules' test data; how many there were."""
    from rich.markup import escape

    total = 0
    for r in results:
        if not r.read_errors:
            continue
        total += r.read_errors
        entries = r.detail.get("samples") or r.detail.get("files") or []
        first = next((e["read_errors"][0] for e in entries if e.get("read_errors")), "")
        con.print(f"[yellow]read errors[/]: {escape(r.id)}: {r.read_errors} "
                  f"(first: {escape(first)})", soft_wrap=True, highlight=False)
    return total


@app.command("hunt")
def hunt_cmd(
    logs: list[str] = typer.Argument(..., help="Log files or folders (EVTX, JSON, zip, tar.gz, "
                                               "Splunk XML)."),
    db: str = typer.Option(DEFAULT_DB, "--db", help="Catalog database file."),
    repo: list[str] = typer.Option(None, "--repo", help="Read rules from this clone (repeat)."),
    rules: list[str] = typer.Option(None, "--rules",
                                    help="Rule filter: id, source (sigma/splunk/elastic), title or "
                                         "path glob (repeat)."),
    fmt: HuntFormat = typer.Option(HuntFormat.table, "--format",
                                   help="table, json, jsonl or csv"),
    retired: bool = typer.Option(False, "--include-retired",
                                 help="Also run deprecated and unsupported rules."),
    limit: list[str] = typer.Option(None, "--limit",
                                    help="NAME=VALUE: override a read limit, e.g. "
                                         "member_bytes=64M (repeat; see docs/limits.md)."),
    jobs: int = typer.Option(0, "--jobs", "-j", min=0,
                             help="Worker processes (default 0: every core; 1: in process). "
                                  "Inputs are shared out by file; same findings, same order."),
    engine: HuntEngine = typer.Option(HuntEngine.local, "--engine",
                                      help="local (in process), spark or duckdb: the same "
                                           "findings (docs/spark.md)."),
    spark_master: str = typer.Option(None, "--spark-master", envvar="SPARK_MASTER",
                                     help="Spark master URL (default local[*])."),
    spark_mode: SparkMode = typer.Option(SparkMode.plans, "--spark-mode",
                                         help="plans: the rules' plans run by Spark's Python "
                                              "workers (every rule); sql: the rules compiled "
                                              "to Spark SQL, the rest falling back "
                                              "(docs/spark.md)."),
) -> None:
    """Run every applicable rule over the logs; findings plus a summary by rule and tactic.

    Deprecated and unsupported rules (Sigma's deprecated/ and unsupported/ folders, status
    deprecated/unsupported) are left out unless --include-retired. --jobs N runs N worker
    processes (default: every core), each on a share of the input files. Exit code: 0 every input
    was read, 1 some inputs or records were skipped (summary on stderr), 2 nothing could be
    read. --engine spark|duckdb runs the rules as SQL over converted folders (`ruleatlas
    convert`; Spark: any URI it reads) or over the logs staged into Parquet; rules SQL cannot run
    fall back to the local engine on the same events (summary on stderr)."""
    from ruleatlas.engine.catalog import is_retired
    from ruleatlas.engine.hunt import HuntReport
    from ruleatlas.limits import LimitError, Limits

    try:
        limits = Limits.from_env().with_options(limit or ())
    except LimitError as exc:
        raise fail(str(exc), 2) from None

    missing = [p for p in logs if not Path(p).exists()
               and not (engine is HuntEngine.spark and "://" in p)]
    if missing:
        raise fail(f"no such file or folder: {', '.join(missing)}", 2)
    con = _err()
    cached = None if repo else _plans(db, con)
    loaded: list[Any]
    if cached is None:
        loaded = _load(db, repo, rules)
    else:
        loaded = _pick(cached.plans, *_refs(db, rules)) if rules else list(cached.plans)
    if not retired:
        loaded = [lr for lr in loaded if not is_retired(lr.rule)]
    report = HuntReport()
    findings: list[dict[str, Any]] = []
    emit = _emitter(fmt, findings)
    with Progress(TextColumn("hunting"), TextColumn("{task.completed} events"),
                  TextColumn("{task.fields[found]} findings"), TimeElapsedColumn(),
                  console=con, disable=not con.is_terminal, transient=True) as prog:
        task = prog.add_task("hunt", total=None, found=0)
        n = 0

        def tick(k: int) -> None:
            nonlocal n
            n += k
            if n % 2000 < k:
                prog.update(task, completed=n, found=report.findings)

        found, summary = _found(engine, (spark_master, spark_mode.value), cached, loaded, logs,
                                report, limits, jobs, tick)
        for f in found:
            emit(f.to_dict())
    for p in report.problems[:20]:
        con.print(f"[yellow]plan cache[/]: {p}", highlight=False)
    if summary is not None:
        report.engine = summary.to_dict()
        for line in summary.lines():
            con.print(line, highlight=False, markup=False)
    con.print(f"{report.events} events, {report.rules_run} rules run "
              f"({len(report.not_runnable)} not runnable), {report.findings} findings "
              f"in {report.seconds:.1f}s")
    if fmt is HuntFormat.json:
        typer.echo(json.dumps({"findings": findings, "summary": report.to_dict()}, indent=2,
                              ensure_ascii=False, default=str))
    elif fmt is HuntFormat.table:
        _hunt_tables(findings, report)
    _skipped_summary(con, report)
    code = report.exit_code()
    if code:
        raise typer.Exit(code)


def _emitter(fmt: HuntFormat, findings: list[dict[str, Any]]) -> Any:
    """What prints one finding as it comes (jsonl, csv) or keeps it for the end (json, table)."""
    out = sys.stdout
    if fmt is HuntFormat.jsonl:
        return lambda d: out.write(json.dumps(d, ensure_ascii=False, default=str) + "\n")
    if fmt is HuntFormat.csv:
        writer = csv.writer(out)
        writer.writerow(["rule_id", "rule_title", "source", "severity", "file", "record_id",
                         "time", "host", "matched"])
        return lambda d: writer.writerow([
            d["rule_id"], d["rule_title"], d["source"], d["severity"], d["file"],
            d["record_id"], d["time"], d["host"],
            json.dumps(d["matched"], ensure_ascii=False, default=str)])
    return findings.append


def _found(engine: HuntEngine, spark: tuple[str | None, str], cached: Any, loaded: list[Any],
           logs: list[str], report: Any, limits: Any, jobs: int,
           tick: Any) -> tuple[Any, Any]:
    """The findings' iterator of the chosen engine, and the SQL summary (None: local)."""
    from ruleatlas.engine.hunt import from_plans, hunt, hunt_plans, prepare_all
    from ruleatlas.engine.jobs import default_jobs

    if engine is HuntEngine.local:
        njobs = jobs or default_jobs()
        return (hunt(loaded, logs, report, limits=limits, jobs=njobs, progress=tick)
                if cached is None else
                hunt_plans(cached, loaded, logs, report, limits=limits, jobs=njobs,
                           progress=tick)), None
    from ruleatlas.engine.sql.hunt import SqlHuntError, SqlSummary, hunt_sql

    rules = prepare_all(loaded, report) if cached is None else from_plans(cached, report, loaded)
    master, mode = spark
    summary = SqlSummary(engine.value, master, mode if engine is HuntEngine.spark else "sql")

    def run() -> Any:
        try:
            yield from hunt_sql(rules, logs, report, summary, limits, tick)
        except SqlHuntError as exc:
            raise fail(str(exc), 2) from None

    return run(), summary


def _skipped_summary(con: Console, report: Any) -> None:
    """What was skipped and why, with locations (stderr, after the findings)."""
    if not report.errors:
        return
    from rich.markup import escape

    shown = 20
    for e in report.errors[:shown]:
        con.print(f"[yellow]skipped[/]: {escape(str(e))}", soft_wrap=True)
    if len(report.errors) > shown:
        con.print(f"... {len(report.errors) - shown} more (--format json lists 100)")
    bad = [i for i in report.inputs if i.errors]
    for i in bad[:shown]:
        con.print(f"[yellow]{i.status}[/]: {escape(i.file)}: {i.events} events, "
                  f"{i.errors} read errors", soft_wrap=True)
    con.print(f"{len(report.inputs) - len(bad)} of {len(report.inputs)} inputs read whole, "
              f"{sum(i.status == 'partly read' for i in bad)} partly, "
              f"{sum(i.status == 'unreadable' for i in bad)} unreadable")


def _hunt_tables(findings: list[dict[str, Any]], report: Any) -> None:
    c = Console()
    t = Table(title=f"Findings ({len(findings)})")
    for col in ("Rule", "Severity", "Time", "Host", "Record", "Matched"):
        t.add_column(col, overflow="fold")
    for d in findings[:500]:
        matched = "; ".join(f"{k}={v}" for k, v in list(d["matched"].items())[:4])
        t.add_row(d["rule_title"], d["severity"] or "", d["time"] or "", d["host"] or "",
                  str(d["record_id"]), matched[:200])
    c.print(t)
    if len(findings) > 500:
        c.print(f"... {len(findings) - 500} more findings (use --format jsonl)")
    s = report.to_dict()
    rt = Table(title="By rule")
    for col in ("Findings", "Rule", "Severity", "Source"):
        rt.add_column(col)
    for row in s["by_rule"]:
        rt.add_row(str(row["findings"]), row["rule_title"], row["severity"] or "", row["source"])
    c.print(rt)
    tt = Table(title="By ATT&CK tactic")
    tt.add_column("Tactic")
    tt.add_column("Findings")
    for k, v in s["by_tactic"].items():
        tt.add_row(k, str(v))
    c.print(tt)
