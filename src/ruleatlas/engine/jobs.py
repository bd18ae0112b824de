"""Hunting on every local core: ``ruleatlas hunt --jobs N``.

The inputs (files, folder members, archives: each one a *unit*) are shared out to N worker
processes, started with the ``fork`` method so the prepared rules (the plan cache, frozen out
of the garbage collector by the CLI) are inherited copy-on-write instead of loaded again. Each
worker runs one :class:`~.runner.Engine` over its units and sends back, per unit, the findings
(rule index, event, matched fields), its read errors and its :class:`~.events.InputRead`, and
the *state records* of the aggregating rules: each row an aggregation was fed (and each row of
a join's subsearch) with its event. The parent prints the units in input order (a unit that
finishes early waits, at most ``AHEAD * N`` units and ``BUFFERED`` records, so memory stays
bounded), then
replays the state records, in input order, into its own Engine's aggregators and join rows and
yields :meth:`Engine.finish`'s findings: aggregations see every event of their groups, in the
same order as with one process, so the findings and their order are those of ``--jobs 1``.

A worker that dies (killed, out of memory) or a unit that raises is reported as a read error
of its input (exit code 1 or 2, as any unreadable input); Ctrl-C terminates the workers.
"""

from __future__ import annotations

import copyreg
import multiprocessing as mp
import os
import signal
import sys
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Any

from ruleatlas.engine.aggregate import AggSpec
from ruleatlas.engine.events import Event, InputRead, ReadError
from ruleatlas.engine.pipeline import JoinRows
from ruleatlas.engine.plan import PIPELINES
from ruleatlas.engine.plans import by_constructor
from ruleatlas.engine.runner import Engine, EngineRule, Finding
from ruleatlas.engine.sigma_semantics import to_text
from ruleatlas.limits import Limits

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

NO_EVENT = float("inf")  # the number of no event: every event's is smaller
WINDOW = 2  # units queued in each worker's pipe
# Units finished out of order wait in the parent until every earlier unit is printed. A worker
# may run ahead of the next unit to print by up to AHEAD units per worker, while the waiting
# units hold fewer than BUFFERED findings and state records (a big archive at the head of the
# queue no longer leaves the other workers idle; the parent's memory stays bounded).
AHEAD = 16
BUFFERED = 200_000


def default_jobs() -> int:
    """Every core this process may use."""
    n = os.process_cpu_count() if hasattr(os, "process_cpu_count") else None
    if n is None:
        try:
            n = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            n = os.cpu_count()
    return max(1, n or 1)


@dataclass(frozen=True, slots=True)
class Unit:
    """One input file, or a path that could not be expanded (``errors``/``read`` preset)."""

    path: str | None
    errors: tuple[ReadError, ...] = ()
    read: tuple[InputRead, ...] = ()


@dataclass(frozen=True, slots=True)
class WireFinding:
    """A finding as it travels from a worker: the rule by its index in the Engine."""

    rule: int
    event: Event
    matched: dict[str, Any]
    seq: int = 0  # the event's number in its input (a Spark task's rows come out of order)


@dataclass(frozen=True, slots=True)
class StateRecord:
    """A row fed to an aggregating rule (``join=False``), to a join's subsearch rows, or an
    event a sequence / threshold / new-terms rule collected (``collect``: its ECS fields)."""

    rule: int
    row: dict[str, Any]
    event: Event | None
    join: bool = False
    collect: bool = False
    seq: int = 0  # the number of the event that fed it (see WireFinding.seq)


# Findings and state records cross a pipe (``--jobs``) or Spark (a task's results) by the
# ten thousand: rebuilt by their constructors when unpickled (``plans.by_constructor``).
for _cls in (WireFinding, StateRecord):
    copyreg.pickle(_cls, by_constructor(_cls))


@dataclass(slots=True)
class UnitResult:
    """What a worker sends back for one unit."""

    unit: int
    findings: list[WireFinding] = field(default_factory=list)
    state: list[StateRecord] = field(default_factory=list)
    errors: list[ReadError] = field(default_factory=list)
    inputs: list[InputRead] = field(default_factory=list)
    events: int = 0


def units_of(paths: Sequence[str]) -> list[Unit]:
    """The inputs in the order ``read_events`` reads them (folders expanded, sorted)."""
    from ruleatlas.engine.readers import _expand

    out: list[Unit] = []
    for p in paths:
        errs: list[ReadError] = []
        ins: list[InputRead] = []
        files = list(_expand([p], errs.append, ins))
        out.extend(Unit(str(f)) for f in files)
        if errs or ins:
            out.append(Unit(None, tuple(errs), tuple(ins)))
    return out


# --------------------------------------------------------------------------------------------
# Worker side
# --------------------------------------------------------------------------------------------


class _Sink:
    """Where the current unit's state records go, and the number of the event being read."""

    __slots__ = ("records", "seq")

    def __init__(self) -> None:
        self.records: list[StateRecord] = []
        self.seq = 0


class _Recorder:
    """Stands for an aggregator in a worker: records what it is fed. For ``stats`` only what
    :class:`Aggregator` reads is kept: the ``by`` fields and the functions' arguments, and the
    event only for a row earlier than every row of its group before it in this unit (a Spark
    task's rows come in any order; no later row can be a group's first in the parent); a row
    without every ``by`` value is dropped, as the aggregator drops it. ``eventstats`` rows
    (kept whole by the aggregator) and the rows of a language with its own aggregator (ES|QL)
    travel whole."""

    __slots__ = ("idx", "keep", "seen", "sink", "spec", "whole")

    def __init__(self, idx: int, spec: AggSpec, sink: _Sink, whole: bool = False) -> None:
        self.idx = idx
        self.spec = spec
        self.whole = whole or spec.command != "stats"
        self.sink = sink
        self.seen: dict[tuple[str, ...], int] = {}  # group -> its earliest row's number
        self.keep = tuple(dict.fromkeys(
            [*spec.by, *(f.arg for f in spec.funcs if f.arg is not None)]))

    def add(self, fields: Mapping[str, Any], payload: Any) -> None:
        if self.whole:
            self.sink.records.append(StateRecord(self.idx, dict(fields), payload,
                                                 seq=self.sink.seq))
            return
        key = []
        for b in self.spec.by:
            v = fields.get(b)
            if v is None:
                return
            key.append(to_text(v))
        k = tuple(key)
        seq = self.sink.seq
        first = seq < self.seen.get(k, NO_EVENT)  # the earliest row of its group so far
        if first:
            self.seen[k] = seq
        row = {n: fields[n] for n in self.keep if n in fields}
        self.sink.records.append(StateRecord(self.idx, row, payload if first else None,
                                             seq=self.sink.seq))


class _RecordingAggregators(dict[int, Any]):
    """``Engine.aggregators`` in a worker: every rule's aggregator is a :class:`_Recorder`."""

    def __init__(self, engine: Engine, sink: _Sink) -> None:
        super().__init__()
        self.engine = engine
        self.sink = sink

    def get(self, key: int, default: Any = None) -> Any:  # type: ignore[override]
        got = dict.get(self, key)
        if got is None:
            er = self.engine.rules[key]
            assert er.agg is not None
            # a language with its own aggregator (ES|QL) may read any field of a row
            got = self[key] = _Recorder(key, er.agg, self.sink, er.semantics in PIPELINES)
        return got

    def new_unit(self) -> None:
        for r in self.values():
            r.seen.clear()


class _RecordingRows(list[dict[str, Any]]):
    """A join subsearch's rows in a worker: appends are recorded, not kept."""

    def __init__(self, idx: int, sink: _Sink) -> None:
        super().__init__()
        self.idx = idx
        self.sink = sink

    def append(self, row: dict[str, Any]) -> None:
        self.sink.records.append(StateRecord(self.idx, row, None, join=True,
                                             seq=self.sink.seq))


def join_rows(engine: Engine) -> dict[int, JoinRows]:
    """Engine index of each join subsearch rule -> the rows its joining rule reads."""
    where = {id(r): i for i, r in enumerate(engine.rules)}
    return {where[id(sub)]: rows for r in engine.rules for sub, rows in r.joins
            if id(sub) in where}


@dataclass(slots=True)
class _Shared:
    """What the workers inherit through ``fork``."""

    rules: Sequence[EngineRule]
    units: Sequence[Unit]
    limits: Limits


_SHARED: list[_Shared] = []  # set by the parent just before forking, read by the workers


class UnitWorker:
    """An :class:`~.runner.Engine` whose aggregating rules record what they are fed instead of
    aggregating it: what a ``--jobs`` worker process, or a Spark task (``engine.sql.tasks``),
    runs over its share of the events. :meth:`run` matches a unit's events into a
    :class:`UnitResult` the parent replays (:func:`replay`)."""

    def __init__(self, rules: Sequence[EngineRule]) -> None:
        self.sink = _Sink()
        self.engine = Engine(rules)
        self.recording = _RecordingAggregators(self.engine, self.sink)
        self.engine.aggregators = self.recording
        for idx, jr in join_rows(self.engine).items():
            jr.rows = _RecordingRows(idx, self.sink)
        self.index = {id(r): i for i, r in enumerate(self.engine.rules)}

    def run(self, events: Iterable[tuple[int, Event]], out: UnitResult) -> None:
        """Findings and state records of ``(number, event)`` pairs, appended to ``out``."""
        engine, index, sink = self.engine, self.index, self.sink
        sink.records = out.state
        self.recording.new_unit()
        collected = engine.collected
        for seq, ev in events:
            out.events += 1
            sink.seq = seq
            for f in engine.match(ev):
                out.findings.append(WireFinding(index[id(f.rule)], f.event, dict(f.matched),
                                                seq))
            if collected:  # what the event gave a sequence / threshold / new-terms rule
                for idx, got in collected.items():
                    out.state.extend(StateRecord(idx, dict(fl), e, collect=True, seq=seq)
                                     for fl, e in got)
                collected.clear()


def _worker(conn: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the workers on Ctrl-C
    from ruleatlas.engine.readers import read_events

    shared = _SHARED[0]
    worker = UnitWorker(shared.rules)
    while True:
        u = conn.recv()
        if u is None:
            return
        out = UnitResult(u)
        path = shared.units[u].path
        try:
            assert path is not None
            worker.run(enumerate(read_events([path], out.errors, shared.limits, out.inputs)),
                       out)
        except Exception as exc:  # reported as this input's error, never lost
            tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
            out.errors.append(ReadError(path or "?", 0, f"worker failed: {tb}", "file"))
            out.inputs[:] = [InputRead(path or "?", out.events, len(out.errors))]
            worker.engine.collected.clear()
        conn.send(out)


# --------------------------------------------------------------------------------------------
# Parent side
# --------------------------------------------------------------------------------------------


def _lost(unit: Unit, reason: str, idx: int) -> UnitResult:
    path = unit.path or "?"
    return UnitResult(idx, errors=[ReadError(path, 0, reason, "file")],
                      inputs=[InputRead(path, 0, 1)])


class _Pool:
    """N forked workers, one pipe each (a worker that dies corrupts no shared lock); each
    worker's units are known, so the one it was reading is reported and the others handed to
    the rest."""

    def __init__(self, jobs: int, shared: _Shared) -> None:
        ctx = mp.get_context("fork")
        _SHARED[:] = [shared]
        sys.stdout.flush()  # a child flushes its copy of the buffers when it exits
        sys.stderr.flush()
        self.conns: list[Any] = []
        self.procs: list[BaseProcess] = []
        try:
            for _ in range(jobs):
                mine, theirs = ctx.Pipe()
                p = ctx.Process(target=_worker, args=(theirs,), daemon=True)
                p.start()
                theirs.close()
                self.conns.append(mine)
                self.procs.append(p)
        finally:
            _SHARED.clear()
        self.queued: list[deque[int]] = [deque() for _ in range(jobs)]
        self.dead: set[int] = set()

    def alive(self) -> list[int]:
        return [w for w in range(len(self.procs)) if w not in self.dead]

    def send(self, unit: int) -> bool:
        """Hand ``unit`` to the least busy live worker with room (False: none has room)."""
        free = [w for w in self.alive() if len(self.queued[w]) < WINDOW]
        if not free:
            return False
        w = min(free, key=lambda w: len(self.queued[w]))
        self.queued[w].append(unit)
        self.conns[w].send(unit)
        return True

    def get(self, units: Sequence[Unit]) -> tuple[list[UnitResult], list[int]]:
        """(results, units to hand out again) once something happened."""
        live = self.alive()
        if not live:
            raise _AllDead
        ready = wait([self.conns[w] for w in live] + [self.procs[w].sentinel for w in live])
        got: list[UnitResult] = []
        again: list[int] = []
        for w in live:
            c = self.conns[w]
            try:
                while c.poll():
                    r = c.recv()
                    self.queued[w].remove(r.unit)
                    got.append(r)
            except (EOFError, OSError):
                pass  # the worker is gone: its sentinel says so below
            if self.procs[w].sentinel in ready or not self.procs[w].is_alive():
                self.procs[w].join(1)
                if self.procs[w].exitcode is None:
                    continue
                self.dead.add(w)
                q = self.queued[w]
                if q:
                    u = q.popleft()  # the one it was reading
                    got.append(_lost(units[u], "worker process died (exit code "
                                               f"{self.procs[w].exitcode})", u))
                again.extend(q)
                q.clear()
        return got, again

    def stop(self) -> None:
        for w in self.alive():
            try:
                self.conns[w].send(None)
            except OSError:
                pass  # already gone; terminated below
        for p in self.procs:
            p.join(0.5)
            if p.is_alive():
                p.terminate()
                p.join(5)
        for c in self.conns:
            c.close()


class _AllDead(Exception):
    """No worker process is left."""


def run_jobs(rules: Sequence[EngineRule], paths: Sequence[str], jobs: int,
             report: Any, limits: Limits,
             progress: Callable[[int], None] | None = None) -> Iterator[Finding]:
    """Findings of ``rules`` over ``paths`` on ``jobs`` worker processes, in the order (and
    with the report) of one process; see the module docstring."""
    units = units_of(paths)
    engine = Engine(rules)
    rows = join_rows(engine)
    todo = [i for i, u in enumerate(units) if u.path is not None]
    if not todo:
        jobs = 0
    pool = _Pool(min(jobs, len(todo)), _Shared(rules, units, limits)) if jobs else None
    done: dict[int, UnitResult] = {}
    held = 0  # findings and state records in ``done``
    sent = 0
    retry: list[int] = []
    try:
        for nxt, unit in enumerate(units):
            if unit.path is None:
                report.errors.extend(unit.errors)
                report.inputs.extend(unit.read)
                continue
            while nxt not in done:
                assert pool is not None
                while retry or (sent < len(todo) and (todo[sent] <= nxt or (
                        held < BUFFERED and todo[sent] <= nxt + AHEAD * len(pool.procs)))):
                    u = retry[0] if retry else todo[sent]
                    if not pool.send(u):
                        break
                    if retry:
                        retry.pop(0)
                    else:
                        sent += 1
                try:
                    got, again = pool.get(units)
                except _AllDead:
                    got = [_lost(units[u], "no hunt worker process left (they died)", u)
                           for u in todo if u >= nxt and u not in done]
                    again = []
                retry.extend(again)
                for r in got:
                    done[r.unit] = r
                    held += len(r.findings) + len(r.state)
            r = done.pop(nxt)
            held -= len(r.findings) + len(r.state)
            report.events += r.events
            report.errors.extend(r.errors)
            report.inputs.extend(r.inputs)
            if progress is not None:
                progress(r.events)
            for w in r.findings:
                f = Finding(engine.rules[w.rule], w.event, w.matched)
                report.add(f)
                yield f
            replay(engine, rows, r.state)
    finally:
        if pool is not None:
            pool.stop()
    for f in engine.finish():
        report.add(f)
        yield f
    report.problems.extend(engine.problems)


def replay(engine: Engine, rows: dict[int, JoinRows], state: list[StateRecord]) -> None:
    """A unit's state records into the parent's aggregators and join rows, in order."""
    for s in state:
        if s.join:
            rows[s.rule].rows.append(s.row)
        elif s.collect:
            assert s.event is not None
            engine.collect(s.rule, s.row, s.event)
        else:
            engine.aggregator(s.rule).add(s.row, s.event)

