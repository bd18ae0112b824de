"""EQL operators and functions for :class:`model.Condition` expressions (Elasticsearch EQL).

The EQL lowering (``languages/eql/lower.py``) keeps what is not a plain field predicate as a
``Condition`` whose :class:`model.Call` names are EQL's spellings (``== != < <= > >= + - * / %
: like like~ regex regex~ in in~ "not in" "not in~"``, ``AND OR NOT``) and Elasticsearch's
function names (``length``, ``substring``, ``startsWith~`` ...). SPL uses some of the same names
with other meanings (SPL ``like`` takes ``%``, SPL ``cidrmatch(cidr, ip)`` has its arguments the
other way round), so EQL terms compile with this table, never with ``engine.functions``.

Semantics, from Elasticsearch's EQL function reference (``eql-function-ref.md``) and its QL
script helpers (the functions run as a script query):

* **null** (a missing field, ``?field`` included) propagates: every function and comparison with
  a null argument is null, and a null condition is false. ``NOT null`` is null (false), ``AND`` /
  ``OR`` are three-valued (``false AND null`` is false, ``true OR null`` is true). ``x == null``
  / ``x != null`` are the null tests (Elasticsearch's optimizer rewrites them to IsNull).
* **multi-valued fields** in a script are read through doc values, which hold a keyword field's
  values sorted and deduplicated: a script sees the FIRST of them (``docValue(doc, f)``). So does
  this module (the smallest value; numbers before text).
* ``==``/``!=``/``in``/``like``/``regex`` and functions are case-sensitive; ``:``, ``in~``,
  ``like~``, ``regex~`` and ``fn~`` are not. ``:`` and ``like`` take ``*``/``?`` wildcards and
  no escape; ``regex`` is Lucene's dialect, anchored (``languages/lucene_regex.py``).
* Numbers: ``divide`` of two integers rounds down (Java integer division, toward zero);
  ``modulo`` is Java's ``%`` (the sign of the dividend).
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from ruleatlas.caching import SPL_REGEXES
from ruleatlas.engine.functions import UnknownFunction, call_closure, connective, strict
from ruleatlas.engine.sigma_semantics import as_number, to_text
from ruleatlas.languages.lucene_regex import RegexUnsupported, lucene_regex
from ruleatlas.model import Call, FieldRef, Term

Fields = Mapping[str, Any]
Eval = Callable[[Fields], Any]


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------


def doc_value(v: Any) -> Any:
    """What a script reads of a field value: a multi-valued field gives its first doc value
    (sorted: numbers, then text), an empty list is null."""
    if not isinstance(v, (list, tuple)):
        return v
    vals = [x for x in v if x is not None]
    if not vals:
        return None
    nums = sorted(x for x in vals if isinstance(x, (int, float)) and not isinstance(x, bool))
    if nums:
        return nums[0]
    return sorted(to_text(x) for x in vals)[0]


def _num(v: Any) -> int | float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return v
    n = as_number(v)
    if n is None:
        return None
    return int(n) if n.is_integer() and "." not in str(v) else n


def _text(v: Any, insensitive: bool) -> str:
    s = to_text(v)
    return s.lower() if insensitive else s


# --------------------------------------------------------------------------------------------
# Comparisons and matches
# --------------------------------------------------------------------------------------------


def _compare(op: str, a: Any, b: Any) -> Any:
    if op in ("==", "!=") and (a is None or b is None):
        return None
    if a is None or b is None:
        return None
    na, nb = _num(a), _num(b)
    x: Any
    y: Any
    if na is not None and nb is not None and not (isinstance(a, str) and isinstance(b, str)):
        x, y = na, nb
    else:
        x, y = to_text(a), to_text(b)
    return {"==": x == y, "!=": x != y, "<": x < y, "<=": x <= y, ">": x > y,
            ">=": x >= y}[op]


@lru_cache(maxsize=SPL_REGEXES)
def wildcard_regex(pattern: str, insensitive: bool) -> re.Pattern[str]:
    """An EQL ``:``/``like`` text as a whole-value regex: ``*`` any run, ``?`` one character,
    every other character literal (EQL has no escape for them)."""
    out = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(out, re.S | (re.I if insensitive else 0))


@lru_cache(maxsize=SPL_REGEXES)
def _lucene(pattern: str, insensitive: bool) -> re.Pattern[str]:
    rx = lucene_regex(pattern, insensitive)
    flags = re.S | (re.I if "i" in rx.flags else 0)
    return re.compile(rx.pattern, flags)


def _matcher(op: str) -> Callable[..., Any]:
    insensitive = op.endswith("~") or op == ":"

    def f(v: Any, *patterns: Any) -> Any:
        if v is None or any(p is None for p in patterns):
            return None
        s = to_text(v)
        for p in patterns:
            if op.startswith("regex"):
                try:
                    rx = _lucene(to_text(p), insensitive)
                except RegexUnsupported as exc:
                    raise UnknownFunction(f"EQL regex {p!r}: {exc}") from None
            else:
                rx = wildcard_regex(to_text(p), insensitive)
            if rx.fullmatch(s) is not None:
                return True
        return False

    return f


def _in(insensitive: bool, negated: bool) -> Callable[..., Any]:
    def f(v: Any, *items: Any) -> Any:
        if v is None:
            return None
        hit = False
        for it in items:
            if it is None:
                continue
            if insensitive:
                hit = _text(v, True) == _text(it, True)
            else:
                hit = bool(_compare("==", v, it))
            if hit:
                break
        return (not hit) if negated else hit

    return f


# --------------------------------------------------------------------------------------------
# Functions (eql-function-ref.md); each takes evaluated arguments and an "insensitive" flag
# --------------------------------------------------------------------------------------------


def _arith(op: str) -> Callable[[Any, Any], Any]:
    def f(a: Any, b: Any) -> Any:
        x, y = _num(a), _num(b)
        if x is None or y is None:
            return None
        if op in ("/", "%") and y == 0:
            return None
        if op == "+":
            return x + y
        if op == "-":
            return x - y
        if op == "*":
            return x * y
        if op == "/":
            if isinstance(x, int) and isinstance(y, int):
                return int(x / y)  # Java integer division truncates toward zero
            return x / y
        return math.fmod(x, y) if isinstance(x, float) or isinstance(y, float) else \
            int(math.fmod(x, y))

    return f


def _substring(s: Any, start: Any, end: Any = None) -> Any:
    """Python slicing, as Elasticsearch's ``substring`` (negative offsets from the end)."""
    if s is None or start is None:
        return None
    t = to_text(s)
    a = int(_num(start) or 0)
    if end is None:
        return t[a:]
    return t[a:int(_num(end) or 0)]


def _between(s: Any, left: Any, right: Any, greedy: Any = False, ci: bool = False) -> Any:
    if s is None or left is None or right is None:
        return None
    src, lt, rt = to_text(s), to_text(left), to_text(right)
    hay = src.lower() if ci else src
    lk, rk = (lt.lower(), rt.lower()) if ci else (lt, rt)
    i = hay.find(lk)
    if src == "" or i < 0:
        return ""
    start = i + len(lk)
    j = hay.rfind(rk) if greedy is True else hay.find(rk, start)
    if j < start:
        return ""
    return src[start:j]


def _index_of(s: Any, sub: Any, start: Any = 0, ci: bool = False) -> Any:
    if s is None or sub is None or start is None:
        return None
    t, u = _text(s, ci), _text(sub, ci)
    st = max(int(_num(start) or 0), 0)
    if st > len(t):
        return None
    i = t.find(u, st)
    return None if i < 0 else i


def _number(s: Any, base: Any = None) -> Any:
    if s is None:
        return None
    if isinstance(s, (int, float)) and not isinstance(s, bool):
        return s
    t = to_text(s).strip()
    try:
        if t[:2].lower() in ("0x",) or t[:3].lower() in ("+0x", "-0x"):
            return int(t, 16)
        if base is not None:
            return int(t, int(_num(base) or 10))
        return int(t) if re.fullmatch(r"[+-]?\d+", t) else float(t)
    except ValueError:
        return None


def _cidr(ip: Any, *nets: Any) -> Any:
    if ip is None or any(n is None for n in nets):
        return None
    try:
        addr = ipaddress.ip_address(to_text(ip).strip())
    except ValueError:
        return False
    for n in nets:
        try:
            net = ipaddress.ip_network(to_text(n), strict=False)
        except ValueError:
            continue
        if addr.version == net.version and addr in net:
            return True
    return False


def _string_fn(test: Callable[[str, str], bool], ci: bool) -> Callable[..., Any]:
    return strict(lambda s, x: test(_text(s, ci), _text(x, ci)))


def _contains(s: str, x: str) -> bool:
    return x != "" and x in s  # stringContains(x, "") is false (eql-function-ref.md)


def _with_case(fn: Callable[..., Any], ci: bool) -> Callable[..., Any]:
    def f(*args: Any) -> Any:
        return fn(*args, ci=ci)

    return f


def _table() -> dict[str, Callable[..., Any]]:
    t: dict[str, Callable[..., Any]] = {
        "add": _arith("+"), "subtract": _arith("-"), "multiply": _arith("*"),
        "divide": _arith("/"), "modulo": _arith("%"),
        "+": _arith("+"), "-": _arith("-"), "*": _arith("*"), "/": _arith("/"), "%": _arith("%"),
        "length": strict(lambda s: len(to_text(s))),
        "string": strict(to_text),
        "concat": strict(lambda *a: "".join(to_text(x) for x in a)),
        "substring": _substring,
        "number": _number,
        "cidrMatch": _cidr,
    }
    for ci in (False, True):
        sfx = "~" if ci else ""
        t["startsWith" + sfx] = _string_fn(lambda s, x: s.startswith(x), ci)
        t["endsWith" + sfx] = _string_fn(lambda s, x: s.endswith(x), ci)
        t["stringContains" + sfx] = _string_fn(_contains, ci)
        t["between" + sfx] = _with_case(_between, ci)
        t["indexOf" + sfx] = _with_case(_index_of, ci)
    t["cidrMatch~"] = _cidr
    for op in ("==", "!=", "<", "<=", ">", ">="):
        t[op] = lambda a, b, _o=op: _compare(_o, a, b)
    for op in (":", "like", "like~", "regex", "regex~"):
        t[op] = _matcher(op)
    t["in"], t["in~"] = _in(False, False), _in(True, False)
    t["not in"], t["not in~"] = _in(False, True), _in(True, True)
    return t


EQL_FUNCTIONS: dict[str, Callable[..., Any]] = _table()
_BY_LOWER = {k.lower(): v for k, v in EQL_FUNCTIONS.items()}


# --------------------------------------------------------------------------------------------
# Three-valued logic and compiling
# --------------------------------------------------------------------------------------------


def _as_bool(v: Any) -> bool | None:
    return None if v is None else bool(v)


def _not(a: Eval) -> Eval:
    def f(ev: Fields) -> Any:
        v = _as_bool(a(ev))
        return None if v is None else not v

    return f


def _null_test(t: Call, fm: Mapping[str, str]) -> Eval | None:
    """``x == null`` / ``x != null`` (either side): the IsNull / IsNotNull test."""
    if t.name not in ("==", "!=") or len(t.args) != 2 or None not in t.args:
        return None
    other = t.args[0] if t.args[1] is None else t.args[1]
    inner = compile_eql_term(other, fm)
    if t.name == "==":
        return lambda ev: inner(ev) is None
    return lambda ev: inner(ev) is not None


def compile_eql_term(t: Term, field_map: Mapping[str, str] | None = None) -> Eval:
    """A closure computing an EQL term on an event (null = ``None``); raises
    :class:`UnknownFunction` for a function Elasticsearch's EQL does not have."""
    fm = field_map or {}
    if isinstance(t, FieldRef):
        name = fm.get(t.name, t.name)
        return lambda ev: doc_value(ev.get(name))
    if not isinstance(t, Call):
        const = t
        return lambda ev: const
    args = tuple(compile_eql_term(a, fm) for a in t.args)
    if t.name in ("AND", "OR"):
        return connective(args, decisive=t.name == "OR")
    if t.name == "NOT":
        return _not(args[0])
    null_test = _null_test(t, fm)
    if null_test is not None:
        return null_test
    if t.name == "-" and len(args) == 1:
        (a0,) = args
        return lambda ev: None if (n := _num(a0(ev))) is None else -n
    fn = EQL_FUNCTIONS.get(t.name) or _BY_LOWER.get(t.name.lower())
    if fn is None:
        raise UnknownFunction(f"EQL function {t.name}() is not supported by the engine")
    return call_closure(fn, args)
