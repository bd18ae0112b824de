"""Parse errors and locations, kept importable here for code written against the SPL package;
they live in :mod:`ruleatlas.languages.parsing`, shared by every query language."""

from __future__ import annotations

from ruleatlas.languages.parsing import ParseError, line_col, span_of

__all__ = ["ParseError", "line_col", "span_of"]
