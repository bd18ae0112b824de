"""SPL eval functions and operators for :class:`model.Condition` expressions.

A ``Condition`` holds a :class:`model.Term` tree (``Call("len", (FieldRef("x"),))``); this module
compiles it ONCE into a closure over an event's fields. Functions are a dict (house rule 4):
``FUNCTIONS`` take evaluated arguments; ``LAZY`` ones (``if``, ``case``, ``AND``, ``OR``,
``coalesce``) take argument closures so they evaluate only what they need.

SPL semantics kept here: null (a missing field) propagates through functions and makes
comparisons false; ``where``/eval comparisons of strings are case-sensitive; ``like`` uses ``%``
and ``_`` and is case-sensitive; ``match`` is an unanchored regex search; numbers compare as
numbers when both sides look numeric, else as strings. A function the table does not know makes
the rule not runnable (:class:`UnknownFunction`), never a silent false.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any
from urllib.parse import unquote_plus

from ruleatlas.caching import SPL_REGEXES
from ruleatlas.engine.sigma_semantics import as_number, to_text
from ruleatlas.model import AtlasError, Call, FieldRef, Term

Fields = Mapping[str, Any]
Eval = Callable[[Fields], Any]


class UnknownFunction(AtlasError):
    """An SPL function or operator the engine does not implement."""


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _num(v: Any) -> float | None:
    return as_number(v)


def _out_num(x: float) -> int | float:
    return int(x) if isinstance(x, float) and x.is_integer() else x


def _mv(v: Any) -> list[Any]:
    if v is None:
        return []
    return list(v) if isinstance(v, (list, tuple)) else [v]


def truthy(v: Any) -> bool:
    """SPL truth: null and false are false; anything else (a value, a match) is true."""
    if v is None or v is False:
        return False
    return True


def compare(op: str, a: Any, b: Any) -> bool:
    """Comparison with SPL's rules: null on either side is false; numbers compare as numbers
    when both sides are numeric; strings compare case-sensitively. A multivalue left side is
    true when any value compares true."""
    if a is None or b is None:
        return False
    if isinstance(a, list):
        return any(compare(op, x, b) for x in a)
    na, nb = _num(a), _num(b)
    x: Any
    y: Any
    if na is not None and nb is not None:
        x, y = na, nb
    else:
        x, y = to_text(a), to_text(b)
    if op in ("=", "=="):
        return bool(x == y)
    if op == "!=":
        return bool(x != y)
    if op == "<":
        return bool(x < y)
    if op == "<=":
        return bool(x <= y)
    if op == ">":
        return bool(x > y)
    if op == ">=":
        return bool(x >= y)
    raise UnknownFunction(f"unknown comparison {op!r}")


@lru_cache(maxsize=SPL_REGEXES)
def like_regex(pattern: str) -> re.Pattern[str]:
    """SQL LIKE: ``%`` any run, ``_`` one char, ``\\`` escapes; the whole value must match."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL)


@lru_cache(maxsize=SPL_REGEXES)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _arith(op: str) -> Callable[[Any, Any], Any]:
    def f(a: Any, b: Any) -> Any:
        x, y = _num(a), _num(b)
        if x is None or y is None:
            if op == "+" and a is not None and b is not None:
                return to_text(a) + to_text(b)  # SPL: + on strings concatenates
            return None
        try:
            r = {"+": x + y, "-": x - y, "*": x * y}.get(op)
            if r is None:
                r = x / y if op == "/" else math.fmod(x, y)
        except ZeroDivisionError:
            return None
        return _out_num(r)

    return f


# --------------------------------------------------------------------------------------------
# Functions on evaluated arguments (None in, None out unless the function is about nulls)
# --------------------------------------------------------------------------------------------


def strict(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Null in any argument gives null (SPL's rule for most eval functions; EQL's and ES|QL's
    too)."""

    def wrapped(*args: Any) -> Any:
        if any(a is None for a in args):
            return None
        return fn(*args)

    return wrapped


def _len(v: Any) -> Any:
    return len(to_text(v))


def _substr(s: Any, start: Any, length: Any = None) -> Any:
    text = to_text(s)
    st = int(_num(start) or 1)
    begin = st - 1 if st > 0 else max(len(text) + st, 0)
    if length is None:
        return text[begin:]
    return text[begin : begin + int(_num(length) or 0)]


def _replace(s: Any, rx: Any, repl: Any) -> Any:
    r = re.sub(r"\\(\d)", r"\\g<\1>", to_text(repl))
    return _regex(to_text(rx)).sub(r, to_text(s))


def _trim(chars: str | None, side: str) -> Callable[..., Any]:
    def f(s: Any, c: Any = None) -> Any:
        t = to_text(s)
        cs = to_text(c) if c is not None else chars
        return t.strip(cs) if side == "b" else t.lstrip(cs) if side == "l" else t.rstrip(cs)

    return f


def _tonumber(v: Any, base: Any = None) -> Any:
    if base is not None:
        try:
            return int(to_text(v).strip(), int(_num(base) or 10))
        except ValueError:
            return None
    n = _num(v)
    return None if n is None else _out_num(n)


def _cidrmatch(cidr: Any, ip: Any) -> Any:
    try:
        net = ipaddress.ip_network(to_text(cidr), strict=False)
        return any(ipaddress.ip_address(to_text(x).strip()) in net for x in _mv(ip))
    except ValueError:
        return False


def _mvindex(v: Any, start: Any, end: Any = None) -> Any:
    vals = _mv(v)
    s = int(_num(start) or 0)
    if end is None:
        try:
            return vals[s]
        except IndexError:
            return None
    e = int(_num(end) or 0)
    out = vals[s : (e + 1) if e != -1 else None]
    return out if len(out) != 1 else out[0]


def _split(s: Any, sep: Any) -> Any:
    parts = to_text(s).split(to_text(sep)) if to_text(sep) else list(to_text(s))
    return parts if len(parts) != 1 else parts[0]


def _round(v: Any, digits: Any = 0) -> Any:
    n = _num(v)
    return None if n is None else _out_num(round(n, int(_num(digits) or 0)))


def _in(v: Any, *vals: Any) -> Any:
    return any(compare("=", v, x) for x in vals)


def _mvfind(v: Any, rx: Any) -> Any:
    r = _regex(to_text(rx))
    for i, x in enumerate(_mv(v)):
        if r.search(to_text(x)):
            return i
    return None


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "len": strict(_len),
    "lower": strict(lambda s: to_text(s).lower()),
    "upper": strict(lambda s: to_text(s).upper()),
    "like": strict(lambda s, p: like_regex(to_text(p)).fullmatch(to_text(s)) is not None),
    "match": strict(lambda s, rx: _regex(to_text(rx)).search(to_text(s)) is not None),
    "searchmatch": None,  # type: ignore[dict-item]  # needs the search language: not runnable
    "tonumber": strict(_tonumber),
    "tostring": strict(lambda v, fmt=None: to_text(v)),
    "replace": strict(_replace),
    "substr": strict(_substr),
    "trim": strict(_trim(None, "b")),
    "ltrim": strict(_trim(None, "l")),
    "rtrim": strict(_trim(None, "r")),
    "isnull": lambda v: v is None,
    "isnotnull": lambda v: v is not None,
    "isnum": lambda v: _num(v) is not None and not isinstance(v, bool),
    "isint": lambda v: (n := _num(v)) is not None and n.is_integer(),
    "isstr": lambda v: isinstance(v, str) and _num(v) is None,
    "cidrmatch": strict(_cidrmatch),
    "mvcount": lambda v: None if v is None else len(_mv(v)),
    "mvindex": strict(_mvindex),
    "mvjoin": strict(lambda v, d: to_text(d).join(to_text(x) for x in _mv(v))),
    "mvfind": strict(_mvfind),
    "split": strict(_split),
    "abs": strict(lambda v: None if (n := _num(v)) is None else _out_num(abs(n))),
    "round": strict(_round),
    "floor": strict(lambda v: None if (n := _num(v)) is None else math.floor(n)),
    "ceil": strict(lambda v: None if (n := _num(v)) is None else math.ceil(n)),
    "ceiling": strict(lambda v: None if (n := _num(v)) is None else math.ceil(n)),
    "urldecode": strict(lambda s: unquote_plus(to_text(s))),
    "in": _in,
    "null": lambda: None,
    "true": lambda: True,
    "false": lambda: False,
    "+": _arith("+"),
    "-": _arith("-"),
    "*": _arith("*"),
    "/": _arith("/"),
    "%": _arith("%"),
    ".": lambda a, b: None if a is None or b is None else to_text(a) + to_text(b),
}
for _op in ("=", "==", "!=", "<", "<=", ">", ">="):
    FUNCTIONS[_op] = lambda a, b, _o=_op: compare(_o, a, b)
del FUNCTIONS["searchmatch"]

# --------------------------------------------------------------------------------------------
# Lazy functions: they get argument closures
# --------------------------------------------------------------------------------------------


def _lazy_if(c: Eval, a: Eval, b: Eval) -> Eval:
    return lambda f: a(f) if truthy(c(f)) else b(f)


def _lazy_case(*args: Eval) -> Eval:
    pairs = list(zip(args[0::2], args[1::2], strict=False))

    def f(ev: Fields) -> Any:
        for cond, val in pairs:
            if truthy(cond(ev)):
                return val(ev)
        return None

    return f


def _lazy_coalesce(*args: Eval) -> Eval:
    def f(ev: Fields) -> Any:
        for a in args:
            v = a(ev)
            if v is not None and v != "":
                return v
        return None

    return f


def _lazy_and(*args: Eval) -> Eval:
    return lambda ev: all(truthy(a(ev)) for a in args)


def _lazy_or(*args: Eval) -> Eval:
    return lambda ev: any(truthy(a(ev)) for a in args)


def _lazy_not(a: Eval) -> Eval:
    return lambda ev: not truthy(a(ev))


def _lazy_validate(*args: Eval) -> Eval:
    pairs = list(zip(args[0::2], args[1::2], strict=False))

    def f(ev: Fields) -> Any:
        for cond, val in pairs:
            if not truthy(cond(ev)):
                return val(ev)
        return None

    return f


LAZY: dict[str, Callable[..., Eval]] = {
    "if": _lazy_if,
    "case": _lazy_case,
    "coalesce": _lazy_coalesce,
    "validate": _lazy_validate,
    "AND": _lazy_and,
    "OR": _lazy_or,
    "NOT": _lazy_not,
    "and": _lazy_and,
    "or": _lazy_or,
    "not": _lazy_not,
}

# --------------------------------------------------------------------------------------------
# Compiling a Term
# --------------------------------------------------------------------------------------------


def compile_term(t: Term, field_map: Mapping[str, str] | None = None) -> Eval:
    """A closure computing a term on an event's fields; raises :class:`UnknownFunction`."""
    fm = field_map or {}
    if isinstance(t, FieldRef):
        name = fm.get(t.name, t.name)
        return lambda ev: ev.get(name)
    if isinstance(t, Call):
        if t.name in LAZY:
            return LAZY[t.name](*(compile_term(a, fm) for a in t.args))
        fn = FUNCTIONS.get(t.name) or FUNCTIONS.get(t.name.lower())
        if fn is None:
            raise UnknownFunction(f"SPL function {t.name}() is not supported by the engine")
        return call_closure(fn, tuple(compile_term(a, fm) for a in t.args))
    const = t
    return lambda ev: const


def call_closure(fn: Callable[..., Any], args: tuple[Eval, ...]) -> Eval:
    """A closure calling ``fn`` on the values of ``args`` on an event (one and two arguments
    without building a tuple: the common calls, on the hot path)."""
    if len(args) == 1:
        (a0,) = args
        return lambda ev: fn(a0(ev))
    if len(args) == 2:
        a0, a1 = args
        return lambda ev: fn(a0(ev), a1(ev))
    return lambda ev: fn(*(a(ev) for a in args))


def connective(args: Sequence[Eval], decisive: bool) -> Eval:
    """AND (``decisive`` False) or OR (True) in three-valued logic, as EQL and ES|QL define
    them: the decisive value as soon as an argument has it; else null when an argument is
    null; else the other value."""
    def f(ev: Fields) -> Any:
        unknown = False
        for a in args:
            v = a(ev)
            v = None if v is None else bool(v)
            if v is decisive:
                return decisive
            unknown = unknown or v is None
        return None if unknown else not decisive

    return f
