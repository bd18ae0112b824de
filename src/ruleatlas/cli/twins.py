"""CLI command: ``ruleatlas twins`` — twin rules across vendors, and whether they fire on the
same events of your logs (``engine.twins``)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ruleatlas.cli import common
from ruleatlas.cli.app import app
from ruleatlas.engine.twins import MIN_SHARE, SIMILAR_LIMIT, TwinReport, TwinResult, Verdict

# Column headers of the counts table, by verdict.
SHORT = {Verdict.SAME: "same", Verdict.OVERLAP: "overlap", Verdict.DISJOINT: "disjoint",
         Verdict.ONLY_A: "only a", Verdict.ONLY_B: "only b", Verdict.NEITHER: "neither"}
# Rows of the pairs table in the table format (--format json lists every pair).
SHOWN_PAIRS = 200


@app.command("twins")
def twins_cmd(
    logs: list[str] = typer.Argument(..., help="Log files or folders (EVTX, JSON, zip, tar.gz, "
                                               "Splunk XML)."),
    db: str = common.DB_OPT,
    min_share: float = typer.Option(MIN_SHARE, "--min-share", min=0.0, max=1.0,
                                    help="Each rule must hold at least this share of the "
                                         "other's indicator weight."),
    min_score: float = typer.Option(0.0, "--min-score", min=0.0,
                                    help="Least shared indicator weight (ruleatlas similar's "
                                         "score)."),
    fmt: common.Format = common.FORMAT_OPT,
    retired: bool = typer.Option(False, "--include-retired",
                                 help="Also run deprecated and unsupported rules."),
    jobs: int = typer.Option(0, "--jobs", "-j", min=0,
                             help="Worker processes (default 0: every core; 1: in process)."),
) -> None:
    """Hunt the logs once with every vendor's rules, then report each cross-vendor twin pair
    (ruleatlas similar, both rules runnable): same events, some in common, only one fired
    (which events), or neither.

    Exit code: 0 every input was read, 1 some inputs or records were skipped, 2 nothing could
    be read (or no catalog)."""
    from ruleatlas.cli.engine import _plans
    from ruleatlas.engine.catalog import is_retired
    from ruleatlas.engine.hunt import HuntReport
    from ruleatlas.engine.jobs import default_jobs
    from ruleatlas.engine.twins import hunt_twins
    from ruleatlas.store.indicators import similar_rules

    missing = [p for p in logs if not Path(p).exists()]
    if missing:
        raise common.fail(f"no such file or folder: {', '.join(missing)}", 2)
    con = Console(stderr=True)
    cached = _plans(db, con)
    heads = [h for h in cached.plans if retired or not is_retired(h.rule)]
    hunt = HuntReport()
    with common.open_catalog(db) as cat:
        report = hunt_twins(cached, heads, logs, lambda rid, n: similar_rules(cat.conn, rid, n),
                            hunt, min_share=min_share, min_score=min_score,
                            limit=SIMILAR_LIMIT, jobs=jobs or default_jobs())
    con.print(f"{hunt.events} events, {hunt.rules_run} rules run, {hunt.findings} findings; "
              f"{len(report.results)} twin pairs", highlight=False)
    if fmt is common.Format.json:
        common.echo_json({**report.to_dict(), "hunt": hunt.to_dict()})
    else:
        _tables(report)
    code = hunt.exit_code()
    if code:
        raise typer.Exit(code)


def _tables(report: TwinReport) -> None:
    c = Console()
    t = Table(title="Twin pairs by sources")
    t.add_column("Sources", no_wrap=True)
    for v in Verdict:
        t.add_column(SHORT[v], justify="right")
    for k, counts in sorted(report.by_sources().items()):
        t.add_row(k, *(str(counts[v.value]) for v in Verdict))
    c.print(t)
    c.print("same: both fired on the same events; overlap: on some of the same; disjoint: "
            "both fired, on no common event", highlight=False)
    p = Table(title=f"Twin pairs ({len(report.results)})")
    for col in ("Verdict", "Rule a", "Rule b", "Share a/b", "Events a/b/both",
                "First event only one fired on"):
        p.add_column(col, overflow="fold")
    shown = sorted(report.results, key=lambda r: (r.verdict is Verdict.NEITHER,
                                                   list(Verdict).index(r.verdict)))
    for r in shown[:SHOWN_PAIRS]:
        p.add_row(r.verdict.value, escape(f"[{r.pair.a.source}] {r.pair.a.title}"),
                  escape(f"[{r.pair.b.source}] {r.pair.b.title}"),
                  f"{r.pair.share_a:.0%}/{r.pair.share_b:.0%}",
                  f"{r.a_events}/{r.b_events}/{r.shared}", _first_missed(r))
    c.print(p)
    if len(report.results) > SHOWN_PAIRS:
        c.print(f"... {len(report.results) - SHOWN_PAIRS} more pairs (--format json)")


def _first_missed(r: TwinResult) -> str:
    """``a: file:position (+n more)`` for the first event one rule fired on and not the other."""
    for side, only, n in (("a", r.only_a, r.a_events - r.shared),
                          ("b", r.only_b, r.b_events - r.shared)):
        if only:
            name = only[0].file.replace("\\", "/").rsplit("/", 1)[-1]
            more = f" (+{n - 1})" if n > 1 else ""
            return escape(f"{side}: {name}:{only[0].position}{more}")
    return ""
