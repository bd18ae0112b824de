"""Apache Spark: the session, and the backend :mod:`.hunt` drives. The columnar events
(:mod:`.columnar`) are read from any URI Spark reads (local paths, ``hdfs://``, ``s3a://``,
``abfss://``); ``--spark-mode sql`` runs the rules compiled by :mod:`.compiler` as one query
per chunk (:mod:`.backend`), ``--spark-mode plans`` the plans in the Python workers
(:mod:`.tasks`).

The session: ``master`` (``--spark-master`` / ``SPARK_MASTER``, default ``local[*]``), no UI,
quiet logs, case-sensitive column names (field names are case-sensitive in the local engine),
partition values kept as strings. :func:`start` reports the JVM start apart from the run.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ruleatlas.engine.sql.backend import VIEW
from ruleatlas.engine.sql.columnar import EPOCH, KIND_COLUMN, SEQ

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
    # every task deserialises its select's plan (thousands of rule expressions): a profile of
    # the first corpus run showed the executor spending its time in ObjectInputStream, one task
    # per 128 MB of (mostly small) files. Bigger splits: about one task per core per select
    "spark.sql.files.maxPartitionBytes": "1g",
}
LOG_CONFIG = Path(__file__).with_name("log4j2.properties")


def under_spark_submit() -> bool:
    """Launched by ``spark-submit`` (or a notebook's gateway): the JVM, its master and its
    configuration are already given."""
    return bool(os.environ.get("PYSPARK_GATEWAY_PORT")) and not os.environ.get("SPARK_MASTER")


def master_url(master: str | None = None) -> str:
    return master or os.environ.get("SPARK_MASTER") or DEFAULT_MASTER


# ``--spark-mode plans`` on one machine: the JVM lists, reads and forwards files while Python
# matches. Its C2 compiler threads then cost more than they give: in a 25 s hunt of the OTRF
# corpus in ``local[2]`` they took 10 s of CPU, 5 s of it during the tasks, beside the two
# Python workers; with the C1 compiler alone the JVM took 4 s in the tasks, not 11 s.
PLANS_LOCAL_JAVA = ("-XX:TieredStopAtLevel=1",)


def start(master: str | None = None, conf: dict[str, str] | None = None,
          java: Sequence[str] = ()) -> tuple[Any, float]:
    """A SparkSession (or the active one) and the seconds its JVM took to start; ``java``: more
    options of the driver's JVM (the executors' too in local mode)."""
    from pyspark.sql import SparkSession

    t0 = time.perf_counter()
    b = SparkSession.builder.appName("ruleatlas")
    if master or not under_spark_submit():  # spark-submit's --master stands unless overridden
        b = b.master(master_url(master))
    options = " ".join((f"-Dlog4j2.configurationFile={LOG_CONFIG.as_uri()}", *java))
    quiet = {"spark.driver.extraJavaOptions": options}
    if master_url(master).startswith("local"):
        # one machine: list a converted folder's kind directories on the driver, not in a
        # listing job (2 s of the OTRF corpus's 319; a cluster on object storage keeps it)
        quiet["spark.sql.sources.parallelPartitionDiscovery.threshold"] = "100000"
    if master_url(master).startswith("local") and not os.environ.get("PYSPARK_PYTHON"):
        # local mode: the Python workers (``--spark-mode plans``) run this interpreter, which
        # has ruleatlas (PySpark reads the variable when it starts the context); on a cluster
        # the executors' Python is the cluster's (docs/spark.md)
        os.environ["PYSPARK_PYTHON"] = sys.executable
    for k, v in {**CONF, **quiet, **(conf or {})}.items():
        b = b.config(k, v)
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark, time.perf_counter() - t0


def read(spark: Any, uri: str | Sequence[str], fmt: str = "parquet") -> Any:
    """The events DataFrame: Parquet (schemas merged across files) or JSON lines (every value
    read as a string, lists as arrays; the typed meta columns cast back), both in the
    ``_kind=...`` partition layout."""
    paths = [uri] if isinstance(uri, str) else list(uri)
    if fmt == "jsonl":
        df = spark.read.option("primitivesAsString", "true").json(paths)
        for name, typ in JSON_TYPES.items():
            if name in df.columns:
                df = df.withColumn(name, df[name].cast(typ))
        return df
    return spark.read.option("mergeSchema", "true").parquet(*paths)


JSON_TYPES = {"_position": "bigint", SEQ: "bigint", EPOCH: "double"}


class SparkBackend:
    """The runner :mod:`.hunt` drives: the events at ``uri`` as the view ``events``."""

    name = "spark"
    dialect = "spark"

    def __init__(self, spark: Any) -> None:
        self.spark = spark
        self.df: Any = None

    def attach(self, uri: str | Sequence[str], fmt: str) -> tuple[list[str], dict[str, int]]:
        """The table's columns and its events per kind (one small job)."""
        self.df = read(self.spark, uri, fmt)
        self.df.createOrReplaceTempView(VIEW)
        counts = self.df.groupBy(KIND_COLUMN).count().collect()
        return list(self.df.columns), {r[0]: int(r[1]) for r in counts}

    def event_rows(self, queries: Sequence[str]) -> list[tuple[str, int, int, int]]:
        """Every event query's rows: the queries in ``threads()`` unions, each one job, planned
        and run side by side (the driver plans a query on one core; Catalyst's planning of
        the wide selects is most of the time)."""
        rows = self._parallel([self._union(part) for part in self._split(queries)])
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def agg_rows(self, queries: Sequence[str]) -> list[list[dict[str, Any]]]:
        """Each aggregation query's rows; all of them as one union of ``(query number, row as
        JSON)`` (one job per thread instead of one per rule)."""
        import json

        wrapped = [f"SELECT {i} AS _q, TO_JSON(STRUCT(*)) AS _row FROM ({q}) AS _a"
                   for i, q in enumerate(queries)]
        out: list[list[dict[str, Any]]] = [[] for _ in queries]
        frames = [self._union(part) for part in self._split(wrapped)]
        for r in self._parallel(frames):
            out[r[0]].append(json.loads(r[1]))
        return out

    def threads(self) -> int:
        return max(1, int(self.spark.sparkContext.defaultParallelism))

    def _split(self, queries: Sequence[str]) -> list[list[str]]:
        n = min(self.threads(), len(queries))
        return [list(queries[i::n]) for i in range(n)] if n else []

    def _union(self, queries: Sequence[str]) -> Any:
        frames = [self.spark.sql(q) for q in queries]
        df = frames[0]
        for f in frames[1:]:
            df = df.unionAll(f)
        return df

    def _parallel(self, frames: Sequence[Any]) -> list[Any]:
        from concurrent.futures import ThreadPoolExecutor

        if len(frames) <= 1:
            return [r for f in frames for r in f.collect()]
        with ThreadPoolExecutor(len(frames)) as pool:
            return [r for rows in pool.map(lambda f: f.collect(), frames) for r in rows]

    def rows(self, sql: str) -> list[dict[str, Any]]:
        return [r.asDict() for r in self.spark.sql(sql).collect()]

    def fetch(self, kinds: Sequence[str],
              keys: Sequence[tuple[str, int]]) -> Iterator[dict[str, Any]]:
        """The rows of ``kinds`` and the rows at ``keys`` (file, position), in ``_seq`` order,
        streamed to the driver."""
        from pyspark.sql import functions as F

        parts = []
        if kinds:
            parts.append(self.df.where(F.col(KIND_COLUMN).isin(list(kinds))))
        if keys:
            want = self.spark.createDataFrame(list(keys), "_file string, _position bigint")
            parts.append(self.df.join(F.broadcast(want), ["_file", "_position"], "left_semi"))
        if not parts:
            return iter(())
        df = parts[0] if len(parts) == 1 else parts[0].unionByName(parts[1]).dropDuplicates(
            ["_file", "_position"])
        return (r.asDict(recursive=True) for r in df.orderBy(SEQ).toLocalIterator())
