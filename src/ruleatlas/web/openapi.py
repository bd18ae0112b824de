"""``/api/openapi.json``: an OpenAPI 3.1 description generated from the page registry, so a
new page is documented the moment it is registered."""

from __future__ import annotations

import re
from typing import Any

from ruleatlas import __version__
from ruleatlas.web.views import Page

ERROR_SCHEMA = {
    "type": "object",
    "required": ["ok", "error", "status"],
    "properties": {
        "ok": {"type": "boolean", "const": False},
        "error": {"type": "string"},
        "status": {"type": "integer"},
    },
}


def _path(page: Page) -> str:
    p = "/api" + (page.path if page.path != "/" else "") if page.api else page.path
    return re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", p)


def openapi(pages: list[Page]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for page in pages:
        if not page.api and page.template is not None:
            continue
        params: list[dict[str, Any]] = [
            {"name": n, "in": "path", "required": True, "description": h,
             "schema": {"type": "string"}}
            for n, h in page.path_params.items()
        ]
        for name, p in page.params.items():
            item: dict[str, Any] = {"name": name, "in": "query", "required": False,
                                    "description": p.help, "schema": p.schema()}
            if p.multi:
                item["explode"] = True
            params.append(item)
        ok_schema: dict[str, Any] = {"type": "object"}
        if page.template is not None:
            ok_schema = {"type": "object", "required": ["ok"],
                         "properties": {"ok": {"type": "boolean", "const": True}}}
        paths[_path(page)] = {
            "get": {
                "operationId": page.name,
                "summary": page.summary,
                "description": f"JSON twin of the HTML page `{page.path}`."
                if page.api and page.template else page.summary,
                "parameters": params,
                "responses": {
                    "200": {"description": "OK",
                            "content": {"application/json": {"schema": ok_schema}}},
                    "400": {"description": "Invalid query parameter",
                            "content": {"application/json": {"schema": {
                                "$ref": "#/components/schemas/Error"}}}},
                    "404": {"description": "Not found",
                            "content": {"application/json": {"schema": {
                                "$ref": "#/components/schemas/Error"}}}},
                },
            }
        }
    paths["/api/ping"] = {"get": {"operationId": "ping", "summary": "Liveness check.",
                                  "responses": {"200": {"description": "OK"}}}}
    paths["/api/openapi.json"] = {"get": {"operationId": "openapi",
                                          "summary": "This description.",
                                          "responses": {"200": {"description": "OK"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Rule Atlas", "version": __version__,
                 "description": "Read-only JSON API of the Rule Atlas web catalog. Every HTML "
                 "page has its twin here; errors are {ok: false, error, status}."},
        "paths": paths,
        "components": {"schemas": {"Error": ERROR_SCHEMA}},
    }
