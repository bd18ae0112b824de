"""Query parameters: declared per page, validated before any query runs.

A page declares ``PARAMS = {"page": Int(1, 10_000), "source": Text(multi=True), ...}``. Unknown
names, repeated single values, junk numbers, over-long or control-character text all become a
:class:`WebError` 400 that names the parameter, in the one error shape of the site.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class WebError(Exception):
    """An HTTP error with a message for the user (and a status)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Param:
    """Base: a text parameter; ``multi`` allows repetition (``?source=a&source=b``)."""

    help: str = ""
    multi: bool = False
    max_len: int = 200
    choices: tuple[str, ...] | None = None
    pattern: str | None = None
    default: Any = None
    kind: str = "string"

    def parse(self, name: str, raw: str) -> Any:
        if len(raw) > self.max_len:
            raise WebError(400, f"parameter {name!r} is too long (max {self.max_len} characters)")
        if _CONTROL.search(raw):
            raise WebError(400, f"parameter {name!r} contains control characters")
        if self.choices is not None and raw not in self.choices:
            raise WebError(
                400, f"parameter {name!r} must be one of {', '.join(self.choices)}; got {raw!r}"
            )
        if self.pattern is not None and not re.fullmatch(self.pattern, raw):
            raise WebError(400, f"parameter {name!r} is not valid: {raw!r}")
        return raw

    def schema(self) -> dict[str, Any]:
        """The JSON Schema of one value: what :meth:`parse` accepts (a JSON Schema ``pattern``
        matches anywhere, so it is anchored; control characters are refused)."""
        s: dict[str, Any] = {"type": self.kind, "maxLength": self.max_len}
        if self.choices:
            s["enum"] = list(self.choices)
        s["pattern"] = (f"^(?:{self.pattern})$" if self.pattern
                        else f"^[^{_CONTROL.pattern[1:-1]}]*$")
        if self.default is not None:
            s["default"] = self.default
        if self.multi:
            return {"type": "array", "items": s}
        return s


@dataclass(frozen=True, slots=True)
class Int(Param):
    lo: int = 0
    hi: int = 1_000_000
    kind: str = "integer"

    def parse(self, name: str, raw: str) -> Any:
        if not re.fullmatch(r"\d{1,9}", raw.strip()):
            raise WebError(400, f"parameter {name!r} must be an integer; got {raw[:40]!r}")
        v = int(raw)
        if not self.lo <= v <= self.hi:
            raise WebError(400, f"parameter {name!r} must be between {self.lo} and {self.hi}")
        return v

    def schema(self) -> dict[str, Any]:
        s: dict[str, Any] = {"type": "integer", "minimum": self.lo, "maximum": self.hi}
        if self.default is not None:
            s["default"] = self.default
        return s


def parse_query(
    items: Iterable[tuple[str, str]], spec: Mapping[str, Param]
) -> dict[str, Any]:
    """Validate a query string against a page's parameter spec."""
    out: dict[str, Any] = {}
    for name, raw in items:
        p = spec.get(name)
        if p is None:
            allowed = ", ".join(sorted(spec)) or "none"
            raise WebError(400, f"unknown parameter {name[:40]!r} (allowed: {allowed})")
        if raw == "" and p.default is None:
            continue  # an empty form field means "not set"
        v = p.parse(name, raw) if raw != "" else p.default
        if p.multi:
            out.setdefault(name, []).append(v)
        elif name in out:
            raise WebError(400, f"parameter {name!r} given more than once")
        else:
            out[name] = v
    for name, p in spec.items():
        if name not in out:
            out[name] = [] if p.multi else p.default
    return out
