"""The MCP server (``ruleatlas mcp``): the catalog as read-only tools for an assistant.

``server.py`` holds the tools (:class:`Atlas`), their limits (``LIMITS``) and
:func:`create_server`; ``results.py`` their typed results. See docs/mcp.md.
"""

from __future__ import annotations

from ruleatlas.mcp.server import LIMITS, TOOLS, Atlas, Limits, create_server

__all__ = ["LIMITS", "TOOLS", "Atlas", "Limits", "create_server"]
