"""``/macros``: Splunk macros, their definitions and how many rules use them;
``/macros/{name}``: one macro (all arities) and the rules that call it."""

from __future__ import annotations

from typing import Any

from ruleatlas.store import listings
from ruleatlas.web.params import WebError
from ruleatlas.web.views import Ctx, Page


def build_macros(ctx: Ctx) -> dict[str, Any]:
    return {"macros": listings.macros(ctx.catalog)}


def build_macro(ctx: Ctx) -> dict[str, Any]:
    name = ctx.path["name"]
    rows = listings.macros(ctx.catalog, name)
    if not rows:
        raise WebError(404, f"no macro named {name[:80]!r}")
    return {"name": name, "macros": rows}


PAGES = [
    Page("macros", "/macros", "macros.html", build_macros,
         "Splunk macros: definition, arguments, number of rules using each.",
         title=lambda d: "Macros", cache=True),
    Page("macro", "/macros/{name:path}", "macro.html", build_macro,
         "One Splunk macro (every arity) and the rules that use it.",
         path_params={"name": "macro name"}, title=lambda d: f"Macro {d['name']}"),
]
