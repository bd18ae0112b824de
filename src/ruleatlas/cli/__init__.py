"""Command line: ``ruleatlas <command>``. One module per area registers its commands on ``app``.

catalog.py: build, stats, list, show, search, errors, sync; indicators.py: indicators,
indicator, similar; web.py: serve, export-site; engine.py: test, hunt; twins.py: twins; convert.py:
convert; mcp.py: mcp.
"""

from __future__ import annotations

from ruleatlas.cli import catalog as _catalog  # noqa: F401
from ruleatlas.cli import convert as _convert  # noqa: F401
from ruleatlas.cli import engine as _engine  # noqa: F401
from ruleatlas.cli import indicators as _indicators  # noqa: F401
from ruleatlas.cli import mcp as _mcp  # noqa: F401
from ruleatlas.cli import twins as _twins  # noqa: F401
from ruleatlas.cli import web as _web  # noqa: F401
from ruleatlas.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
