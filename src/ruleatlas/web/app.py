"""The web catalog as an ASGI app: ``create_app(db_path)``.

Every page of :mod:`ruleatlas.web.views` gets its HTML route and its JSON twin under ``/api``
(plus ``/api/openapi.json`` describing them). Reads run in worker threads on per-thread
read-only SQLite connections; building and rendering a page happen in the same thread call, so
the event loop only moves bytes. Errors have one shape everywhere: ``{ok, error, status}`` as
JSON under ``/api`` (and for ``.json`` URLs), an HTML page with the same message elsewhere.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ruleatlas.store import Catalog, CatalogError, QueryTimeout, ReadPool, catalog_stamp
from ruleatlas.web import render
from ruleatlas.web.openapi import openapi
from ruleatlas.web.params import WebError, parse_query
from ruleatlas.web.views import Ctx, Page, all_pages

JSON_TYPE = "application/json; charset=utf-8"
QUERY_TIMEOUT = 5.0  # seconds of SQLite work per page before a 503
WORKER_THREADS = 16  # pages built at the same time
PAGE_MEMO_SIZE = 256  # URLs of catalog-wide pages whose responses are kept


def dumps(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, default=str, separators=(",", ":")).encode()


def json_response(data: Any, status: int = 200) -> Response:
    return Response(dumps(data), status_code=status, media_type=JSON_TYPE)


def error_payload(status: int, message: str) -> dict[str, Any]:
    return {"ok": False, "error": message, "status": status}


class SecurityHeaders:
    """Pure ASGI middleware: CSP and friends on every response (errors and static too), and a
    ``Server-Timing: app;dur=<ms>`` header (time until the response starts; bench/web.py reads
    it to separate server time from client and network time)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.headers = [(k.encode(), v.encode()) for k, v in render.SECURITY_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        start = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                ms = (time.perf_counter() - start) * 1000
                message["headers"] = [
                    *message.get("headers", []),
                    *((k, v) for k, v in self.headers if k not in have),
                    (b"server-timing", f"app;dur={ms:.3f}".encode()),
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _is_json_path(path: str) -> bool:
    return path.startswith("/api/") or path == "/api" or path.endswith(".json")


class PageMemo:
    """Responses of the catalog-wide pages (``Page.cache``), per URL, while the catalog file is
    unchanged (``catalog_stamp``); at most ``PAGE_MEMO_SIZE`` URLs, least recently used out."""

    def __init__(self, db: Path, size: int = PAGE_MEMO_SIZE) -> None:
        self.db = db
        self.size = size
        self._items: OrderedDict[tuple[str, bool, str], tuple[tuple[int, ...], Response]] = (
            OrderedDict())

    def get(self, key: tuple[str, bool, str]) -> Response | None:
        hit = self._items.get(key)
        if hit is None or hit[0] != catalog_stamp(self.db):
            return None
        self._items.move_to_end(key)
        return hit[1]

    def put(self, key: tuple[str, bool, str], resp: Response) -> None:
        self._items[key] = (catalog_stamp(self.db), resp)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


@dataclass(frozen=True, slots=True)
class Site:
    """What every endpoint shares: the catalog's read pool, the pages, the worker-thread
    limiter and the memo of catalog-wide pages."""

    db: Path
    pool: ReadPool
    pages: list[Page]
    limiter: anyio.CapacityLimiter
    memo: PageMemo


def open_site(db_path: str | Path) -> Site:
    """The shared state over the catalog at ``db_path``; CatalogError when it is missing."""
    db = Path(db_path)
    return Site(db, ReadPool(db), all_pages(), anyio.CapacityLimiter(WORKER_THREADS),
                PageMemo(db))


def _page_data(site: Site, page: Page, request: Request) -> tuple[dict[str, Any], dict[str, Any]]:
    """The validated query and the page's data, built in one time-limited pool call."""
    args = parse_query(request.query_params.multi_items(), page.params)

    def build(conn: Any) -> dict[str, Any]:
        cat = Catalog(conn, site.db, readonly=True)
        return page.build(Ctx(catalog=cat, path=dict(request.path_params), args=args))

    try:
        return args, site.pool.run(build, QUERY_TIMEOUT)
    except QueryTimeout as e:
        raise WebError(503, str(e)) from None


def _html_page(page: Page, request: Request, args: dict[str, Any],
               data: dict[str, Any]) -> Response:
    """The page rendered, with a ``Link`` to its JSON twin."""
    assert page.template is not None
    raw = request.scope.get("raw_path")
    path = raw.decode("latin-1") if raw else quote(request.url.path)
    api_url = "/api" + (path if path != "/" else "") + (
        f"?{request.url.query}" if request.url.query else "")
    context = {
        **data,
        "u": render.Urls(),
        "page_name": page.name,
        "title": page.title(data) if page.title else page.name,
        "json_url": api_url,
        "args": args,
        "link_args": {k: v for k, v in args.items()
                      if v not in ([], None) and v != page.params[k].default},
    }
    return HTMLResponse(render.render(page.template, context),
                        headers={"link": f'<{api_url}>; rel="alternate"; type="application/json"'})


def run_page(site: Site, page: Page, request: Request, as_json: bool) -> Response:
    """One page as HTML or as its JSON twin (runs in a worker thread)."""
    args, data = _page_data(site, page, request)
    if page.template is None:
        return json_response(data)
    if as_json:
        return json_response(render.api_document(data))
    return _html_page(page, request, args, data)


def _endpoint(site: Site, page: Page, as_json: bool) -> Callable[[Request], Any]:
    async def handle(request: Request) -> Response:
        key = (page.name, as_json, str(request.url.query))
        hit = site.memo.get(key) if page.cache else None
        if hit is not None:
            return hit
        resp: Response = await anyio.to_thread.run_sync(run_page, site, page, request, as_json,
                                                        limiter=site.limiter)
        if page.cache:
            site.memo.put(key, resp)
        return resp

    handle.__name__ = f"{page.name}_{'json' if as_json else 'html'}"
    return handle


def page_routes(site: Site) -> list[BaseRoute]:
    """Each page's route (HTML, or JSON for template-less pages) and its ``/api`` twin."""
    routes: list[BaseRoute] = []
    for page in site.pages:
        routes.append(Route(page.path, _endpoint(site, page, page.template is None),
                            methods=["GET", "HEAD"], name=page.name))
        if page.api:
            routes.append(Route("/api" + (page.path if page.path != "/" else ""),
                                _endpoint(site, page, True), methods=["GET", "HEAD"],
                                name=f"api_{page.name}"))
    return routes


def fixed_routes(pages: list[Page]) -> list[BaseRoute]:
    """The OpenAPI description, the liveness ping and the static files."""
    spec = openapi(pages)

    async def openapi_json(request: Request) -> Response:
        return json_response(spec)

    async def ping(request: Request) -> Response:
        return json_response({"ok": True})

    async def pygments_css(request: Request) -> Response:
        return Response(render.PYGMENTS_CSS, media_type="text/css",
                        headers={"cache-control": "public, max-age=3600"})

    return [
        Route("/api/openapi.json", openapi_json, methods=["GET", "HEAD"]),
        Route("/api/ping", ping, methods=["GET", "HEAD"]),
        Route("/static/pygments.css", pygments_css, methods=["GET", "HEAD"]),
        Mount("/static", StaticFiles(directory=str(render.STATIC)), name="static"),
    ]


async def on_error(request: Request, exc: Exception) -> Response:
    """The one error shape: ``{ok, error, status}`` JSON under ``/api`` and for ``.json`` URLs,
    an HTML page with the same message elsewhere."""
    if isinstance(exc, WebError):
        status, message = exc.status, exc.message
    elif isinstance(exc, HTTPException):
        status = exc.status_code
        message = {404: "not found", 405: "method not allowed"}.get(status, str(exc.detail))
    else:
        status, message = 500, "internal error"
    if _is_json_path(request.url.path):
        resp: Response = json_response(error_payload(status, message), status)
    else:
        html = render.render("error.html", {"u": render.Urls(), "status": status,
                                            "message": message, "title": f"{status}",
                                            "page_name": "error", "json_url": None})
        resp = HTMLResponse(html, status_code=status)
    resp.headers.update(render.SECURITY_HEADERS)
    if status == 405:
        resp.headers["allow"] = "GET, HEAD"
    return resp


def create_app(db_path: str | Path) -> Starlette:
    """The ASGI app over the catalog at ``db_path`` (opened read-only; must exist, else
    ``CatalogError``)."""
    site = open_site(db_path)
    app = Starlette(
        routes=[*page_routes(site), *fixed_routes(site.pages)],
        exception_handlers={WebError: on_error, HTTPException: on_error, Exception: on_error},
    )
    app.state.pool = site.pool
    app.state.pages = site.pages
    app.add_middleware(SecurityHeaders)
    return app


__all__ = ["CatalogError", "create_app"]


def app_from_env() -> Starlette:
    """Factory for multi-worker uvicorn: the catalog path comes from ``RULEATLAS_DB``."""
    import os

    return create_app(os.environ.get("RULEATLAS_DB", "ruleatlas.db"))
