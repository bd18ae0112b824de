"""Markdown from rule files (Elastic's investigation guides and setup notes) as safe HTML.

Rule text is untrusted: a hostile rule may hold ``<script>``, raw HTML, ``javascript:`` links or
images that call home. markdown-it-py renders CommonMark with:

* ``html`` off: raw HTML blocks and inline tags are escaped text, never markup;
* links only when absolute ``http``/``https`` (:func:`ruleatlas.web.render.safe_href`'s rule):
  any other destination (``javascript:``, ``data:``, ``vbscript:``, relative paths) leaves the
  link text as plain text; kept links carry ``rel="noopener noreferrer nofollow"``;
* no images (an image would load from anywhere; the page's CSP forbids it anyway): an image is
  its alt text;
* no bare-URL linkify (only written links), typographer off.

The result is cached (the catalog is read-only while served).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from markdown_it import MarkdownIt
from markdown_it.token import Token
from markupsafe import Markup

MARKDOWN_CACHE_SIZE = 1024  # rendered guides kept (one per Elastic rule page)
SAFE_SCHEMES = ("http", "https")


def _safe_link(url: str) -> bool:
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return False
    return parts.scheme.lower() in SAFE_SCHEMES and bool(parts.netloc)


def _render_link_open(self: Any, tokens: Sequence[Token], idx: int, options: Any,
                      env: Any) -> str:
    tokens[idx].attrSet("rel", "noopener noreferrer nofollow")
    return str(self.renderToken(tokens, idx, options, env))


def _render_image(self: Any, tokens: Sequence[Token], idx: int, options: Any,
                  env: Any) -> str:
    tok = tokens[idx]
    alt = self.renderInlineAsText(tok.children or [], options, env)
    return f'<span class="md-image">{_escape(alt)}</span>'


def _escape(text: str) -> str:
    return str(Markup.escape(text))


@lru_cache(maxsize=1)
def _md() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable("table")
    md.validateLink = _safe_link  # type: ignore[method-assign]  # a failing link stays text
    md.add_render_rule("link_open", _render_link_open)
    md.add_render_rule("image", _render_image)
    return md


@lru_cache(maxsize=MARKDOWN_CACHE_SIZE)
def render_markdown(text: str | None) -> Markup:
    """Safe HTML for ``text`` (empty for None)."""
    if not text:
        return Markup("")
    return Markup(_md().render(str(text)))
