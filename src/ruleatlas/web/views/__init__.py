"""Pages of the web catalog: one module per page, each a list of :class:`Page` entries.

A page is a pure ``build(ctx) -> dict`` plus a template: the same dict is the HTML page's
context and, with ``ok: true``, the JSON twin under ``/api`` (Datasette's pattern), so the two can
never disagree. ``PAGES`` is the registry the app, the OpenAPI description, the export and the
tests all walk.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ruleatlas.store import Catalog
from ruleatlas.web.params import Param


@dataclass(frozen=True, slots=True)
class Ctx:
    """What a page builder gets: the catalog (read-only), path parameters, validated query."""

    catalog: Catalog
    path: Mapping[str, str]
    args: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Page:
    name: str
    path: str
    template: str | None
    build: Callable[[Ctx], dict[str, Any]]
    summary: str
    params: Mapping[str, Param] = field(default_factory=dict)
    path_params: Mapping[str, str] = field(default_factory=dict)  # name -> help
    api: bool = True  # has a JSON twin under /api
    title: Callable[[dict[str, Any]], str] | None = None
    # Catalog-wide pages (matrix, events, macros, ...) are the same for every visitor and the
    # catalog is read-only while served: their responses are memoised per URL.
    cache: bool = False


def all_pages() -> list[Page]:
    from ruleatlas.web.views import attack, events, home, indicators, macros, rule, rules, stories

    pages: list[Page] = []
    for mod in (home, rules, rule, indicators, attack, events, macros, stories):
        pages.extend(mod.PAGES)
    return pages
