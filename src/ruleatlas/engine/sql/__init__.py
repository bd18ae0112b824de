"""SQL backends of the engine: predicate trees compiled to Spark SQL and DuckDB (docs/spark.md).

``compiler`` (trees -> sqlglot expressions, one class per dialect), ``regex`` (Python ``re`` ->
Java / RE2), ``columnar`` (events -> Parquet, ``ruleatlas convert``), ``backend`` (routing,
one query per run), ``spark`` and ``duckdb`` (the runners).
"""

from __future__ import annotations

from ruleatlas.engine.sql.compiler import (
    COMPILERS,
    Compiled,
    DuckDBCompiler,
    PredicateCompiler,
    SparkCompiler,
    Table,
)

__all__ = ["COMPILERS", "Compiled", "DuckDBCompiler", "PredicateCompiler", "SparkCompiler",
           "Table"]
