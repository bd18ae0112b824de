"""Event-level rules on Apache Spark: the columnar events (:mod:`.columnar`) read from any URI
Spark reads (local paths, ``hdfs://``, ``s3a://``, ``abfss://``), the catalog's rules compiled
by :mod:`.compiler` into one query (:mod:`.backend`), findings collected on the driver.

The session: ``master`` (``--spark-master`` / ``SPARK_MASTER``, default ``local[*]``), no UI,
quiet logs, case-sensitive column names (field names are case-sensitive in the local engine),
partition values kept as strings. :func:`start` reports the JVM start apart from the run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruleatlas.engine.runner import EngineRule
from ruleatlas.engine.sql.backend import VIEW, SqlFinding, SqlPlan, findings, plan_queries
from ruleatlas.engine.sql.columnar import KIND_COLUMN

DEFAULT_MASTER = "local[*]"
CONF: dict[str, str] = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.caseSensitive": "true",
    "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
    "spark.sql.shuffle.partitions": "8",
    # whole-stage codegen inlines every rule of a select into one method, which overflows
    # 64 KB and falls back (a first bench run spent minutes compiling classes it then threw
    # away); per-expression codegen splits long projections into methods
    "spark.sql.codegen.wholeStage": "false",
}
LOG_CONFIG = Path(__file__).with_name("log4j2.properties")


@dataclass(slots=True)
class SparkRun:
    findings: list[SqlFinding] = field(default_factory=list)
    plan: SqlPlan = field(default_factory=SqlPlan)
    read_seconds: float = 0.0
    compile_seconds: float = 0.0
    run_seconds: float = 0.0


def master_url(master: str | None = None) -> str:
    return master or os.environ.get("SPARK_MASTER") or DEFAULT_MASTER


def start(master: str | None = None, conf: dict[str, str] | None = None) -> tuple[Any, float]:
    """A SparkSession (or the active one) and the seconds its JVM took to start."""
    from pyspark.sql import SparkSession

    t0 = time.perf_counter()
    b = SparkSession.builder.master(master_url(master)).appName("ruleatlas")
    quiet = {"spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile={LOG_CONFIG.as_uri()}"}
    for k, v in {**CONF, **quiet, **(conf or {})}.items():
        b = b.config(k, v)
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark, time.perf_counter() - t0


def read(spark: Any, uri: str | Sequence[str], fmt: str = "parquet") -> Any:
    """The events DataFrame: Parquet (schemas merged across files) or JSON lines (every value
    read as a string, lists as arrays), both in the ``_kind=...`` partition layout."""
    paths = [uri] if isinstance(uri, str) else list(uri)
    if fmt == "jsonl":
        return spark.read.option("primitivesAsString", "true").json(paths)
    return spark.read.option("mergeSchema", "true").parquet(*paths)


def hunt(spark: Any, rules: Sequence[EngineRule], uri: str | Sequence[str],
         fmt: str = "parquet") -> SparkRun:
    """Findings of the event-level rules over the events at ``uri``; the rest falls back."""
    run = SparkRun()
    t0 = time.perf_counter()
    df = read(spark, uri, fmt)
    return hunt_df(spark, rules, df, run, t0)


def hunt_df(spark: Any, rules: Sequence[EngineRule], df: Any, run: SparkRun | None = None,
            t0: float | None = None) -> SparkRun:
    run = run or SparkRun()
    t0 = time.perf_counter() if t0 is None else t0
    df.createOrReplaceTempView(VIEW)
    kinds = [r[0] for r in df.select(KIND_COLUMN).distinct().collect()]
    t1 = time.perf_counter()
    run.read_seconds = t1 - t0
    run.plan = plan_queries(rules, df.columns, kinds, "spark")
    t2 = time.perf_counter()
    run.compile_seconds = t2 - t1
    if run.plan.queries:  # every chunk's select in one union: one job
        frames = [spark.sql(q) for q in run.plan.queries]
        df_all = frames[0]
        for f in frames[1:]:
            df_all = df_all.unionAll(f)
        rows = df_all.collect()
        run.findings.extend(findings(run.plan, ((r[0], r[1], r[2]) for r in rows)))
    run.run_seconds = time.perf_counter() - t2
    return run
