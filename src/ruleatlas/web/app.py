"""The web catalog as an ASGI app: ``create_app(db_path)``.

Every page of :mod:`ruleatlas.web.views` gets its HTML route and its JSON twin under ``/api``
(plus ``/api/openapi.json`` describing them). Reads run in worker threads on per-thread
read-only SQLite connections; building and rendering a page happen in the same thread call, so
the event loop only moves bytes. Errors have one shape everywhere: ``{ok, error, status}`` as
JSON under ``/api`` (and for ``.json`` URLs), an HTML page with the same message elsewhere.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ruleatlas.store.browse import BrowseError, QueryTimeout, ReadPool, catalog_stamp
from ruleatlas.web import render
from ruleatlas.web.openapi import openapi
from ruleatlas.web.params import WebError, parse_query
from ruleatlas.web.views import Ctx, Page, all_pages

JSON_TYPE = "application/json; charset=utf-8"
QUERY_TIMEOUT = 5.0  # seconds of SQLite work per page before a 503


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


class _Catalogs:
    """One shared-catalog object per thread (``store.catalog.Catalog``), when that module
    exists; pages fall back to ``store.browse`` queries otherwise."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.local = threading.local()

    def get(self) -> Any:
        cat = getattr(self.local, "cat", None)
        if cat is None:
            from ruleatlas.store.catalog import Catalog

            cat = Catalog.open(self.path, readonly=True)
            self.local.cat = cat
        return cat

    @property
    def available(self) -> bool:
        try:
            import ruleatlas.api.documents
            import ruleatlas.store.catalog  # noqa: F401
        except ImportError:
            return False
        return True


def _is_json_path(path: str) -> bool:
    return path.startswith("/api/") or path == "/api" or path.endswith(".json")


def create_app(db_path: str | Path) -> Starlette:
    """The ASGI app over the catalog at ``db_path`` (opened read-only; must exist)."""
    db = Path(db_path)
    pool = ReadPool(db)  # raises BrowseError with a clear message when missing
    catalogs = _Catalogs(db)
    use_catalog = catalogs.available
    pages = all_pages()
    limiter = anyio.CapacityLimiter(16)

    def run_page(page: Page, request: Request, as_json: bool) -> Response:
        args = parse_query(request.query_params.multi_items(), page.params)

        def build(conn: Any) -> dict[str, Any]:
            ctx = Ctx(conn=conn, path=dict(request.path_params), args=args,
                      catalog=catalogs.get if use_catalog else None)
            return page.build(ctx)

        try:
            data = pool.run(build, QUERY_TIMEOUT)
        except QueryTimeout as e:
            raise WebError(503, str(e)) from None
        if as_json or page.template is None:
            if page.template is None:
                return json_response(data)
            return json_response(render.api_document(data))
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
        html = render.render(page.template, context)
        return HTMLResponse(html, headers={"link": f'<{api_url}>; rel="alternate"; '
                                                   'type="application/json"'})

    cache: dict[tuple[str, bool, str], tuple[tuple[int, ...], Response]] = {}

    def endpoint(page: Page, as_json: bool) -> Callable[[Request], Any]:
        async def handle(request: Request) -> Response:
            if not page.cache:
                return await anyio.to_thread.run_sync(run_page, page, request, as_json,
                                                      limiter=limiter)
            key = (page.name, as_json, str(request.url.query))
            mtime = catalog_stamp(db)
            hit = cache.get(key)
            if hit is not None and hit[0] == mtime:
                return hit[1]
            resp = await anyio.to_thread.run_sync(run_page, page, request, as_json,
                                                  limiter=limiter)
            if len(cache) > 256:
                cache.clear()
            cache[key] = (mtime, resp)
            return resp

        handle.__name__ = f"{page.name}_{'json' if as_json else 'html'}"
        return handle

    routes: list[Any] = []
    for page in pages:
        if page.template is not None:
            routes.append(Route(page.path, endpoint(page, False), methods=["GET", "HEAD"],
                                name=page.name))
        else:
            routes.append(Route(page.path, endpoint(page, True), methods=["GET", "HEAD"],
                                name=page.name))
        if page.api:
            routes.append(Route("/api" + (page.path if page.path != "/" else ""),
                                endpoint(page, True), methods=["GET", "HEAD"],
                                name=f"api_{page.name}"))
    spec = openapi(pages)

    async def openapi_json(request: Request) -> Response:
        return json_response(spec)

    async def ping(request: Request) -> Response:
        return json_response({"ok": True})

    async def pygments_css(request: Request) -> Response:
        return Response(render.PYGMENTS_CSS, media_type="text/css",
                        headers={"cache-control": "public, max-age=3600"})

    routes += [
        Route("/api/openapi.json", openapi_json, methods=["GET", "HEAD"]),
        Route("/api/ping", ping, methods=["GET", "HEAD"]),
        Route("/static/pygments.css", pygments_css, methods=["GET", "HEAD"]),
        Mount("/static", StaticFiles(directory=str(render.STATIC)), name="static"),
    ]

    async def on_error(request: Request, exc: Exception) -> Response:
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

    app = Starlette(
        routes=routes,
        exception_handlers={WebError: on_error, HTTPException: on_error, Exception: on_error},
    )
    app.state.pool = pool
    app.state.pages = pages
    app.add_middleware(SecurityHeaders)
    return app


__all__ = ["BrowseError", "create_app"]


def app_from_env() -> Starlette:
    """Factory for multi-worker uvicorn: the catalog path comes from ``RULEATLAS_DB``."""
    import os

    return create_app(os.environ.get("RULEATLAS_DB", "ruleatlas.db"))
