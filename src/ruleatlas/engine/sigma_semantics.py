"""Value semantics shared by the matchers: text of an event value, wildcard patterns, and the
Sigma value transforms (``windash``, ``base64``, ``base64offset``, ``wide``/``utf16*``).

The analyzers keep a rule's values *as written* plus the names of the transforms (so a rule page
shows ``|base64offset|contains: 'IEX'``); this module expands them exactly as pySigma's
``sigma/modifiers.py`` does, once, at compile time. Nothing here runs per event except
:func:`to_text` and the closures :func:`pattern_test` returns.
"""

from __future__ import annotations

import re
from base64 import b64encode
from collections.abc import Callable
from itertools import product
from typing import Any

from ruleatlas.model import AtlasError, Pattern, Value, Wild

StrTest = Callable[[str], bool]

# --------------------------------------------------------------------------------------------
# Event values as text
# --------------------------------------------------------------------------------------------


def to_text(v: Any) -> str:
    """The text a rule value is compared with: ``4104`` and ``"4104"`` give the same text,
    booleans are ``true``/``false`` (as they read in XML and YAML), integral floats lose ``.0``.
    """
    if type(v) is str:
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, (dict, list)):
        import json

        return json.dumps(v, ensure_ascii=False, sort_keys=True)
    return str(v)


def as_number(v: Any) -> float | None:
    """A number from an int/float or a numeric string (decimal or ``0x`` hex); None otherwise."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        s = v.strip()
        if not s:
            return None
        try:
            return float(int(s, 16)) if s[:2] in ("0x", "0X") else float(s)
        except ValueError:
            return None
    return None


# --------------------------------------------------------------------------------------------
# Patterns
# --------------------------------------------------------------------------------------------


def as_pattern(v: str | Pattern) -> Pattern:
    return v if isinstance(v, Pattern) else Pattern((v,))


def anchored(op: str, v: str | Pattern) -> Pattern:
    """The whole-value pattern an operator means: ``contains x`` is ``*x*``, ``startswith x`` is
    ``x*``, ``endswith x`` is ``*x``; ``eq``/``wildcard`` use the value as it is."""
    p = as_pattern(v)
    if op == "contains":
        return Pattern((Wild.ANY, *p.parts, Wild.ANY))
    if op == "startswith":
        return Pattern((*p.parts, Wild.ANY))
    if op == "endswith":
        return Pattern((Wild.ANY, *p.parts))
    return p


def _collapse(parts: tuple[str | Wild, ...]) -> tuple[str | Wild, ...]:
    """``**`` is ``*``: merge runs of ANY so the fast paths below see their shapes."""
    out: list[str | Wild] = []
    for p in parts:
        if p is Wild.ANY and out and out[-1] is Wild.ANY:
            continue
        out.append(p)
    return tuple(out)


def pattern_regex(p: Pattern, cased: bool) -> re.Pattern[str]:
    """A whole-value regex for a pattern (``*`` any run incl. newlines, ``?`` one char)."""
    out: list[str] = []
    for part in p.parts:
        if part is Wild.ANY:
            out.append(".*")
        elif part is Wild.ONE:
            out.append(".")
        else:
            out.append(re.escape(part if cased else part.lower()))
    return re.compile("".join(out), re.DOTALL)


def pattern_test(p: Pattern, cased: bool) -> StrTest:
    """A test of one event text (already lowered when not ``cased``) against a pattern.

    The common shapes become ``str`` methods (``==``, ``in``, ``startswith``, ``endswith``); the
    rest a precompiled ``fullmatch``. Literal parts are lowered here, once.
    """
    parts = _collapse(p.parts)

    def lit(s: str) -> str:
        return s if cased else s.lower()

    if not parts:
        return lambda s: s == ""
    if all(isinstance(x, str) for x in parts):
        text = lit("".join(parts))  # type: ignore[arg-type]
        return lambda s: s == text
    if parts == (Wild.ANY,):
        return lambda s: True
    if len(parts) == 3 and parts[0] is Wild.ANY and parts[2] is Wild.ANY and isinstance(
        parts[1], str
    ):
        t = lit(parts[1])
        return lambda s: t in s
    if len(parts) == 2 and isinstance(parts[0], str) and parts[1] is Wild.ANY:
        t = lit(parts[0])
        return lambda s: s.startswith(t)
    if len(parts) == 2 and parts[0] is Wild.ANY and isinstance(parts[1], str):
        t = lit(parts[1])
        return lambda s: s.endswith(t)
    rx = pattern_regex(Pattern(parts), cased)
    fm = rx.fullmatch
    return lambda s: fm(s) is not None


# --------------------------------------------------------------------------------------------
# Sigma value transforms
# --------------------------------------------------------------------------------------------

EN_DASH, EM_DASH, HORIZONTAL_BAR = "\u2013", "\u2014", "\u2015"
WINDASH_CHARS = ("-", "/", EN_DASH, EM_DASH, HORIZONTAL_BAR)
_WINDASH_AT = re.compile(r"\B[-/]\b")
MAX_WINDASH = 3

# name -> (codec, byte order mark) for the encodings that feed base64/base64offset.
ENCODINGS: dict[str, tuple[str, bytes]] = {
    "wide": ("utf-16le", b""),
    "utf16le": ("utf-16le", b""),
    "utf16be": ("utf-16be", b""),
    "utf16": ("utf-16le", b"\xff\xfe"),
}
_BASE64_START = (0, 2, 3)
_BASE64_END = (None, -3, -2)


class TransformError(AtlasError):
    """A transform that cannot apply to a value (wildcards under base64, unknown name)."""


def windash(v: str | Pattern) -> list[str | Pattern]:
    """Every dash variant of a value: each ``-``/``/`` that starts a word (``\\B[-/]\\b``,
    pySigma's rule) becomes ``-``, ``/``, en dash, em dash and horizontal bar; at most three
    such dashes per value, as pySigma allows."""
    p = as_pattern(v)
    slots: list[list[str | Wild]] = []
    count = 0
    for part in p.parts:
        if isinstance(part, Wild):
            slots.append([part])
            continue
        pos = 0
        for m in _WINDASH_AT.finditer(part):
            if m.start() > pos:
                slots.append([part[pos : m.start()]])
            slots.append(list(WINDASH_CHARS))
            count += 1
            pos = m.end()
        if pos < len(part):
            slots.append([part[pos:]])
    if count > MAX_WINDASH:
        raise TransformError(f"windash expands at most {MAX_WINDASH} dashes, value has {count}")
    out: list[str | Pattern] = []
    for combo in product(*slots):
        np = Pattern(tuple(combo))
        lit = np.literal()
        out.append(np if lit is None else lit)
    return out


def _encode(text: str, enc: tuple[str, bytes]) -> bytes:
    codec, bom = enc
    return bom + text.encode(codec)


def base64_plain(data: bytes) -> str:
    return b64encode(data).decode()


def base64_offsets(data: bytes) -> list[str]:
    """The three encodings of ``data`` at byte offsets 0, 1, 2 in a longer string, with the
    characters that depend on unknown neighbours cut off (pySigma's ``base64offset``)."""
    return [
        b64encode(i * b" " + data)[_BASE64_START[i] : _BASE64_END[(len(data) + i) % 3]].decode()
        for i in range(3)
    ]


def _wide_text(v: str | Pattern, enc: tuple[str, bytes]) -> str | Pattern:
    """An encoding left without a base64 after it: each literal char becomes its code units as
    chars (``"ab"`` wide -> ``"a\\x00b\\x00"``), as pySigma's ``wide`` does."""
    codec, bom = enc

    def conv(s: str) -> str:
        return s.encode(codec).decode("latin-1")

    if isinstance(v, str):
        return ("\ufeff" if bom else "") + conv(v)
    parts: list[str | Wild] = ["\ufeff"] if bom else []
    parts.extend(conv(x) if isinstance(x, str) else x for x in v.parts)
    return Pattern(tuple(parts))


def expand(value: Value, transforms: tuple[str, ...]) -> list[Value]:
    """A rule value after its transforms, in order: a list (windash and base64offset expand
    one value into several). Non-text values pass through unchanged."""
    if not transforms or not isinstance(value, (str, Pattern)):
        return [value]
    vals: list[str | Pattern] = [value]
    enc: tuple[str, bytes] | None = None
    for name in transforms:
        if name in ENCODINGS:
            enc = ENCODINGS[name]
        elif name in ("base64", "base64offset"):
            nxt: list[str | Pattern] = []
            for v in vals:
                text = v if isinstance(v, str) else v.literal()
                if text is None:
                    raise TransformError(f"{name} of a value with wildcards: {v}")
                data = _encode(text, enc) if enc else text.encode("utf-8")
                nxt.extend([base64_plain(data)] if name == "base64" else base64_offsets(data))
            vals, enc = nxt, None
        elif name == "windash":
            vals = [w for v in vals for w in windash(v)]
        elif name in ("cased", "re", "i", "m", "s", "all", "fieldref", "exists", "cidr"):
            continue  # markers the analyzer already turned into predicate fields
        elif name == "expand":
            raise TransformError("the expand modifier needs placeholder values (%name%) from a "
                                 "pipeline the engine does not have")
        else:
            raise TransformError(f"unknown transform {name!r}")
    if enc is not None:
        vals = [_wide_text(v, enc) for v in vals]
    return list(vals)
