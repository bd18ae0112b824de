"""``/events``: the events and data sources the catalog covers, rule counts per source."""

from __future__ import annotations

from typing import Any

from ruleatlas.store import listings
from ruleatlas.web.views import Ctx, Page


def build_events(ctx: Ctx) -> dict[str, Any]:
    return {"coverage": listings.event_coverage(ctx.catalog)}


PAGES = [
    Page("events", "/events", "events.html", build_events,
         "Event coverage: event channels/ids and data sources with rule counts per source.",
         title=lambda d: "Event coverage", cache=True),
]
