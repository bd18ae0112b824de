"""CLI commands: indicators."""

from __future__ import annotations

from ruleatlas.cli.app import app  # noqa: F401
