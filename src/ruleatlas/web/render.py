"""Templates, URL building and the few filters pages need.

One Jinja environment (autoescape always on) serves both the live server and ``export-site``;
the only difference is the :class:`Urls` object: the server links to stable paths
(``/rules/<id>``), the export links to relative ``.html`` files so the site works from any
folder of any static host (and from ``file://``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import jinja2
from markupsafe import Markup, escape
from pygments import highlight as _pyg_highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import TextLexer, TOMLLexer, YamlLexer

from ruleatlas.attack import tactic_name
from ruleatlas.languages import label as language_label
from ruleatlas.sources import SOURCES, source_label
from ruleatlas.store import HL_END, HL_START
from ruleatlas.web.markdown import render_markdown

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

# No inline script or style anywhere: every colour is a class, every script a file.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'; object-src 'none'"
)
SECURITY_HEADERS: dict[str, str] = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}

_FORMATTER = HtmlFormatter(cssclass="hl", nowrap=False, wrapcode=True)
PYGMENTS_CSS = _FORMATTER.get_style_defs(".hl")
_LEXERS = {"yaml": YamlLexer(), "toml": TOMLLexer(), "text": TextLexer()}


def api_document(data: Mapping[str, Any]) -> dict[str, Any]:
    """A page's JSON twin (``/api/...`` and export-site's ``api/``): its data without the keys
    starting with ``_``, which feed the template only (raw snippet markers, ...)."""
    return {"ok": True, **{k: v for k, v in data.items() if not k.startswith("_")}}


@lru_cache(maxsize=4096)
def highlight(text: str, lang: str = "yaml") -> Markup:
    """Syntax-highlighted HTML; pygments escapes every token, so rule text stays text.

    Cached: the catalog is read-only while served, so a body never changes under the cache.
    """
    return Markup(_pyg_highlight(text or "", _LEXERS.get(lang, _LEXERS["text"]), _FORMATTER))


def marked(snippet: str | None) -> Markup:
    """An FTS5 snippet with SQLite's match markers as ``<mark>``: escape first, then mark."""
    if not snippet:
        return Markup("")
    out = str(escape(snippet))
    out = out.replace(HL_START, "<mark>").replace(HL_END, "</mark>")
    return Markup(out)


SAFE_SCHEMES = ("http", "https")


def safe_href(url: Any) -> str | None:
    """The URL when it is an absolute http(s) link, else None (shown as text, not a link)."""
    if not isinstance(url, str):
        return None
    u = url.strip()
    try:
        parts = urlsplit(u)
    except ValueError:
        return None
    if parts.scheme.lower() in SAFE_SCHEMES and parts.netloc and not re.search(r"[\s<>\"]", u):
        return u
    return None


def repo_label(url: str) -> str:
    """``github.com/splunk/security_content`` for a file URL on GitHub, else the host."""
    parts = urlsplit(url)
    segs = [s for s in parts.path.split("/") if s]
    if parts.netloc.endswith("github.com") and len(segs) >= 2:
        return f"{parts.netloc}/{segs[0]}/{segs[1]}"
    return parts.netloc or url


def corpus_text(c: Mapping[str, Any] | None) -> str:
    """``corpus 3 (elastic 1, sigma 1, splunk 1)``: sources with a zero count are left out.
    Accepts the flat document form ``{"total", "elastic", "sigma", "splunk"}`` (one key per
    source) or ``{"total", "by_source": {...}}``."""
    if not c:
        return "corpus 0"
    total = int(c.get("total", 0) or 0)
    counts = dict(c.get("by_source") or {}) if isinstance(c.get("by_source"), Mapping) else {}
    for k, v in c.items():
        if k not in ("total", "by_source", "key", "field", "value"):
            counts.setdefault(k, v)
    parts = [f"{k} {v}" for k, v in sorted(counts.items()) if isinstance(v, int) and v]
    return f"corpus {total}" + (f" ({', '.join(parts)})" if parts else "")


def heat(count: int, maximum: int) -> str:
    """A CSS class ``heat-0`` .. ``heat-6`` (log scale: 1 rule and 200 rules both readable)."""
    if count <= 0:
        return "heat-0"
    if maximum <= 1:
        return "heat-6"
    import math

    level = 1 + int(5 * math.log(count) / math.log(maximum) + 1e-9)
    return f"heat-{min(level, 6)}"


def indicator_slug(field: str, key: str) -> str:
    """File name of an indicator page in an exported site (keys may be any text)."""
    return hashlib.sha1(f"{field}\x00{key}".encode()).hexdigest()[:20]


class Urls:
    """Links of the live server: stable paths with query strings."""

    export = False

    def __init__(self, root: str = "") -> None:
        self.root = root

    def static(self, name: str) -> str:
        return f"{self.root}/static/{name}"

    def home(self) -> str:
        return f"{self.root}/"

    def rule(self, rule_id: str) -> str:
        return f"{self.root}/rules/{quote(rule_id, safe='')}"

    def rules(self, **params: Any) -> str:
        return f"{self.root}/rules" + _qs(params)

    def indicator(self, field: str, key: str) -> str:
        k = quote(key, safe="")
        if k in (".", ".."):
            k = k.replace(".", "%2E")
        return f"{self.root}/indicators/{quote(field, safe='')}/{k}"

    def indicators(self, **params: Any) -> str:
        return f"{self.root}/indicators" + _qs(params)

    def page(self, name: str, **params: Any) -> str:
        return f"{self.root}/{name}" + _qs(params)

    def macro(self, name: str) -> str:
        return f"{self.root}/macros/{quote(name, safe='')}"

    def story(self, name: str) -> str:
        return f"{self.root}/stories/{quote(name, safe='')}"

    def api(self, path: str, query: str = "") -> str:
        return f"{self.root}/api{path}" + (f"?{query}" if query else "")


class ExportUrls(Urls):
    """Links of an exported site: relative ``.html`` files; searches go to ``search.html``."""

    export = True

    def __init__(self, depth: int) -> None:
        super().__init__("")
        self.up = "../" * depth

    def static(self, name: str) -> str:
        return f"{self.up}static/{name}"

    def home(self) -> str:
        return f"{self.up}index.html"

    def rule(self, rule_id: str) -> str:
        # The file is named with the id percent-encoded (``elastic%3A<id>.html``: a qualified id's
        # ``:`` would start a URL scheme); the link encodes that name once more, so a static host
        # decoding the URL finds the file.
        return f"{self.up}rules/{quote(quote(rule_id, safe=''), safe='')}.html"

    def rules(self, **params: Any) -> str:
        return f"{self.up}search.html" + _qs(params)

    def indicator(self, field: str, key: str) -> str:
        return f"{self.up}indicators/{indicator_slug(field, key)}.html"

    def indicators(self, **params: Any) -> str:
        return f"{self.up}indicators.html"

    def page(self, name: str, **params: Any) -> str:
        if name == "attack" and params.get("source"):
            return f"{self.up}attack-{quote(str(params['source']), safe='')}.html"
        if name.endswith(".json"):
            return f"{self.up}{name}"
        return f"{self.up}{name}.html"

    def macro(self, name: str) -> str:
        return f"{self.up}macros.html#m-{quote(name, safe='')}"

    def story(self, name: str) -> str:
        return f"{self.up}stories/{hashlib.sha1(name.encode()).hexdigest()[:16]}.html"

    def api(self, path: str, query: str = "") -> str:
        return ""


def _qs(params: Mapping[str, Any]) -> str:
    items: list[tuple[str, str]] = []
    for k, v in params.items():
        if v is None or v == "" or v == []:
            continue
        if isinstance(v, (list, tuple)):
            items.extend((k, str(x)) for x in v)
        else:
            items.append((k, str(v)))
    return ("?" + urlencode(items)) if items else ""


def make_env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,  # every template, whatever its extension
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(
        highlight=highlight,
        marked=marked,
        safe_href=safe_href,
        corpus=corpus_text,
        repo_label=repo_label,
        tactic_name=tactic_name,
        markdown=render_markdown,
        source_label=source_label,
        language_label=language_label,
    )
    env.globals.update(heat=heat, sources_order=tuple(sorted(SOURCES)))
    return env


ENV = make_env()


def render(template: str, context: Mapping[str, Any]) -> str:
    return ENV.get_template(template).render(context)
