"""``/``: what the catalog holds, and where to go from here."""

from __future__ import annotations

from typing import Any

from ruleatlas.store import listings
from ruleatlas.web.views import Ctx, Page


def build_home(ctx: Ctx) -> dict[str, Any]:
    return {"overview": listings.overview(ctx.catalog.conn)}


PAGES = [
    Page("home", "/", "home.html", build_home, "Catalog overview: rule counts per source.",
         title=lambda d: "Rule Atlas", cache=True),
]
