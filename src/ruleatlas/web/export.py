"""``ruleatlas export-site DIR``: the web catalog as static files for any static host.

The same view builders and templates as the live server, rendered with :class:`ExportUrls`
(relative ``.html`` links, so the folder works anywhere, even from ``file://``), each page's JSON
twin beside it under ``api/`` (``rules/<id>.html`` -> ``api/rules/<id>.json``). Searching, which
needs a server, becomes ``search.html`` + ``search-index.json`` + ``static/export-search.js``: the
index is a compact list of every rule (title, source, severity, status, techniques, tactics,
start of the description) filtered in the browser with DOM text nodes only.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ruleatlas.attack import ENTERPRISE_TACTICS
from ruleatlas.store import Catalog, listings
from ruleatlas.store.export_index import all_rule_ids, search_index
from ruleatlas.store.indicators import indicator_keys
from ruleatlas.web import render
from ruleatlas.web.params import WebError, parse_query
from ruleatlas.web.views import Ctx, Page, all_pages


def export(db: str | Path, out: str | Path, indicators: bool = True,
           json_twins: bool = True) -> dict[str, Any]:
    """Write the site; ``json_twins``: beside each page with a JSON twin on the server
    (``/api/rules/<id>``), the same document as ``api/rules/<id>.json``."""
    t0 = time.perf_counter()
    catalog = Catalog.open(db, readonly=True)  # CatalogError before anything is written
    conn = catalog.conn
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pages = {p.name: p for p in all_pages()}
    n = {"files": 0, "rules": 0, "indicators": 0, "json": 0}

    def write(rel: str, text: str | bytes) -> None:
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, str):
            path.write_text(text, encoding="utf-8")
        else:
            path.write_bytes(text)
        n["files"] += 1

    def page(name: str, rel: str, path: dict[str, str] | None = None,
             args: list[tuple[str, str]] | None = None) -> dict[str, Any] | None:
        p: Page = pages[name]
        ctx = Ctx(catalog=catalog, path=path or {}, args=parse_query(args or [], p.params))
        try:
            data = p.build(ctx)
        except WebError:
            return None
        if p.template is None:
            write(rel, json.dumps(data, ensure_ascii=False, indent=1, default=str))
            return data
        if json_twins and p.api:
            write("api/" + rel.removesuffix(".html") + ".json",
                  json.dumps(render.api_document(data), ensure_ascii=False,
                             separators=(",", ":"), default=str))
            n["json"] += 1
        depth = rel.count("/")
        context = {**data, "u": render.ExportUrls(depth), "page_name": name,
                   "title": p.title(data) if p.title else name, "json_url": None,
                   "args": ctx.args, "link_args": {}}
        write(rel, render.render(p.template, context))
        return data

    # static assets
    for f in render.STATIC.iterdir():
        if f.is_file():
            write(f"static/{f.name}", f.read_bytes())
    write("static/pygments.css", render.PYGMENTS_CSS)

    page("home", "index.html")
    sources = listings.sources(conn)
    page("attack", "attack.html")
    page("navigator", "navigator.json")
    for s in sources:
        page("attack", f"attack-{s}.html", args=[("source", s)])
        page("navigator", f"navigator-{s}.json", args=[("source", s)])
    page("events", "events.html")
    page("macros", "macros.html")
    page("stories", "stories.html")
    for story in listings.stories(catalog):
        slug = hashlib.sha1(story["name"].encode()).hexdigest()[:16]
        page("story", f"stories/{slug}.html", path={"name": story["name"]})
    page("indicators", "indicators.html")
    for rid in all_rule_ids(conn):
        rel = f"rules/{quote(rid, safe='')}.html"
        if page("rule", rel, path={"rule_id": rid}) is not None:
            n["rules"] += 1
    if indicators:
        for fk, key in indicator_keys(conn):
            rel = f"indicators/{render.indicator_slug(fk, key)}.html"
            if page("indicator", rel, path={"field": fk, "key": key}) is not None:
                n["indicators"] += 1
    write("search-index.json",
          json.dumps(search_index(conn), ensure_ascii=False, separators=(",", ":")))
    write("search.html", render.render("search_static.html", {
        "u": render.ExportUrls(0), "page_name": "rules", "title": "Search rules",
        "json_url": None, "args": {"q": None},
        "tactics": [(short, name) for short, _, name in ENTERPRISE_TACTICS],
        "sources": sources}))
    catalog.close()
    return {**n, "seconds": time.perf_counter() - t0, "out": str(out)}


def clean(out: str | Path) -> None:
    """Remove an exported folder (tests)."""
    shutil.rmtree(out, ignore_errors=True)
