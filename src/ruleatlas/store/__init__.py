"""The catalog store: the only package that imports ``sqlite3``.

``Catalog`` (``catalog.py``) opens, migrates and reads the catalog file; ``search.py`` answers
browse/search queries; ``writer.py`` holds the writes of a build; ``codec.py`` keeps whole Rule
records as JSON. Sibling modules owned by other areas: ``indicators.py``, ``browse.py``,
``results.py``.
"""

from __future__ import annotations

from ruleatlas.store.catalog import (
    SCHEMA_VERSION,
    Catalog,
    CatalogError,
    DataSourceRow,
    ErrorRow,
    EventCoverage,
    MacroRow,
    RuleNotFound,
    StoredRule,
    StoryRow,
    TechniqueCoverage,
    TestResultRow,
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
    "SCHEMA_VERSION",
    "Catalog",
    "CatalogError",
    "DataSourceRow",
    "ErrorRow",
    "EventCoverage",
    "MacroRow",
    "RuleNotFound",
    "RulePage",
    "RuleQuery",
    "RuleSummary",
    "SearchError",
    "StoredRule",
    "StoryRow",
    "TechniqueCoverage",
    "TestResultRow",
    "fts_query",
]
