"""YAML helpers shared by the readers: fast C loading, documents with their exact text, located
errors, and top-level block slicing by line position.

Why not ``yaml.load_all`` on the whole file: a rule collection needs each document's own text
(``Rule.body``) and first line, and an error in one document must not lose the others. Splitting
on document markers first (``---``/``...`` at column 0, which YAML forbids inside content) gives
both, and each piece is parsed once with libyaml's ``CSafeLoader``. Nothing here re-reads files.
"""

from __future__ import annotations

import configparser
import datetime as _dt
import hashlib
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from ruleatlas.caching import GIT_REMOTES

try:  # libyaml is required for speed; fall back so a missing C build still works.
    from yaml import CSafeLoader as _Base
except ImportError:  # pragma: no cover - depends on the PyYAML build
    from yaml import SafeLoader as _Base  # type: ignore[assignment]


class Loader(_Base):  # type: ignore[misc,valid-type]
    """libyaml's safe loader without the timestamp resolver: dates stay the text as written
    (``2024-09-30``), so records are JSON-able, and a bad date (``2024-13-45``) is a value for
    the validator to report with its key, not a constructor crash that loses the document."""


Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in rs if tag != "tag:yaml.org,2002:timestamp"]
    for ch, rs in _Base.yaml_implicit_resolvers.items()
}


def _as_text(loader: Any, node: Any) -> str:
    return str(loader.construct_scalar(node))


# Explicit ``!!timestamp`` / ``!!binary`` values also stay text, so every loaded value is
# JSON-able without a second walk over the document.
Loader.add_constructor("tag:yaml.org,2002:timestamp", _as_text)
Loader.add_constructor("tag:yaml.org,2002:binary", _as_text)

_MARKER = re.compile(r"^(?:---|\.\.\.)(?=[ \t]|\r?$)", re.M)
_END_MARKER = re.compile(r"^\.\.\.[ \t]*(?:#.*)?\r?\n?\Z", re.M)
_TOP_KEY = re.compile(r"^(?![ \t#\r\n]|-(?:[ \t]|$)|---|\.\.\.)", re.M)


@dataclass(frozen=True, slots=True)
class Doc:
    """One YAML document of a file: its exact text, 1-based first line, 0-based index, and the
    loaded value (``None`` with ``error`` set when it failed)."""

    index: int
    line: int
    text: str
    data: Any = None
    error: YamlProblem | None = None


@dataclass(frozen=True, slots=True)
class YamlProblem:
    """A YAML parse failure with its file-relative 1-based line/column."""

    reason: str
    line: int | None = None
    col: int | None = None
    kind: str = "yaml"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode(data: bytes) -> str | YamlProblem:
    """UTF-8 text (a BOM is dropped), or a located ``encoding`` problem."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        return YamlProblem(f"not UTF-8: {e.reason} at byte {e.start}", line, col, "encoding")
    return text[1:] if text.startswith("\ufeff") else text


def _problem(e: yaml.YAMLError, line_offset: int) -> YamlProblem:
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    reason = " ".join(str(e).split()) if not isinstance(e, yaml.MarkedYAMLError) else (
        " ".join(x for x in (e.context, e.problem) if x) or type(e).__name__
    )
    if mark is None:
        return YamlProblem(reason)
    return YamlProblem(reason, mark.line + 1 + line_offset, mark.column + 1)


def load_one(text: str, line_offset: int = 0) -> tuple[Any, YamlProblem | None]:
    """One document's value with libyaml, or the located problem."""
    try:
        return yaml.load(text, Loader=Loader), None  # CSafeLoader: safe
    except yaml.YAMLError as e:
        return None, _problem(e, line_offset)
    except Exception as e:  # recorded: libyaml raises odd errors on binary junk
        return None, YamlProblem(f"{type(e).__name__}: {e}")


def split_documents(text: str) -> list[tuple[int, str]]:
    """``(first line, text)`` of each document; a leading ``---`` or a trailing ``...`` does not
    make an empty document, and whitespace/comment-only pieces are dropped."""
    if "---" not in text and "..." not in text:
        return [(1, text)]
    pieces: list[tuple[int, str]] = []
    starts = [0]
    for m in _MARKER.finditer(text):
        starts.append(m.start())
    starts.append(len(text))
    for a, b in itertools.pairwise(starts):
        piece = text[a:b]
        if not piece:
            continue
        line = text.count("\n", 0, a) + 1
        pieces.append((line, piece))
    out = [(ln, p) for ln, p in pieces if _has_content(p)]
    return out


def _has_content(piece: str) -> bool:
    for raw in piece.splitlines():
        s = raw.strip()
        if not s or s.startswith("#") or s in ("---", "...") or s.startswith("%"):
            continue
        if s.startswith("--- ") or s.startswith("---\t"):
            rest = s[3:].strip()
            if rest and not rest.startswith("#"):
                return True
            continue
        return True
    return False


def load_documents(text: str) -> Iterator[Doc]:
    """Every document of ``text`` with its exact text and value (or located problem)."""
    for i, (line, piece) in enumerate(split_documents(text)):
        data, err = load_one(piece, line - 1)
        # Text of the document without the marker line: what the user wrote as that rule.
        body, first = _strip_marker(piece, line)
        yield Doc(i, first, body, data if err is None else None, err)


def _strip_marker(piece: str, line: int) -> tuple[str, int]:
    """Drop leading ``---`` marker and blank lines (so ``line`` is the first real line) and a
    trailing ``...`` end marker; everything else of the document is kept byte for byte."""
    pos, k = 0, 0
    while pos < len(piece):
        nl = piece.find("\n", pos)
        end = len(piece) if nl < 0 else nl + 1
        if piece[pos:end].strip() not in ("---", "", "..."):
            break
        pos, k = end, k + 1
    if pos >= len(piece):
        return piece, line
    body = piece[pos:]
    m = _END_MARKER.search(body)
    if m:
        body = body[: m.start()]
    return body, line + k


def plain(v: Any) -> Any:
    """Dates/times to ISO strings, recursively, so records are JSON-able and match the text."""
    if isinstance(v, dict):
        return {(plain(k) if not isinstance(k, str) else k): plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [plain(x) for x in v]
    if isinstance(v, (_dt.date, _dt.datetime)):
        return v.isoformat()
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return v


def top_block(text: str, key: str) -> tuple[str, int] | None:
    """The exact text of the top-level ``key:`` block of a document and its 0-based line index
    within ``text``: from the key line to the line before the next top-level key, trailing blank
    and comment lines dropped. ``None`` when the key is not written plainly at column 0."""
    m = re.search(rf"^(?:{re.escape(key)}|'{re.escape(key)}'|\"{re.escape(key)}\")[ \t]*:",
                  text, re.M)
    if m is None:
        return None
    start = m.start()
    nxt = _TOP_KEY.search(text, text.find("\n", start) + 1 if "\n" in text[start:] else len(text))
    end = nxt.start() if nxt else len(text)
    block = text[start:end]
    lines = block.splitlines(keepends=True)
    while len(lines) > 1 and (not lines[-1].strip() or lines[-1].lstrip().startswith("#")):
        lines.pop()
    return "".join(lines).rstrip("\n"), text.count("\n", 0, start)


@lru_cache(maxsize=GIT_REMOTES)
def github_remote(root: str, default: str) -> str:
    """``https://github.com/<owner>/<repo>`` of the clone's GitHub remote (``origin`` first),
    else ``default``: a fork's rules link to the fork."""
    cfg = Path(root) / ".git" / "config"
    if not cfg.is_file():
        return default
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    try:
        cp.read(cfg, encoding="utf-8")
    except (configparser.Error, OSError, UnicodeDecodeError):
        return default
    sections = sorted((s for s in cp.sections() if s.startswith("remote")),
                      key=lambda s: s != 'remote "origin"')
    for sec in sections:
        m = re.search(r"github\.com[:/]+([^/\s]+)/([^/\s]+?)(?:\.git)?/?$",
                      cp.get(sec, "url", fallback=""))
        if m:
            return f"https://github.com/{m.group(1)}/{m.group(2)}"
    return default
