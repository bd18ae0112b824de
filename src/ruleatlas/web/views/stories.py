"""``/stories``: analytic stories with rule counts; ``/stories/{name}``: one story."""

from __future__ import annotations

from typing import Any

from ruleatlas.store import listings
from ruleatlas.web.params import WebError
from ruleatlas.web.views import Ctx, Page


def build_stories(ctx: Ctx) -> dict[str, Any]:
    return {"stories": listings.stories(ctx.catalog)}


def build_story(ctx: Ctx) -> dict[str, Any]:
    rows = listings.stories(ctx.catalog, ctx.path["name"])
    if not rows:
        raise WebError(404, f"no story named {ctx.path['name'][:80]!r}")
    return {"story": rows[0]}


PAGES = [
    Page("stories", "/stories", "stories.html", build_stories,
         "Analytic stories and how many rules belong to each.", title=lambda d: "Stories",
         cache=True),
    Page("story", "/stories/{name:path}", "story.html", build_story,
         "One analytic story: description, narrative, references and its rules.",
         path_params={"name": "story name"}, title=lambda d: str(d["story"]["name"])),
]
