"""Hunting: every applicable rule of the catalog over a user's logs.

:func:`hunt` prepares the rules once (:func:`hunt_plans`: takes them from the catalog's plan
cache, ``engine.plans``), streams the events of every path through one
:class:`~.runner.Engine` (routing + pre-filter + compiled matchers) and yields findings as they
come, so ``--format jsonl`` prints while reading. :class:`HuntReport` collects the summary by
rule and by ATT&CK tactic, the rules that could not run, the read errors and what became of each
input (:class:`~.events.InputRead`); :meth:`HuntReport.exit_code` is ``ruleatlas hunt``'s exit
code: 0 every input read whole, 1 some inputs or records skipped, 2 nothing could be read.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ruleatlas.engine.catalog import LoadedRule
from ruleatlas.engine.events import Event, InputRead, ReadError
from ruleatlas.engine.runner import Engine, EngineRule, Finding, prepare
from ruleatlas.limits import Limits
from ruleatlas.model import Problem

if TYPE_CHECKING:
    from ruleatlas.engine.plans import LoadedPlans, PlanHead


@dataclass(slots=True)
class HuntReport:
    """What a hunt saw: counts, per-rule and per-tactic summaries, problems."""

    events: int = 0
    findings: int = 0
    seconds: float = 0.0
    rules_run: int = 0
    not_runnable: list[tuple[str, str]] = field(default_factory=list)
    by_rule: Counter[str] = field(default_factory=Counter)
    by_tactic: Counter[str] = field(default_factory=Counter)
    titles: dict[str, tuple[str, str | None, str]] = field(default_factory=dict)
    errors: list[ReadError] = field(default_factory=list)
    inputs: list[InputRead] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # the plan cache's (engine.plans)
    engine: dict[str, Any] | None = None  # --engine spark|duckdb: what ran as SQL, fell back

    def add(self, f: Finding) -> None:
        r = f.rule.rule
        self.findings += 1
        self.by_rule[r.id] += 1
        self.titles[r.id] = (r.title, r.severity, r.source)
        for t in f.rule.tactics or ("(no tactic)",):
            self.by_tactic[t] += 1

    def exit_code(self) -> int:
        """0: every input read whole; 1: some inputs or records skipped (see ``errors``);
        2: nothing could be read (every input unreadable: empty, not a log, a bomb...)."""
        if not self.errors:
            return 0
        if not self.inputs or all(i.status == "unreadable" for i in self.inputs):
            return 2
        return 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "findings": self.findings,
            "seconds": round(self.seconds, 3),
            "rules_run": self.rules_run,
            "not_runnable": len(self.not_runnable),
            "by_rule": [{"rule_id": k, "rule_title": self.titles[k][0],
                         "severity": self.titles[k][1], "source": self.titles[k][2],
                         "findings": n} for k, n in self.by_rule.most_common()],
            "by_tactic": dict(self.by_tactic.most_common()),
            "read_errors": [str(e) for e in self.errors[:100]],
            "read_error_count": len(self.errors),
            "inputs": [{"file": i.file, "events": i.events, "errors": i.errors,
                        "status": i.status} for i in self.inputs],
            "exit_code": self.exit_code(),
            **({"engine": self.engine} if self.engine is not None else {}),
        }


def prepare_all(rules: Sequence[LoadedRule], report: HuntReport) -> list[EngineRule]:
    ready = []
    for lr in rules:
        er = prepare(lr.rule, lr.analysis, lr.tactics)
        if er.runnable:
            ready.append(er)
        else:
            report.not_runnable.append((lr.rule.id, er.reason or ""))
    report.rules_run = len(ready)
    return ready


def from_plans(plans: LoadedPlans, report: HuntReport,
               heads: Sequence[PlanHead] | None = None) -> list[EngineRule]:
    """:func:`prepare_all` for rules whose preparation is cached (``engine.plans``): the
    ``heads`` chosen (default: all), each filled in when its events first show up."""
    chosen = plans.plans if heads is None else heads
    for h in chosen:
        if not h.runnable:
            report.not_runnable.append((h.rule.id, h.reason or ""))
    picked = dataclasses.replace(plans, plans=tuple(chosen))
    ready = picked.engine_rules(report.problems)
    report.rules_run = len(ready)
    return ready


def hunt(rules: Sequence[LoadedRule], paths: Sequence[str], report: HuntReport,
         on_event: Callable[[Event], None] | None = None,
         limits: Limits | None = None, jobs: int = 1,
         progress: Callable[[int], None] | None = None) -> Iterator[Finding]:
    """Findings of ``rules`` over the events of ``paths`` (files, folders, archives), read
    within ``limits`` (default: :meth:`Limits.from_env`), on ``jobs`` processes (see
    :func:`run`)."""
    t0 = time.perf_counter()
    yield from run(prepare_all(rules, report), paths, report, on_event, t0, limits, jobs,
                   progress)


def hunt_plans(plans: LoadedPlans, heads: Sequence[PlanHead] | None, paths: Sequence[str],
               report: HuntReport, on_event: Callable[[Event], None] | None = None,
               limits: Limits | None = None, jobs: int = 1,
               progress: Callable[[int], None] | None = None) -> Iterator[Finding]:
    """:func:`hunt` with the rules' plans from the catalog's cache (same findings)."""
    t0 = time.perf_counter()
    yield from run(from_plans(plans, report, heads), paths, report, on_event, t0, limits, jobs,
                   progress)


def run(rules: Sequence[EngineRule], paths: Sequence[str], report: HuntReport,
        on_event: Callable[[Event], None] | None = None, t0: float | None = None,
        limits: Limits | None = None, jobs: int = 1,
        progress: Callable[[int], None] | None = None) -> Iterator[Finding]:
    """Prepared rules over the events of ``paths``, read within ``limits``.

    ``jobs`` > 1 shares the inputs out to that many worker processes (``engine.jobs``): same
    findings in the same order, same report; ``on_event`` is then not called (the events stay
    in the workers) but ``progress`` gets each input's event count as it is merged. With one
    job ``progress`` gets 1 per event."""
    from ruleatlas.engine.readers import read_events

    t0 = time.perf_counter() if t0 is None else t0
    limits = limits or Limits.from_env()
    if jobs > 1:
        from ruleatlas.engine.jobs import run_jobs

        yield from run_jobs(rules, paths, jobs, report, limits, progress)
        report.seconds = time.perf_counter() - t0
        return
    engine = Engine(rules)
    for ev in read_events(list(paths), report.errors, limits, report.inputs):
        report.events += 1
        if on_event is not None:
            on_event(ev)
        if progress is not None:
            progress(1)
        for f in engine.match(ev):
            report.add(f)
            yield f
    for f in engine.finish():
        report.add(f)
        yield f
    report.problems.extend(engine.problems)
    report.seconds = time.perf_counter() - t0
