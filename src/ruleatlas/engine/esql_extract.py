"""ES|QL ``dissect`` and ``grok``: columns extracted from a text column, on each row.

* ``dissect input "pattern"`` (Elastic's dissect syntax): literal text and ``%{key}``
  placeholders; ``%{}`` / ``%{?name}`` skip, ``%{+name}`` appends to ``name`` (joined by
  ``append_separator``, default empty), ``%{key->}`` lets the following delimiter repeat. A key
  takes the text up to the next delimiter, the last one the rest. A value that does not match
  leaves every key null, as ES|QL does.
* ``grok input "pattern"``: a regular expression (Oniguruma's ``(?<name>...)`` groups, field
  names may hold dots) with ``%{NAME:field[:int|float]}`` references to Elastic's grok
  library; the patterns the engine has are in :data:`GROK` (others make the rule not
  runnable). The match is a search (unanchored unless the pattern says ``^``/``$``); no match
  leaves the fields null.

A null or multi-valued input leaves the outputs null.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from ruleatlas.engine.compile import NotRunnable
from ruleatlas.engine.esql_functions import single

Rows = list[dict[str, Any]]

_DISSECT_KEY = re.compile(r"%\{([^}]*)\}")
_GROK_REF = re.compile(r"%\{(\w+)(?::([\w.@]+))?(?::(int|float|long|double))?\}")
_NAMED = re.compile(r"\(\?<([A-Za-z_@][\w.@]*)>")

_IPV4 = (r"(?<![0-9])(?:(?:[0-1]?[0-9]{1,2}|2[0-4][0-9]|25[0-5])[.](?:[0-1]?[0-9]{1,2}|2[0-4]"
         r"[0-9]|25[0-5])[.](?:[0-1]?[0-9]{1,2}|2[0-4][0-9]|25[0-5])[.](?:[0-1]?[0-9]{1,2}|2[0-4]"
         r"[0-9]|25[0-5]))(?![0-9])")
# Elastic's grok library (libs/grok/src/main/resources/patterns/ecs-v1), the patterns the
# corpus's ES|QL rules use and what they reference; IPV6 is simplified to hex groups and colons.
GROK: dict[str, str] = {
    "WORD": r"\b\w+\b", "NOTSPACE": r"\S+", "SPACE": r"\s*", "DATA": r".*?",
    "GREEDYDATA": r".*", "INT": r"(?:[+-]?(?:[0-9]+))", "POSINT": r"\b(?:[1-9][0-9]*)\b",
    "NONNEGINT": r"\b(?:[0-9]+)\b", "NUMBER": r"(?:[+-]?(?:(?:[0-9]+(?:\.[0-9]+)?)|(?:\.[0-9]+)))",
    "USERNAME": r"[a-zA-Z0-9._-]+", "USER": r"%{USERNAME}", "IPV4": _IPV4,
    "IPV6": r"(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}", "IP": r"(?:%{IPV6}|%{IPV4})",
    "HOSTNAME": (r"\b(?:[0-9A-Za-z][0-9A-Za-z-]{0,62})(?:\.(?:[0-9A-Za-z][0-9A-Za-z-]{0,62}))*"
                 r"(?:\.?|\b)"),
    "IPORHOST": r"(?:%{IP}|%{HOSTNAME})", "URIPROTO": r"[A-Za-z](?:[A-Za-z0-9+\-.]+)+",
    "URIHOST": r"%{IPORHOST}(?::%{POSINT})?", "EMAILADDRESS": r"[a-zA-Z0-9._%+-]+@%{HOSTNAME}",
    "QUOTEDSTRING": r"\"(?:[^\"\\]|\\.)*\"",
}


def outputs(mode: str, pattern: str) -> list[str]:
    """The columns a ``dissect`` or ``grok`` pattern writes."""
    if mode == "dissect":
        out = []
        for k in _DISSECT_KEY.findall(pattern):
            k = k.lstrip("+*&").split("->")[0].split("/")[0]
            if k and not k.startswith("?") and k not in out:
                out.append(k)
        return out
    names = [m.group(2) for m in _GROK_REF.finditer(pattern) if m.group(2)]
    names += _NAMED.findall(pattern)
    return list(dict.fromkeys(names))


def compile_extract(spec: Mapping[str, Any]) -> Callable[[Rows], Rows]:
    """The row operation of a ``rex`` step with mode ``dissect`` or ``grok``."""
    src = str(spec.get("field"))
    pattern = str(spec.get("pattern") or "")
    mode = str(spec.get("mode") or "")
    # the value is matched (a dissect pattern whole, a grok pattern anywhere in it), then the
    # match fills the row's new columns
    find: Callable[[str], re.Match[str] | None]
    fill: Callable[[re.Match[str]], dict[str, Any]]
    if mode == "dissect":
        sep = spec.get("separator")
        rx, keys = dissect_regex(pattern)
        find, fill = rx.fullmatch, _dissect_fill(keys, sep if isinstance(sep, str) else "")
    elif mode == "grok":
        grx, names = grok_regex(pattern)
        find, fill = grx.search, _grok_fill(names)
    else:
        raise NotRunnable(f"extraction mode {mode!r} is not an ES|QL command")
    cols = outputs(mode, pattern)

    def op(rows: Rows) -> Rows:
        for r in rows:
            v = single(r.get(src))
            m = find(v) if isinstance(v, str) else None
            for c in cols:
                r.pop(c, None)
            if m is not None:
                r.update(fill(m))
        return rows

    return op


@lru_cache(maxsize=256)
def dissect_regex(pattern: str) -> tuple[re.Pattern[str], tuple[tuple[str, str], ...]]:
    """A dissect pattern as a regular expression: its groups in order, each with its key
    name and kind (``set``, ``append``, ``skip``)."""
    parts = _DISSECT_KEY.split(pattern)  # literal, key, literal, key, ...
    out: list[str] = []
    names: list[tuple[str, str]] = []
    keys = parts[1::2]
    for i, lit in enumerate(parts[0::2]):
        pad = i > 0 and keys[i - 1].endswith("->")
        if lit:
            out.append(f"(?:{re.escape(lit)})+" if pad else re.escape(lit))
        if i < len(keys):
            k = keys[i].removesuffix("->")
            last = i == len(keys) - 1 and not parts[2 * i + 2]
            out.append("(.*)" if last else "(.*?)")
            kind = ("skip" if not k or k.startswith("?") else
                    "append" if k.startswith("+") else "set")
            names.append((k.lstrip("+?*&").split("/")[0], kind))
    return re.compile("".join(out), re.S), tuple(names)


def _dissect_fill(names: tuple[tuple[str, str], ...], sep: str
                  ) -> Callable[[re.Match[str]], dict[str, Any]]:
    """The columns a dissect match gives: each key's text, ``+`` keys appended with ``sep``."""
    def fill(m: re.Match[str]) -> dict[str, Any]:
        got: dict[str, Any] = {}
        for (name, kind), value in zip(names, m.groups(), strict=True):
            if kind == "skip":
                continue
            if kind == "append" and name in got:
                got[name] = f"{got[name]}{sep}{value}"
            else:
                got[name] = value
        return got

    return fill


@lru_cache(maxsize=256)
def grok_regex(pattern: str) -> tuple[re.Pattern[str], tuple[tuple[str, str, str], ...]]:
    """A grok pattern as a Python regular expression: groups ``g0, g1, ...`` with their
    column name and type (``int``/``float``/empty)."""
    names: list[tuple[str, str, str]] = []

    def group(name: str, typ: str = "") -> str:
        names.append((f"g{len(names)}", name, typ))
        return f"(?P<{names[-1][0]}>"

    def ref(m: re.Match[str], depth: int = 0) -> str:
        body = GROK.get(m.group(1))
        if body is None or depth > 10:
            raise NotRunnable(f"grok pattern %{{{m.group(1)}}} is not known to the engine")
        body = _GROK_REF.sub(lambda x: ref(x, depth + 1), body) if depth < 10 else body
        if m.group(2) and depth == 0:
            return group(m.group(2), m.group(3) or "") + body + ")"
        return f"(?:{body})"

    text = _NAMED.sub(lambda m: group(m.group(1)), pattern)
    text = _GROK_REF.sub(ref, text)
    try:
        return re.compile(text, re.S), tuple(names)
    except re.error as exc:
        raise NotRunnable(f"grok pattern {pattern[:60]!r}: {exc}") from None


def _grok_fill(names: tuple[tuple[str, str, str], ...]
               ) -> Callable[[re.Match[str]], dict[str, Any]]:
    """The columns a grok match gives: each named group that matched, typed as it says."""
    def fill(m: re.Match[str]) -> dict[str, Any]:
        got: dict[str, Any] = {}
        for g, name, typ in names:
            x = m.group(g)
            if x is None:
                continue
            if typ in ("int", "long"):
                got[name] = int(x)
            elif typ in ("float", "double"):
                got[name] = float(x)
            else:
                got[name] = x
        return got

    return fill
