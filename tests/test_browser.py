"""Browser tests: the real server (``ruleatlas serve`` in a subprocess on a free loopback port)
driven by Playwright in Debian's Chromium.

Every run takes the three screenshots and checks they are real PNG images. They are written to
``docs/screenshots/`` (shown in the README) when ``RULEATLAS_SCREENSHOTS=1``, or when a file is
missing there (a fresh clone without them gets them); otherwise to a temporary folder, so that a
plain test run does not rewrite committed images byte for byte."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import EXAMPLE_ID, ROOT
from test_web_support import (
    HOSTILE_SIGMA_ID,
    HOSTILE_SPLUNK_ID,
    build_catalog,
    make_hostile_repos,
    running_server,
)

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / "docs" / "screenshots"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.browser


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``shot(page, name, **options)``: take a screenshot, check it, keep it where it belongs."""
    scratch = tmp_path_factory.mktemp("screenshots")
    refresh = os.environ.get("RULEATLAS_SCREENSHOTS", "") not in ("", "0")

    def shot(page: Any, name: str, **options: Any) -> Path:
        to_docs = refresh or not (SHOTS / name).exists()
        path = (SHOTS if to_docs else scratch) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), **options)
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, (name, len(data))
        return path

    return shot


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium for this module only: Playwright's sync API keeps an asyncio loop running in
    the main thread while it is open, which other modules' ``anyio.run`` (the MCP client)
    must not meet."""
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), ("Debian's Chromium is not installed (/usr/bin/chromium): "
                               "`apt-get install chromium` (scripts/test.sh does it as root)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def web_db(corpus_db: Path) -> Path:
    """The whole-corpus catalog built once per session (conftest ``corpus_db``)."""
    return Path(corpus_db)


@pytest.fixture(scope="session")
def server(web_db: Path) -> Iterator[str]:
    with running_server(web_db) as base:
        yield base


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(10_000)
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("dialog", lambda d: (errors.append(f"dialog: {d.message}"), d.dismiss()))
    yield pg
    ctx.close()
    assert not errors, errors


def test_rule_page_sections_in_order(server: str, page: Any, shots: Any) -> None:
    page.goto(f"{server}/rules/{EXAMPLE_ID}")
    assert page.locator("nav.crumbs").inner_text().strip() == "Detection rules › Splunk"
    assert page.locator("h1").inner_text() == "PowerShell Invoke WmiExec Usage"
    for label in ("Status", "Severity", "Group by", "Author", "Source"):
        assert page.locator("dl.meta dt", has_text=label).count() == 1
    assert page.get_by_role("link", name="github.com/splunk/security_content").count() == 1
    headings = page.locator("main h2").all_inner_texts()
    order = ["MITRE ATT&CK coverage", "Event coverage", "Rule body", "Stages and Predicates",
             "Indicators", "Similar rules", "Stories", "References", "Known false positives",
             "How to implement", "Tests"]
    idx = [next(i for i, h in enumerate(headings) if h.startswith(x)) for x in order]
    assert idx == sorted(idx)
    assert page.locator("#attack a", has_text="T1047").count() >= 1
    assert page.locator("#attack a[href='https://attack.mitre.org/techniques/T1047/']").count()
    assert page.locator("#events", has_text="4104").count() == 1
    assert page.locator("#body .hl span.nt").count() > 5
    assert page.locator("#stages h3").first.inner_text() == "Stage 1: search"
    for c in page.locator("#indicators .corpus").all_inner_texts():
        assert re.fullmatch(r"corpus \d+( \(.+\))?", c), c
    shots(page, "rule-page.png", full_page=True)


def test_rule_page_stages_and_corpus_column(server: str, page: Any, web_db: Path) -> None:
    from ruleatlas.store.connection import connect

    conn = connect(web_db)
    (n,) = conn.execute("SELECT count(DISTINCT rule_id) FROM indicators "
                        "WHERE source = 'splunk'").fetchone()
    conn.close()
    # the SPL analyzer gives indicators to 1,627 of the 1,711 ESCU rules (measured)
    assert n >= 1600, f"the SPL analyzer gave indicators to only {n} ESCU rules"
    page.goto(f"{server}/rules/{EXAMPLE_ID}")
    assert page.locator("#stages .stage").count() >= 3
    # the expanded macro text is there on demand, hidden until opened
    details = page.locator("#stages details.expanded").first
    assert not details.locator("pre").is_visible()
    details.locator("summary").click()
    assert details.locator("pre").is_visible()
    row = page.locator("#indicators tbody tr", has=page.locator("code", has_text="ScriptBlockText"))
    value = row.locator("a.ival").first
    assert "invoke-wmiexec" in value.inner_text().lower()
    assert value.get_attribute("title")
    corpus = row.locator(".corpus").first.inner_text()
    assert re.fullmatch(r"corpus \d+ \(sigma \d+, splunk \d+\)", corpus), corpus
    value.click()
    page.wait_for_url(re.compile(r"/indicators/"))
    assert page.locator(f'a[href="/rules/{EXAMPLE_ID}"]').count() == 1


def test_search_wmiexec_and_filter_t1047(server: str, page: Any, shots: Any) -> None:
    page.goto(f"{server}/rules")
    page.fill("#q", "wmiexec")
    page.press("#q", "Enter")
    page.wait_for_url(re.compile(r"q=wmiexec"))
    assert page.locator(f'.hit a[href="/rules/{EXAMPLE_ID}"]').count() == 1
    assert page.locator(".snippet mark").count() > 0
    shots(page, "search.png")
    page.locator(".facet-technique a", has_text=re.compile(r"^T1047$")).click()
    page.wait_for_url(re.compile(r"technique=T1047"))
    techs = page.locator(".hit .techs").all_inner_texts()
    assert techs and all("T1047" in t for t in techs)
    assert page.locator(f'.hit a[href="/rules/{EXAMPLE_ID}"]').count() == 1


def test_filters_as_you_type(server: str, page: Any) -> None:
    page.goto(f"{server}/rules")
    page.locator("#q").press_sequentially("wmiexec", delay=20)
    # (wait_for_function would need 'unsafe-eval', which the CSP rightly refuses)
    page.locator(".count", has_text="wmiexec").wait_for()
    assert page.locator(f'.hit a[href="/rules/{EXAMPLE_ID}"]').count() == 1
    assert "q=wmiexec" in page.url


def test_attack_page_click_a_cell(server: str, page: Any, shots: Any) -> None:
    page.set_viewport_size({"width": 1760, "height": 1000})
    page.goto(f"{server}/attack")
    assert page.locator(".tactic h2").first.inner_text() == "Reconnaissance"
    shots(page, "attack.png")
    page.locator("nav.switch a", has_text="splunk").click()
    page.wait_for_url(re.compile(r"source=splunk"))
    page.locator('a.cell[data-technique="T1047"]').first.click()
    page.wait_for_url(re.compile(r"/rules\?technique=T1047&source=splunk"))
    assert page.locator(f'.hit a[href="/rules/{EXAMPLE_ID}"]').count() == 1
    with page.expect_download() as dl:
        page.goto(f"{server}/attack")
        page.locator("a.button", has_text="Navigator").click()
    assert dl.value.suggested_filename.endswith(".json")


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = tmp_path_factory.mktemp("hostile-browser")
    db = build_catalog(make_hostile_repos(base), base / "hostile.db")
    with running_server(db) as url:
        yield url


def test_hostile_catalog_runs_no_script(hostile_server: str, page: Any) -> None:
    fired: list[str] = []
    page.on("dialog", lambda d: fired.append(d.message))
    page.add_init_script("window.__xss = 0; window.alert = function () { window.__xss++; };")
    urls = ["/", "/rules", "/rules?q=alert", "/attack", "/events", "/macros", "/stories",
            "/indicators", f"/rules/{HOSTILE_SIGMA_ID}", f"/rules/{HOSTILE_SPLUNK_ID}"]
    for u in urls:
        page.goto(hostile_server + u)
        page.wait_for_load_state("load")
        assert page.evaluate("window.__xss") == 0, u
        srcs = page.evaluate("[...document.scripts].map(s => s.src || 'INLINE')")
        assert all(s.startswith(hostile_server + "/static/") for s in srcs), (u, srcs)
        handlers = page.evaluate(
            "[...document.querySelectorAll('*')].flatMap(e => [...e.attributes]"
            ".filter(a => a.name.startsWith('on')).map(a => e.tagName + ' ' + a.name))")
        assert handlers == [], (u, handlers)
        assert page.locator("img, svg, iframe").count() == 0, u
    page.goto(f"{hostile_server}/rules/{HOSTILE_SIGMA_ID}")
    assert "<script>alert(1)</script>" in page.locator("h1").inner_text()
    # a javascript: reference is text, not a link; clicking it does nothing
    assert page.locator("#references a[href^='javascript' i]").count() == 0
    page.locator("#references .unsafe-link").first.click()
    assert page.evaluate("window.__xss") == 0
    assert fired == []


def test_exported_site_search_is_inert(tmp_path: Path, browser: Any) -> None:
    """export-site on the hostile catalog, served by a plain static server: the client-side
    search finds the rules and shows their markup as text."""
    import functools
    import http.server
    import threading

    from ruleatlas.web.export import export

    db = build_catalog(make_hostile_repos(tmp_path), tmp_path / "hostile.db")
    site = tmp_path / "site"
    export(db, site)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    ctx = browser.new_context()
    ctx.set_default_timeout(10_000)
    pg = ctx.new_page()
    fired: list[str] = []
    pg.on("dialog", lambda d: (fired.append(d.message), d.dismiss()))
    pg.on("pageerror", lambda e: fired.append(str(e)))
    try:
        base = f"http://127.0.0.1:{srv.server_address[1]}"
        pg.goto(f"{base}/search.html?q=alert")
        pg.locator(".hit").first.wait_for()
        assert pg.locator(".hit").count() == 2
        assert pg.locator("img, svg, iframe").count() == 0
        assert "<script>alert(1)</script>" in pg.locator(".hit a").first.inner_text() + \
            pg.locator(".hit a").last.inner_text()
        pg.locator(f'.hit a[href="rules/{HOSTILE_SIGMA_ID}.html"]').click()
        pg.wait_for_url(re.compile(HOSTILE_SIGMA_ID))
        assert "<script>alert(1)</script>" in pg.locator("h1").inner_text()
        assert pg.locator("img, svg, iframe").count() == 0
        assert fired == []
    finally:
        ctx.close()
        srv.shutdown()
