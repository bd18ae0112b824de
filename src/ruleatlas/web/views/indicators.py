"""``/indicators``: the explorer (most common and rarest values per field) and
``/indicators/{field}/{key}``: every rule with one indicator, grouped by source."""

from __future__ import annotations

from typing import Any

from ruleatlas.store import indicators
from ruleatlas.web.params import Int, Param, WebError
from ruleatlas.web.views import Ctx, Page

EXPLORER_PARAMS: dict[str, Param] = {
    "field": Param("canonical field name; all busy fields when absent", max_len=200),
    "limit": Int("values listed per field and end", lo=1, hi=100, default=10),
}


def build_explorer(ctx: Ctx) -> dict[str, Any]:
    f = ctx.args["field"]
    return {
        "field": f,
        "fields": [[n, c] for n, c in indicators.indicator_fields(ctx.catalog.conn, 200)],
        "explorer": indicators.indicator_explorer(ctx.catalog.conn, f, per_field=ctx.args["limit"]),
    }


def build_indicator(ctx: Ctx) -> dict[str, Any]:
    field, key = ctx.path["field"], ctx.path["key"]
    if len(key) > 4000 or len(field) > 200:
        raise WebError(400, "indicator field or key too long")
    data = indicators.indicator_page(ctx.catalog.conn, field, key)
    if not data["total"]:
        raise WebError(404, f"no rule has the indicator {field} = {key[:80]!r}")
    return {"indicator": data}


PAGES = [
    Page("indicators", "/indicators", "indicators.html", build_explorer,
         "Indicator explorer: the most common and the rarest indicator values per field.",
         params=EXPLORER_PARAMS, title=lambda d: "Indicators", cache=True),
    Page("indicator", "/indicators/{field}/{key:path}", "indicator.html", build_indicator,
         "All rules with one indicator (canonical field and normalised value key), by source.",
         path_params={"field": "canonical field", "key": "normalised value key"},
         title=lambda d: f"{d['indicator']['field']} = {d['indicator']['key']}"),
]
