"""The web catalog as an ASGI app: ``create_app(db_path)``.

Every page of :mod:`ruleatlas.web.views` gets its HTML route and its JSON twin under ``/api``
(plus ``/api/openapi.json`` describing them). Reads run in worker threads on per-thread
read-only SQLite connections; building and rendering a page happen in the same thread call, so
the event loop only moves bytes. Errors have one shape everywhere: ``{ok, error, status}`` as
JSON under ``/api`` (and for ``.json`` URLs), an HTML page with the same message elsewhere.

Each request first reads the catalog generation (``ReadPool.generation``, microseconds); a 200
page is kept rendered per generation (:class:`PageCache`) with an ETag of the generation and the
URL, so ``If-None-Match`` is answered 304 without building anything. docs/web.md, *Serving*.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
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

from ruleatlas import __version__
from ruleatlas.limits import Limits
from ruleatlas.store import Catalog, CatalogError, QueryTimeout, ReadPool, RuleQuery
from ruleatlas.store.indicators import indexed_rule_count
from ruleatlas.store.search import search_rules
from ruleatlas.web import render
from ruleatlas.web.openapi import openapi
from ruleatlas.web.params import WebError, parse_query
from ruleatlas.web.views import Ctx, Page, all_pages

JSON_TYPE = "application/json; charset=utf-8"
WORKER_THREADS = 4  # pages built at the same time per process (rendering holds the GIL)
PAGE_GRACE = 1.0  # seconds past the query limit before a page still running is answered 503
PAGE_CACHE_ENTRIES = 2_048  # rendered pages kept per process (one catalog generation)
PAGE_CACHE_BYTES = 48 << 20  # bytes of rendered pages kept per process
PAGE_CACHE_MAX_PAGE = 2 << 20  # a page larger than this is rendered each time, never kept
SHUTDOWN_GRACE = 2  # seconds in-flight requests get after SIGTERM before they are cancelled
# Browsers and proxies may reuse a page for 60 s (a catalog changes at a build, minutes apart),
# then must ask again; the ETag makes that question a 304 without a body.
CACHE_CONTROL = "public, max-age=60, must-revalidate"


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


@dataclass(frozen=True, slots=True)
class CachedPage:
    """A rendered 200 response: its body, media type and headers (ETag included)."""

    body: bytes
    media_type: str
    headers: tuple[tuple[str, str], ...]

    def response(self) -> Response:
        return Response(self.body, media_type=self.media_type, headers=dict(self.headers))


class PageCache:
    """Rendered pages of ONE catalog generation, least recently used out: at most
    ``PAGE_CACHE_ENTRIES`` pages and ``PAGE_CACHE_BYTES`` bytes of bodies (a page larger than
    ``PAGE_CACHE_MAX_PAGE`` is never kept). A new generation empties it."""

    def __init__(self, entries: int = PAGE_CACHE_ENTRIES, budget: int = PAGE_CACHE_BYTES,
                 max_page: int = PAGE_CACHE_MAX_PAGE) -> None:
        self.entries = entries
        self.budget = budget
        self.max_page = max_page
        self.generation = -1
        self.bytes = 0
        self._items: OrderedDict[str, CachedPage] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def _at(self, generation: int) -> None:
        if generation != self.generation:
            self._items.clear()
            self.bytes = 0
            self.generation = generation

    def get(self, generation: int, key: str) -> CachedPage | None:
        self._at(generation)
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
        return hit

    def put(self, generation: int, key: str, page: CachedPage) -> None:
        if generation < self.generation or len(page.body) > self.max_page:
            return
        self._at(generation)
        old = self._items.pop(key, None)
        if old is not None:
            self.bytes -= len(old.body)
        self._items[key] = page
        self.bytes += len(page.body)
        while len(self._items) > self.entries or self.bytes > self.budget:
            _, gone = self._items.popitem(last=False)
            self.bytes -= len(gone.body)


class Warmth:
    """The generation whose whole-catalog facts this process has loaded, and the lock that
    makes ONE request load them after a build while the others wait (instead of every worker
    thread loading the same facts at once, each slower for the others)."""

    def __init__(self) -> None:
        self.generation = -1
        self.lock = anyio.Lock()


def warm_catalog(conn: Any) -> None:
    """Load what every page of a new generation needs: the search's per-rule facts and
    catalog-wide facets, the indicator rule count (the similar-rules weights)."""
    search_rules(conn, RuleQuery(per_page=1))
    indexed_rule_count(conn)


async def _warm(site: Site, generation: int) -> None:
    if site.warmth.generation == generation:
        return
    async with site.warmth.lock:
        if site.warmth.generation == generation:
            return
        try:
            await anyio.to_thread.run_sync(site.pool.run, warm_catalog, limiter=site.limiter)
        except QueryTimeout as e:
            raise WebError(503, str(e)) from None
        site.warmth.generation = generation


@dataclass(frozen=True, slots=True)
class Site:
    """What every endpoint shares: the catalog's read pool, the pages, the worker-thread
    limiter, the page cache, the catalog's ETag prefix, the time limit of a page and the
    generation whose shared facts are loaded."""

    db: Path
    pool: ReadPool
    pages: list[Page]
    limiter: anyio.CapacityLimiter
    cache: PageCache
    tag: str  # this catalog file and this Rule Atlas version, hashed (ETag prefix)
    timeout: float  # seconds a page may take (Limits.query_seconds)
    warmth: Warmth


def _catalog_tag(db: Path) -> str:
    st = db.stat()
    return hashlib.sha1(f"{db.resolve()}|{st.st_dev}|{st.st_ino}|{__version__}".encode(),
                        usedforsecurity=False).hexdigest()[:10]


def open_site(db_path: str | Path) -> Site:
    """The shared state over the catalog at ``db_path``; CatalogError when it is missing."""
    db = Path(db_path)
    timeout = float(Limits.from_env().query_seconds)
    pool = ReadPool(db, timeout)
    return Site(db, pool, all_pages(), anyio.CapacityLimiter(WORKER_THREADS), PageCache(),
                _catalog_tag(db), timeout, Warmth())


def _page_data(site: Site, page: Page, request: Request) -> tuple[dict[str, Any], dict[str, Any]]:
    """The validated query and the page's data, built in one time-limited pool call."""
    args = parse_query(request.query_params.multi_items(), page.params)

    def build(conn: Any) -> dict[str, Any]:
        cat = Catalog(conn, site.db, readonly=True)
        return page.build(Ctx(catalog=cat, path=dict(request.path_params), args=args))

    try:
        return args, site.pool.run(build, site.timeout)
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


def _etag(site: Site, generation: int, key: str) -> str:
    digest = hashlib.sha1(key.encode("utf-8", "surrogateescape"),
                          usedforsecurity=False).hexdigest()[:16]
    return f'"{site.tag}-{generation}-{digest}"'


def _matches(if_none_match: str | None, etag: str) -> bool:
    """``If-None-Match`` names ``etag`` (weak comparison, as RFC 9110 asks for GET)."""
    if not if_none_match:
        return False
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or etag in tags


async def _render(site: Site, page: Page, request: Request, as_json: bool) -> Response:
    """The page built in a worker thread, answered 503 when it runs past the time limit: SQLite
    interrupts the queries (progress handler), and a call that does not come back within
    ``PAGE_GRACE`` more seconds (a long C call) is abandoned and its connection interrupted."""
    ran_in: list[int] = []

    def work() -> Response:
        ran_in.append(threading.get_ident())
        return run_page(site, page, request, as_json)

    with anyio.move_on_after(site.timeout + PAGE_GRACE):
        resp: Response = await anyio.to_thread.run_sync(work, limiter=site.limiter,
                                                        abandon_on_cancel=True)
        return resp
    if ran_in:
        site.pool.interrupt(ran_in[0])
    raise WebError(503, f"query took longer than {site.timeout:g}s")


def _endpoint(site: Site, page: Page, as_json: bool) -> Callable[[Request], Any]:
    async def handle(request: Request) -> Response:
        generation = site.pool.generation()
        raw = request.scope.get("raw_path") or request.url.path.encode()
        key = f"{int(as_json)}{raw.decode('latin-1')}?{request.url.query}"
        etag = _etag(site, generation, key)
        if _matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers={"etag": etag,
                                                      "cache-control": CACHE_CONTROL})
        hit = site.cache.get(generation, key)
        if hit is not None:
            return hit.response()
        await _warm(site, generation)
        resp = await _render(site, page, request, as_json)
        if resp.status_code == 200:
            resp.headers["etag"] = etag
            resp.headers["cache-control"] = CACHE_CONTROL
            site.cache.put(generation, key, CachedPage(
                bytes(resp.body), resp.media_type or JSON_TYPE,
                tuple((k, v) for k, v in resp.headers.items()
                      if k not in ("content-length", "content-type"))))
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
    resp.headers["cache-control"] = "no-store"
    if status == 405:
        resp.headers["allow"] = "GET, HEAD"
    return resp


def create_app(db_path: str | Path) -> Starlette:
    """The ASGI app over the catalog at ``db_path`` (opened read-only; must exist, else
    ``CatalogError``)."""
    site = open_site(db_path)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:  # shutdown: interrupt what still runs, close what is idle
            site.pool.close()

    app = Starlette(
        routes=[*page_routes(site), *fixed_routes(site.pages)],
        exception_handlers={WebError: on_error, HTTPException: on_error, Exception: on_error},
        lifespan=lifespan,
    )
    app.state.site = site
    app.state.pool = site.pool
    app.state.pages = site.pages
    app.add_middleware(SecurityHeaders)
    return app


__all__ = ["CatalogError", "create_app"]


def app_from_env() -> Starlette:
    """Factory for multi-worker uvicorn: the catalog path comes from ``RULEATLAS_DB``."""
    import os

    return create_app(os.environ.get("RULEATLAS_DB", "ruleatlas.db"))
