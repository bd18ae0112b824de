"""``ruleatlas hunt --engine spark|duckdb``: the catalog over a SQL backend, with the local
engine's findings.

1. **Inputs.** Folders in the columnar layout ``ruleatlas convert`` writes (``_kind=...``
   partitions of Parquet or JSON lines) and, on Spark, any URI with a scheme (``hdfs://``,
   ``s3a://``; JSON lines when it ends in ``.jsonl``/``.json``) are read as they are. Anything
   else (EVTX, OTRF archives, Splunk XML, raw JSON logs) is **staged**: read once by the local
   readers, within the read limits, its read errors and inputs recorded in the report as
   ``hunt`` records them, and written to a temporary Parquet folder (removed afterwards).
2. **Planning** (:func:`.backend.plan_queries`): each rule runs as SQL (event-level, or an
   aggregation :mod:`.aggregate` maps exactly) or **falls back**, with its reason.
3. **SQL**: the event queries (one job on Spark) give ``(file, position, seq, rule)``; each
   aggregation query gives its groups and each group's first event.
4. **The same events, back on the driver**: the rows of every event kind a fallback rule is
   routed to, plus the rows SQL found, rebuilt as the readers' events
   (:func:`.columnar.row_event`) and read in ``_seq`` order. The fallback rules run on them in
   a local :class:`~ruleatlas.engine.runner.Engine`; the SQL findings take their event, their
   matched fields, keywords and result filter from them as the local engine does; the
   aggregation rows go through the rule's own result filter or result steps.
5. Findings come out in the local engine's order: event findings by event (``_seq``) then rule
   order, then the aggregations' in rule order.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ruleatlas.engine.events import Event, InputRead, ReadError
from ruleatlas.engine.matcher import text_values
from ruleatlas.engine.runner import Engine, EngineRule, Finding, matched_fields
from ruleatlas.engine.sql.aggregate import (
    FIRST_FILE,
    FIRST_POSITION,
    FIRST_SEQ,
    FLOAT,
    INT,
    LIST,
    AggQuery,
)
from ruleatlas.engine.sql.backend import SqlFinding, SqlPlan, plan_queries, routed
from ruleatlas.engine.sql.columnar import KIND_COLUMN, ParquetSink, event_row, kind_key, row_event
from ruleatlas.engine.sql.compiler import LIST_SUFFIX
from ruleatlas.limits import Limits

if TYPE_CHECKING:
    from ruleatlas.engine.hunt import HuntReport

ENGINES = ("local", "spark", "duckdb")
SHORT = 300  # matched values are cut as the local engine cuts them (runner._short)


class SqlHuntError(ValueError):
    """An input a SQL backend cannot take (mixed layouts, DuckDB and a URI...)."""


class Backend(Protocol):
    name: str
    dialect: str

    def attach(self, uri: str | Sequence[str], fmt: str) -> tuple[list[str], dict[str, int]]:
        ...

    def event_rows(self, queries: Sequence[str]) -> list[tuple[str, int, int, int]]: ...

    def agg_rows(self, queries: Sequence[str]) -> list[list[dict[str, Any]]]: ...

    def fetch(self, kinds: Sequence[str],
              keys: Sequence[tuple[str, int]]) -> Iterator[dict[str, Any]]: ...


@dataclass(slots=True)
class SqlSummary:
    """What ran where, and the time of each part (stderr summary, ``summary.engine``)."""

    engine: str
    master: str | None = None
    mode: str = "sql"  # Spark: "plans" (the local matcher in Spark's workers) or "sql"
    on_workers: int = 0  # rules run by the local matcher in Spark's Python workers
    in_sql: int = 0
    aggregations: int = 0  # of in_sql
    fallback: dict[str, str] = field(default_factory=dict)
    kinds: int = 0
    staged: bool = False
    seconds: dict[str, float] = field(default_factory=dict)

    def reasons(self) -> Counter[str]:
        """Fallback rules per reason, the reasons' rule-specific parts (quoted text,
        addresses, numbers) blanked out so alike reasons count together."""
        return Counter(reason_group(r) for r in self.fallback.values())

    def lines(self) -> list[str]:
        where = f"{self.engine} ({self.master})" if self.master else self.engine
        t = ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items())
        if self.mode == "plans":
            return [f"{where}: {self.on_workers} rules ran as plans in Spark's Python workers "
                    f"(the local matcher), none fell back; {self.kinds} event kinds; {t}"]
        out = [f"{where}: {self.in_sql} rules ran as SQL ({self.aggregations} aggregations), "
               f"{len(self.fallback)} fell back to the local engine on the same events; "
               f"{self.kinds} event kinds; {t}"]
        out += [f"  fell back: {n} x {r}" for r, n in self.reasons().most_common()]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"engine": self.engine, "master": self.master, "mode": self.mode,
                "rules_on_workers": self.on_workers, "rules_in_sql": self.in_sql,
                "aggregations_in_sql": self.aggregations,
                "fell_back": len(self.fallback),
                "fell_back_by_reason": dict(self.reasons().most_common()),
                "fell_back_rules": dict(sorted(self.fallback.items())),
                "kinds": self.kinds, "staged": self.staged,
                "seconds": {k: round(v, 3) for k, v in self.seconds.items()}}


IPV6 = r"(?:\b[0-9A-Fa-f]{1,4})?(?::[0-9A-Fa-f]{0,4}){2,}(?:/\d+)?"


def reason_group(reason: str) -> str:
    first = reason.split("; ")[0]
    first = re.sub(r"'[^']*'|\"[^\"]*\"", "'...'", first)
    return re.sub(IPV6 + r"|\b\d+(?:\.\d+)*(?:/\d+)?\b", "...", first)


# ------------------------------------------------------------------------------ inputs


def layout_of(path: str) -> str | None:
    """``parquet``/``jsonl`` for a converted folder or a URI; None for logs to stage."""
    if "://" in path and not path.startswith("file://"):
        return "jsonl" if path.rstrip("/").endswith((".jsonl", ".json")) else "parquet"
    p = Path(path.removeprefix("file://"))
    if not p.is_dir():
        return None
    parts = [d for d in p.iterdir() if d.is_dir() and d.name.startswith(f"{KIND_COLUMN}=")]
    if not parts:
        return None
    sample = next((f for d in parts for f in d.iterdir() if f.is_file()), None)
    return "jsonl" if sample is not None and sample.suffix == ".jsonl" else "parquet"


def stage(paths: Sequence[str], out: Path, report: HuntReport, limits: Limits,
          progress: Callable[[int], None] | None) -> int:
    """Read the logs as ``hunt`` reads them and write them as Parquet; the event count."""
    from ruleatlas.engine.readers import read_events

    sink = ParquetSink(out)
    for ev in read_events(list(paths), report.errors, limits, report.inputs):
        sink.add(event_row(ev))
        if progress is not None:
            progress(1)
    return sink.close().events


# ------------------------------------------------------------------------------ the run


def start_backend(engine: str, master: str | None, summary: SqlSummary) -> Backend:
    t = time.perf_counter()
    if engine == "spark":
        from ruleatlas.engine.sql import spark as sp

        local_plans = summary.mode == "plans" and sp.master_url(master).startswith("local")
        session, _ = sp.start(master, java=sp.PLANS_LOCAL_JAVA if local_plans else ())
        summary.master = sp.master_url(master)
        summary.seconds["jvm start"] = time.perf_counter() - t
        if summary.mode == "plans":
            from ruleatlas.engine.sql.tasks import start_workers

            t = time.perf_counter()
            start_workers(session)
            summary.seconds["workers start"] = time.perf_counter() - t
        return sp.SparkBackend(session)
    if engine == "duckdb":
        from ruleatlas.engine.sql import duckdb as duck

        summary.master = None
        return duck.DuckDBBackend(duck.connect())
    raise SqlHuntError(f"unknown engine {engine!r} (one of {', '.join(ENGINES)})")


def hunt_sql(rules: Sequence[EngineRule], logs: Sequence[str], report: HuntReport,
             summary: SqlSummary, limits: Limits | None = None,
             progress: Callable[[int], None] | None = None,
             backend: Backend | None = None) -> Iterator[Finding]:
    """Findings of ``rules`` (prepared, runnable) over ``logs`` on ``summary.engine``; the
    local engine's findings, in its order (see the module docstring)."""
    t0 = time.perf_counter()
    layouts = {p: layout_of(p) for p in logs}
    direct = sorted({f for f in layouts.values() if f is not None})
    if len(direct) > 1 or (direct and None in layouts.values()):
        raise SqlHuntError("give either converted folders of one layout (parquet or jsonl) or "
                           "logs to stage, not both")
    if summary.engine == "duckdb" and any("://" in p for p in logs):
        raise SqlHuntError("--engine duckdb reads local folders; use spark for URIs")
    tmp = None
    try:
        if not direct:
            tmp = Path(tempfile.mkdtemp(prefix="ruleatlas-stage-"))
            summary.staged = True
            n = stage(logs, tmp / "events", report, limits or Limits.from_env(), progress)
            summary.seconds["staging"] = time.perf_counter() - t0
            if n == 0:
                return
            uris: list[str] = [str(tmp / "events")]
            fmt = "parquet"
        else:
            uris, fmt = list(logs), direct[0]
        yield from _run(rules, uris, fmt, report, summary, backend, limits)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        report.seconds = time.perf_counter() - t0


@dataclass(slots=True)
class SqlRun:
    """The event-level rules as SQL on one backend (:func:`event_sql`): the plan, the findings
    SQL gave (what falls back is not run), the events per kind and the seconds of each part."""

    plan: SqlPlan
    findings: list[SqlFinding]
    counts: dict[str, int]
    read_seconds: float
    compile_seconds: float
    run_seconds: float


def event_sql(be: Backend, rules: Sequence[EngineRule], uri: str | Sequence[str],
              fmt: str = "parquet") -> SqlRun:
    """Attach the events at ``uri``, plan the rules for the kinds present and run the event
    queries: the SQL half of a hunt (the tests and ``bench/sql.py`` read it alone)."""
    t0 = time.perf_counter()
    columns, counts = be.attach(uri, fmt)
    t1 = time.perf_counter()
    plan = plan_queries(rules, columns, counts, be.dialect, aliases=getattr(be, "aliases", None))
    t2 = time.perf_counter()
    found = [SqlFinding(plan.rules[r].rule.id, f, int(p), int(s))
             for f, p, s, r in be.event_rows(plan.queries)]
    return SqlRun(plan, found, counts, t1 - t0, t2 - t1, time.perf_counter() - t2)


def _run(rules: Sequence[EngineRule], uris: list[str], fmt: str, report: HuntReport,
         summary: SqlSummary, backend: Backend | None, limits: Limits | None = None
         ) -> Iterator[Finding]:
    be = backend or start_backend(summary.engine, summary.master, summary)
    if summary.mode == "plans":
        yield from _run_plans(rules, uris, fmt, be, report, summary, limits)
        return
    db_uri: str | list[str] = uris if summary.engine == "spark" else uris[0]
    if summary.engine == "duckdb" and len(uris) > 1:
        raise SqlHuntError("--engine duckdb reads one converted folder at a time")
    run = event_sql(be, rules, db_uri, fmt)
    plan, counts = run.plan, run.counts
    report.events = sum(counts.values())
    if not summary.staged:
        report.inputs.extend(InputRead(u, report.events if len(uris) == 1 else 0, 0)
                             for u in uris)
    summary.in_sql, summary.aggregations = plan.in_sql, len(plan.aggregations)
    summary.fallback, summary.kinds = dict(plan.fallback), plan.kinds
    summary.seconds["plan"] = run.read_seconds + run.compile_seconds
    t = time.perf_counter()
    groups = list(zip(plan.aggregations, be.agg_rows([q.sql for q in plan.aggregations]),
                      strict=True))
    t3 = time.perf_counter()
    summary.seconds["sql"] = run.run_seconds + t3 - t
    out = _collect(rules, plan, run.findings, groups, counts, be)
    summary.seconds["fallback and findings"] = time.perf_counter() - t3
    for f in out:
        report.add(f)
        yield f


def _run_plans(rules: Sequence[EngineRule], uris: Sequence[str], fmt: str, be: Backend,
               report: HuntReport, summary: SqlSummary, limits: Limits | None
               ) -> Iterator[Finding]:
    """Every rule's plan run by Spark's Python workers over the files at ``uris``
    (:mod:`.tasks`); each file is an input of the report (when the logs were not staged)."""
    from ruleatlas.engine.sql.spark import SparkBackend
    from ruleatlas.engine.sql.tasks import merge, run_on_spark

    if not isinstance(be, SparkBackend):
        raise SqlHuntError(f"plans run on Spark's workers, not on {be.name}")
    runnable = [er for er in rules if er.runnable]
    summary.on_workers = len(runnable)
    t = time.perf_counter()
    files = run_on_spark(be.spark, uris, fmt, runnable, limits)
    t2 = time.perf_counter()
    summary.seconds["tasks"] = t2 - t
    summary.kinds = len({f.kind for f in files})
    report.events = sum(f.result.events for f in files)
    if not files:  # nothing to hunt is said, never passed for a clean hunt
        for u in uris:
            report.errors.append(ReadError(u, 0, f"no {fmt} file of the columnar layout here",
                                           "file"))
            report.inputs.append(InputRead(u, 0, 1))
    for fr in sorted(files, key=lambda fr: fr.path):
        report.errors.extend(fr.result.errors)
        if not summary.staged:
            report.inputs.extend(fr.result.inputs)
    found = list(merge(runnable, [fr.result for fr in files], report.problems))
    summary.seconds["merge"] = time.perf_counter() - t2
    for f in found:
        report.add(f)
        yield f


def _collect(rules: Sequence[EngineRule], plan: SqlPlan, found: list[SqlFinding],
             groups: list[tuple[AggQuery, list[dict[str, Any]]]], counts: Mapping[str, int],
             be: Backend) -> list[Finding]:
    """Every finding, in the local engine's order (see the module docstring)."""
    order = {er.rule.id: i for i, er in enumerate(rules)}
    by_id = {er.rule.id: er for er in plan.rules}
    fb = [er for er in rules if er.rule.id in plan.fallback]
    with_subs = fb + [sub for er in fb for sub, _ in er.joins]
    kinds = [k for k in counts if routed(with_subs, kind_key(k))]
    hits: dict[tuple[str, int], list[str]] = {}
    for sf in found:
        hits.setdefault((sf.file, sf.position), []).append(sf.rule_id)
    firsts = {(r[FIRST_FILE], int(r[FIRST_POSITION])) for _, rows in groups for r in rows
              if r.get(FIRST_SEQ) is not None}
    engine = Engine(fb)
    events: list[tuple[tuple[int, int], Finding]] = []
    first_event: dict[tuple[str, int], Event] = {}
    seq = 0
    for row in be.fetch(kinds, sorted(set(hits) | firsts)):
        ev = row_event(row)
        seq += 1
        key = (ev.file, ev.position)
        if key in firsts:
            first_event[key] = ev
        for lf in engine.match(ev):
            events.append(((seq, order[lf.rule.rule.id]), lf))
        for rid in hits.get(key, ()):
            got = _event_finding(by_id[rid], ev, row[KIND_COLUMN])
            if got is not None:
                events.append(((seq, order[rid]), got))
    events.sort(key=lambda x: x[0])
    # the local engine's finish(): aggregations in rule order, then the collecting rules'
    # (sequences, Elastic thresholds and new terms), which only fall back
    aggs: list[tuple[tuple[int, int], int, Finding]] = [
        ((int(f.rule.collects), order[f.rule.rule.id]), 0, f) for f in engine.finish()]
    for q, rows in groups:
        for row in sorted((r for r in rows if r.get(FIRST_SEQ) is not None),
                          key=lambda r: int(r[FIRST_SEQ])):
            ev = first_event[(row[FIRST_FILE], int(row[FIRST_POSITION]))]
            got = _agg_finding(q, row, ev)
            if got is not None:
                aggs.append(((0, order[q.rule.rule.id]), int(row[FIRST_SEQ]), got))
    aggs.sort(key=lambda x: (x[0], x[1]))
    return [f for _, f in events] + [f for _, _, f in aggs]


def _short(v: Any) -> Any:
    return v[:SHORT] + "..." if isinstance(v, str) and len(v) > SHORT else v


def _event_finding(er: EngineRule, ev: Event, kind: str) -> Finding | None:
    """What the local engine yields for a rule matching this event (``Engine.match``)."""
    fields = ev.fields
    for k in [k for k in fields if " " in k]:  # Defender's spaced names (runner)
        fields.setdefault(k.replace(" ", ""), fields[k])
    if er.result is not None and not er.result(fields):
        return None
    fmap = er.route.field_map(kind_key(kind))
    found = matched_fields(fields, tuple((f, fmap.get(f, f)) for f in er.fields))
    if er.keywords:
        text = text_values(fields)
        found["keywords"] = [k for k in er.keywords if k in text]
    return Finding(er, ev, found)


def _agg_finding(q: AggQuery, row: Mapping[str, Any], ev: Event) -> Finding | None:
    """One group's row as the local ``Aggregator`` gives it, through the rule's result filter
    or result steps (``Engine._finish_one``)."""
    out: dict[str, Any] = {}
    for name, typ in q.outputs:
        v = row.get(name + LIST_SUFFIX if typ == LIST else name)
        out[name] = (int(v) if typ == INT and v is not None else
                     list(v) if typ == LIST and v is not None else
                     float(v) if typ == FLOAT and v is not None else v)
    er = q.rule
    if er.result is not None and not er.result(out):
        return None
    res = out if er.result_steps is None else er.result_steps(out)
    if res is None:
        return None
    return Finding(er, ev, {k: _short(v) for k, v in res.items()})
