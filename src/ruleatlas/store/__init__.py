"""The catalog store: the only package that imports ``sqlite3``.

One module per concern, one implementation of each:

* ``connection.py`` — opening the file (read-only ``mode=ro`` or for writing), the per-thread
  ``ReadPool`` of the web server, the catalog ``generation`` caches are keyed on;
* ``catalog.py`` — ``Catalog``: schema and migrations, ``StoredRule``, per-rule and
  catalog-wide reads;
* ``resolve.py`` — the one rule resolver (id, unique title, unique id prefix; bounded length);
* ``search.py`` — the one search (FTS5 text, filters, sorts, facets) and its FTS query builder;
* ``indicators.py`` — indicator rows, corpus counts, the indicator pages, similar rules;
* ``listings.py`` — overview, event coverage, macros and stories pages;
* ``matrix.py`` — the ATT&CK matrix and Navigator counts;
* ``export_index.py`` — the exported site's rule list and search index;
* ``results.py`` — the engine's test results and the rules it loads;
* ``writer.py`` — the writes of a build; ``codec.py`` — Rule records as JSON.
"""

from __future__ import annotations

from ruleatlas.store.catalog import (
    SCHEMA_VERSION,
    Catalog,
    DataSourceRow,
    ErrorRow,
    EventCoverage,
    MacroRow,
    StoredRule,
    StoryRow,
    TechniqueCoverage,
    TestResultRow,
)
from ruleatlas.store.connection import (
    CatalogError,
    QueryTimeout,
    ReadPool,
    catalog_generation,
)
from ruleatlas.store.resolve import (
    MAX_REF_LEN,
    AmbiguousRule,
    BadRuleReference,
    RuleNotFound,
)
from ruleatlas.store.search import (
    HL_END,
    HL_START,
    RulePage,
    RuleQuery,
    RuleSummary,
    SearchError,
    fts_query,
)

__all__ = [
    "HL_END",
    "HL_START",
    "MAX_REF_LEN",
    "SCHEMA_VERSION",
    "AmbiguousRule",
    "BadRuleReference",
    "Catalog",
    "CatalogError",
    "DataSourceRow",
    "ErrorRow",
    "EventCoverage",
    "MacroRow",
    "QueryTimeout",
    "ReadPool",
    "RuleNotFound",
    "RulePage",
    "RuleQuery",
    "RuleSummary",
    "SearchError",
    "StoredRule",
    "StoryRow",
    "TechniqueCoverage",
    "TestResultRow",
    "catalog_generation",
    "fts_query",
]
