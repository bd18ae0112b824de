"""The rules' plans run by Spark's own Python workers: ``hunt --engine spark`` (``--spark-mode
plans``, the default).

Spark SQL evaluates every rule routed to an event kind on every row of it (``--spark-mode
sql``, :mod:`.backend`); the local backend first asks its literal pre-filter which few rules an
event can match (:class:`~ruleatlas.engine.matcher.Prefilter`), which on the OTRF corpus is
about two candidate rules per event instead of hundreds. This module lets Spark schedule the
local backend instead:

1. **Shipping.** The driver pickles the runnable rules' plans (:class:`~..plan.RulePlan`, frozen
   data, no closures: ``EngineRule.source``) once, as the catalog's plan cache does
   (:func:`~..plans.dumps`, read back by :func:`~..plans.loads`), and broadcasts them. Each
   Python worker builds one :class:`~..jobs.UnitWorker` (an :class:`~..runner.Engine` whose
   aggregating rules record what they are fed) per shipped catalog and keeps it across its
   tasks (:data:`~ruleatlas.caching.SPARK_TASK_ENGINES`), so the matchers compile once per
   worker.
2. **Tasks.** Spark reads the converted folder's files as they are (the ``binaryFile``
   source: any URI Spark reads) and shares them out; each task reads its files with Arrow,
   each with its own few columns (:func:`.columnar.file_events`; Spark's merged schema of
   every kind's fields, hundreds of columns, cost more to build as rows than the whole hunt),
   the worker matches them and sends back one pickled, compressed :class:`FileResult` per file: the
   findings (rule number, event, matched fields, the event's ``_seq``) and the state records of
   the aggregating, joining and collecting rules.
3. **The driver** orders the findings by ``_seq`` (the order the local engine reads the same
   inputs), replays the state records in ``_seq`` order into its own Engine's aggregators
   (:func:`~..jobs.replay`, as ``--jobs`` does) and yields :meth:`~..runner.Engine.finish`'s
   findings last: the findings, and their order, are the local engine's.

Every rule runs this way, Splunk ``eval``/``rex``/``tstats`` and Elastic rules included; none
falls back to the driver. The cost: each worker reads its rows into Python (about the local
readers' cost), and the state records of aggregating rules travel to the driver.
"""

from __future__ import annotations

import gc
import hashlib
import pickle
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import pyarrow as pa

from ruleatlas.caching import SPARK_TASK_ENGINES, BoundedCache
from ruleatlas.engine.events import InputRead, ReadError
from ruleatlas.engine.jobs import UnitResult, UnitWorker, join_rows, replay
from ruleatlas.engine.plan import RulePlan
from ruleatlas.engine.plans import dumps, loads
from ruleatlas.engine.runner import Engine, EngineRule, Finding, engine_rule
from ruleatlas.engine.sql.columnar import dir_kind, file_events
from ruleatlas.limits import LimitError, Limits, fmt_size

RESULT_SCHEMA = "size long, payload binary"  # a FileResult, pickled and its size
# A file's result travels pickled and compressed: the findings carry their events, whose
# values repeat (the OTRF corpus's 28,182 findings: 50 MB pickled, 2.1 MB compressed in 0.04 s),
# and every byte crosses the JVM twice on its way to the driver.
CODEC = "zstd"
# The SQL mode reads 1 GB splits (each of its tasks deserialises a huge plan); a task here is
# cheap to start, and Spark's default 128 MB splits (each file counted 4 MB more) give tens of
# tasks on a few hundred MB, so a slow one leaves the other cores little idle time.
SPLIT_CONF, SPLIT = "spark.sql.files.maxPartitionBytes", "128m"
GLOBS = {"parquet": "*.parquet", "jsonl": "*.{jsonl,json}"}


@dataclass(frozen=True, slots=True)
class Shipped:
    """The rules' plans as the driver broadcasts them: pickled once, named by their digest."""

    digest: str
    body: bytes


def ship(rules: Sequence[EngineRule]) -> Shipped:
    """The plans of the runnable ``rules`` (a lazy rule's body is read here), in order."""
    plans: list[RulePlan] = []
    for er in rules:
        if not er.runnable:
            continue
        src = er.ready().source
        if src is None:
            raise ValueError(f"rule {er.rule.id} was not made from a plan: it cannot be shipped")
        plans.append(src)
    body = pickle.dumps([dumps(p) for p in plans], protocol=pickle.HIGHEST_PROTOCOL)
    return Shipped(hashlib.blake2b(body, digest_size=16).hexdigest(), body)


_WORKERS: BoundedCache[str, UnitWorker] = BoundedCache(SPARK_TASK_ENGINES)


def unit_worker(digest: str, body: Callable[[], bytes]) -> UnitWorker:
    """This process's worker for the shipped catalog ``digest`` (built on first use)."""
    got = _WORKERS.get(digest)
    if got is None:
        plans = [loads(b, RulePlan) for b in pickle.loads(body())]
        got = _WORKERS.put(digest, UnitWorker([engine_rule(p) for p in plans]))
        settle()
    return got


def settle() -> None:
    """What this worker keeps (the rules, their compiled groups and caches) out of every later
    collection, as the command line does for ``hunt``: without it the collector walks the
    whole catalog again and again while events come and go (measured on the OTRF corpus in
    ``local[1]``: 57 s a run, 38 s with it)."""
    gc.collect()
    gc.freeze()


@dataclass(frozen=True, slots=True)
class FileResult:
    """What a task found in one file of the converted folder."""

    path: str
    kind: str  # its ``_kind=`` partition ("" when the path has none)
    result: UnitResult


def local_path(uri: str) -> str:
    """A ``file:`` URI as Spark's ``binaryFile`` names it (``file:/tmp/x``, the path itself,
    not percent-encoded) as that path; others as they are (``hdfs://...``)."""
    if uri.startswith("file://"):
        return uri[len("file://"):]
    return uri[len("file:"):] if uri.startswith("file:") else uri


def _kind_of(path: str) -> str:
    """The kind of the nearest ``_kind=`` folder of ``path`` ("" when none)."""
    for part in reversed(path.split("/")[:-1]):
        kind = dir_kind(part)
        if kind is not None:
            return kind
    return ""


def task(digest: str, body: Callable[[], bytes], max_bytes: int
         ) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The function ``mapInArrow`` runs on each partition of ``(path, content)`` rows: one
    result row per file. A file that cannot be read is its own read error; the task goes on."""
    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        worker = unit_worker(digest, body)
        for batch in batches:
            contents = batch.column("content")
            for i, uri in enumerate(batch.column("path").to_pylist()):
                path = local_path(uri)
                out = UnitResult(0)
                try:
                    worker.run(file_events(path, contents[i].as_buffer(), max_bytes), out)
                except LimitError as exc:
                    out.errors.append(ReadError(path, 0, exc.message, "file"))
                except (OSError, ValueError, KeyError, pa.ArrowException) as exc:
                    out.errors.append(ReadError(path, 0, f"not a file of the columnar "
                                                f"layout: {exc}", "file"))
                    worker.engine.collected.clear()
                out.inputs.append(InputRead(path, out.events, len(out.errors)))
                payload = pickle.dumps(FileResult(path, _kind_of(path), out),
                                       protocol=pickle.HIGHEST_PROTOCOL)
                yield pa.record_batch([pa.array([len(payload)], pa.int64()),
                                       pa.array([pa.compress(payload, codec=CODEC,
                                                             asbytes=True)], pa.binary())],
                                      names=["size", "payload"])
        settle()  # the groups and matchers this task compiled stay for the next ones
    return run


def start_workers(spark: Any) -> None:
    """Start the session's Python workers (one job of one empty task per core, each importing
    this module), so that their start (Python, PySpark's Arrow path with pandas, ruleatlas:
    about 3 s on the bench machine) is reported with the JVM's, apart from the hunt."""
    n = max(1, int(spark.sparkContext.defaultParallelism))
    spark.range(n, numPartitions=n).mapInArrow(_started, "n long").collect()


def _started(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    import ruleatlas.engine.sql.tasks  # noqa: F401  (what a hunt's tasks import)

    yield pa.record_batch([pa.array([sum(b.num_rows for b in batches)], pa.int64())],
                          names=["n"])


def run_on_spark(spark: Any, uris: Sequence[str], fmt: str, rules: Sequence[EngineRule],
                 limits: Limits | None = None) -> list[FileResult]:
    """Every file's :class:`FileResult` of ``rules`` over the converted folders (or files) at
    ``uris`` (``fmt``: ``parquet`` or ``jsonl``). A file over ``columnar_file_bytes`` is a read
    error, its content never read (Spark filters on ``length`` before reading it); a file of 0
    bytes, which Spark never hands to a task, is one too. When files of the listing do not come
    back, one more job finds the sizes of those over the limit."""
    from pyspark.sql import functions as F

    cap = (limits or Limits.from_env()).columnar_file_bytes
    shipped = ship(rules)
    sc = spark.sparkContext
    bc = sc.broadcast(shipped.body)
    conf = spark.conf
    before = conf.get(SPLIT_CONF)
    conf.set(SPLIT_CONF, SPLIT)  # small splits: tasks of a few MB share the cores evenly
    try:
        files = (spark.read.format("binaryFile").option("pathGlobFilter", GLOBS[fmt])
                 .load(list(uris)))
        out = (files.where(F.col("length") <= cap).select("path", "content")
               .mapInArrow(task(shipped.digest, lambda: bc.value, cap), RESULT_SCHEMA))
        with ThreadPoolExecutor(1) as pool:
            listed = pool.submit(files.inputFiles)  # the driver asks while the tasks run
            got = [_result(r[0], r[1]) for r in out.collect()]
        missing = {local_path(unquote(u)) for u in listed.result()} - {fr.path for fr in got}
        if missing:  # files over the limit, and empty ones (Spark reads no 0-byte file)
            over = {local_path(r[0]): r[1] for r in
                    files.where(F.col("length") > cap).select("path", "length").collect()}
            got += [FileResult(p, _kind_of(p), _too_big(p, over[p], cap) if p in over
                               else _unread(p, "empty file (0 bytes)")) for p in sorted(missing)]
        return got
    finally:
        conf.set(SPLIT_CONF, before)
        bc.unpersist()


def _result(size: int, payload: bytes) -> FileResult:
    return pickle.loads(pa.decompress(payload, decompressed_size=size, codec=CODEC,
                                      asbytes=True))


def _too_big(path: str, size: int, cap: int) -> UnitResult:
    return _unread(path, f"converted file exceeds {fmt_size(cap)} ({size} bytes)")


def _unread(path: str, reason: str) -> UnitResult:
    """The result of a file no task read: its read error, and the input it counts as."""
    out = UnitResult(0, errors=[ReadError(path, 0, reason, "file")])
    out.inputs.append(InputRead(path, 0, 1))
    return out


def merge(rules: Sequence[EngineRule], results: Sequence[UnitResult], problems: list[Any]
          ) -> Iterator[Finding]:
    """The local engine's findings, in its order, from the tasks' results (see the module
    docstring); the replaying Engine's problems (a collecting rule stopped) go to
    ``problems``."""
    engine = Engine(rules)
    rows = join_rows(engine)
    wire = sorted((w for r in results for w in r.findings), key=lambda w: w.seq)
    for w in wire:
        yield Finding(engine.rules[w.rule], w.event, w.matched)
    replay(engine, rows, sorted((s for r in results for s in r.state), key=lambda s: s.seq))
    yield from engine.finish()
    problems.extend(engine.problems)
