"""Macro expansion: `` `name` `` and `` `name(a, "b c")` `` replaced by their definitions.

Macros are looked up by key (``name`` for none, ``name(n)`` for n arguments, as
:attr:`ruleatlas.model.Macro.key`), ``$arg$`` is substituted, and the result is expanded again
(recursively, with cycle detection and a depth limit). Two families that security_content does
not ship are built in, as Splunk content defines them:

* ``<detection>_filter``: contentctl generates each as ``search *`` (empty by default, for the
  customer to tune); shown as a filter macro;
* ``drop_dm_object_name(obj)``: Splunk ES's ``rename obj.* AS *``.

An unknown macro is left in place (the parser keeps it as an opaque term or stage) and
reported; expansion never fails.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from ruleatlas.caching import SPL_MACRO_CALLS, BoundedCache
from ruleatlas.languages.parsing import ParseError, span_of
from ruleatlas.languages.spl.tokens import T, Tokenizer
from ruleatlas.model import Macro, Problem

FILTER_DEFINITION = "search *"
BUILTIN: dict[str, Macro] = {
    "drop_dm_object_name(1)": Macro(
        "drop_dm_object_name", "rename $object$.* AS *", ("object",),
        "Splunk ES: drop the datamodel object prefix from field names (built in)",
    ),
}
MAX_DEPTH = 30


@dataclass
class Expansion:
    """The expanded text, the macro keys used (in first-use order), and problems."""

    text: str
    used: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    filters: list[str] = field(default_factory=list)  # filter macros met (empty by default)


def split_call(body: str) -> tuple[str, list[str]]:
    """``name(a, "b, c")`` -> ("name", ["a", '"b, c"']); arguments stripped, quotes kept."""
    body = body.strip()
    if "(" not in body or not body.endswith(")"):
        return body, []
    name, rest = body.split("(", 1)
    inner = rest[:-1]
    args: list[str] = []
    depth, quote, cur = 0, False, []
    i = 0
    while i < len(inner):
        ch = inner[i]
        if quote:
            cur.append(ch)
            if ch == "\\" and i + 1 < len(inner):
                cur.append(inner[i + 1])
                i += 2
                continue
            if ch == '"':
                quote = False
        elif ch == '"':
            quote = True
            cur.append(ch)
        elif ch in "([":
            depth += 1
            cur.append(ch)
        elif ch in ")]":
            depth -= 1
            cur.append(ch)
        elif ch == "," and depth == 0:
            args.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
        i += 1
    if cur or args:
        args.append("".join(cur).strip())
    return name.strip(), args


def macro_key(body: str) -> str:
    name, args = split_call(body)
    return f"{name}({len(args)})" if args else name


def lookup(body: str, macros: Mapping[str, Macro]) -> tuple[str, Macro | None, list[str]]:
    """Key, the macro (None if unknown), and the call's arguments."""
    name, args = split_call(body)
    key = f"{name}({len(args)})" if args else name
    m = macros.get(key) or BUILTIN.get(key)
    if m is None and not args and name.endswith("_filter"):
        m = Macro(name, FILTER_DEFINITION, (), "filter macro (empty by default)")
    return key, m, args


def substitute(m: Macro, args: list[str]) -> str:
    text = m.definition
    for name, value in zip(m.arguments, args, strict=False):
        text = text.replace(f"${name}$", value)
    return text


# Expansions of one macro call, per macro table: most rules call the same few macros
# (summariesonly, ctime, drop_dm_object_name), so each call is expanded once per table.
# The cache is bound to the table (held, not its id): a new table empties it.
_CACHE: BoundedCache[tuple[int, str], tuple[str, list[str], list[Problem], list[str]]] = (
    BoundedCache(SPL_MACRO_CALLS))


def expand(text: str, macros: Mapping[str, Macro]) -> Expansion:
    """Expand every macro call in ``text`` (comments are dropped from the result)."""
    out = Expansion(text)
    if "`" not in text:
        return out
    _CACHE.bind(macros)
    out.text = _expand(text, macros, out, (), 0, text)
    return out


def _expand(text: str, macros: Mapping[str, Macro], out: Expansion, stack: tuple[str, ...],
            depth: int, top: str) -> str:
    tz = Tokenizer(text)
    try:
        toks = tz.tokenize()
    except ParseError:
        return text  # kept unexpanded: parsing this text reports the error with its position
    macro_toks = [t for t in toks if t.kind is T.MACRO]
    cuts: list[tuple[int, int, str]] = [(a, b, " ") for a, b in tz.comments]
    for t in macro_toks:
        key, m, args = lookup(t.text, macros)
        if key not in out.used:
            out.used.append(key)
        if m is None:
            if not stack:
                out.problems.append(Problem(f"unknown macro `{t.text}` (kept as written)",
                                            "warning", span_of(top, t.start, t.end),
                                            "unknown-macro"))
            else:
                out.problems.append(Problem(
                    f"unknown macro `{t.text}` inside `{stack[-1]}` (kept as written)",
                    "warning", None, "unknown-macro"))
            continue
        if m.definition == FILTER_DEFINITION and m.name.endswith("_filter"):
            out.filters.append(key)
        if key in stack or depth >= MAX_DEPTH:
            chain = " -> ".join((*stack, key))
            out.problems.append(Problem(f"macro cycle or too deep: {chain}", "error", None,
                                        "macro-cycle"))
            continue
        cache_key = (depth, t.text) if not stack else None
        hit = _CACHE.get(cache_key) if cache_key else None
        if hit is not None:
            body, used, probs, filts = hit
            out.used.extend(k for k in used if k not in out.used)
            out.problems.extend(probs)
            out.filters.extend(filts)
            cuts.append((t.start, t.end, body))
            continue
        if key in BUILTIN:
            args = [a[1:-1] if len(a) >= 2 and a[0] == a[-1] == '"' else a for a in args]
        sub = Expansion("")
        body = _expand(substitute(m, args), macros, sub, (*stack, key), depth + 1, top)
        out.used.extend(k for k in sub.used if k not in out.used)
        out.problems.extend(sub.problems)
        out.filters.extend(sub.filters)
        if cache_key:
            _CACHE.put(cache_key, (body, sub.used, sub.problems, sub.filters))
        cuts.append((t.start, t.end, body))
    if not cuts:
        return text
    cuts.sort()
    parts: list[str] = []
    pos = 0
    for a, b, repl in cuts:
        parts.append(text[pos:a])
        parts.append(repl)
        pos = b
    parts.append(text[pos:])
    return "".join(parts)


# A macro call as written in a search: name, then optional (arguments) with one level of nesting.
_MACRO_CALL = re.compile(r"`([A-Za-z0-9_.:-]+(?:\((?:[^`()]|\([^`()]*\))*\))?)`")


def macro_calls(text: str) -> list[str]:
    """The keys of the macros a search calls, read from its text (for searches that do not
    parse, whose analysis cannot say)."""
    return [macro_key(body) for body in _MACRO_CALL.findall(text)]
