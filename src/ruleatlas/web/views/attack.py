"""``/attack``: the ATT&CK Enterprise matrix coloured by rule count, per source, and
``/attack/navigator.json``: the same counts as an ATT&CK Navigator layer."""

from __future__ import annotations

from typing import Any

from ruleatlas.store import matrix
from ruleatlas.web.params import Param
from ruleatlas.web.views import Ctx, Page

PARAMS: dict[str, Param] = {
    "source": Param("only rules of this source", max_len=40),
}


def build_attack(ctx: Ctx) -> dict[str, Any]:
    m = matrix.attack_matrix(ctx.catalog.conn, ctx.args["source"])
    m.pop("counts")
    m.pop("names")
    return {"matrix": m}


def build_navigator(ctx: Ctx) -> dict[str, Any]:
    src = ctx.args["source"]
    m = matrix.attack_matrix(ctx.catalog.conn, src)
    counts, names = m["counts"], m["names"]
    techniques = [
        {
            "techniqueID": t,
            "score": n,
            "comment": f"{n} rule{'s' if n != 1 else ''}" + (f" ({src})" if src else ""),
            "enabled": True,
            "showSubtechniques": False,
        }
        for t, n in sorted(counts.items())
        if t in names or not names
    ]
    return {
        "name": "Rule Atlas" + (f" ({src})" if src else ""),
        "versions": {"attack": "18", "navigator": "5.1.0", "layer": "4.5"},
        "domain": "enterprise-attack",
        "description": "Detection rules per technique, from the Rule Atlas catalog"
        + (f", source {src}" if src else ""),
        "sorting": 3,
        "hideDisabled": False,
        "techniques": techniques,
        "gradient": {"colors": ["#ffffff", "#66b1ff", "#08306b"], "minValue": 0,
                     "maxValue": max(counts.values(), default=1)},
        "legendItems": [],
        "showTacticRowBackground": False,
        "selectTechniquesAcrossTactics": True,
        "selectSubtechniquesWithParent": False,
    }


PAGES = [
    Page("attack", "/attack", "attack.html", build_attack,
         "ATT&CK Enterprise matrix: techniques and sub-techniques per tactic with rule counts.",
         params=PARAMS, title=lambda d: "ATT&CK coverage", cache=True),
    Page("navigator", "/attack/navigator.json", None, build_navigator,
         "ATT&CK Navigator layer (JSON) of the rule counts for the current filter.",
         params=PARAMS, api=False, cache=True),
]
