"""ES|QL expressions on one row: operators, three-valued logic and the functions the rules use.

A term (``model.Call`` tree, ``languages/esql/lower.term``) compiles once into a closure over a
row (a dict of columns). Values follow Elastic's ES|QL reference
(https://www.elastic.co/docs/reference/query-languages/esql):

* ``None`` is ``null``; a column the row lacks is null. A list of two or more values is a
  multi-valued column; a one-value list is that value (``event.category: ["process"]`` is one
  keyword in Elasticsearch), an empty list is null (:func:`single`).
* Comparisons (``== != < <= > >=``), arithmetic, ``like``/``rlike``/``in`` and every function not
  named ``mv_*`` give null on a null or a multi-valued operand ("functions return null when
  applied to a multivalued field", *ES|QL multivalued fields*); ``is null`` / ``is not null``
  test the column.
* ``and``/``or``/``not`` are three-valued (``null and false`` is false, ``null or true`` true,
  ``not null`` null); ``where`` keeps a row only when its condition is true.
* ``==`` and ``!=`` are case-sensitive on text; ``=~`` compares case-insensitively.
  ``like`` matches the whole value (``*`` any run, ``?`` one character, ``\\`` escapes);
  ``rlike`` a Lucene regular expression on the whole value (``languages/lucene_regex``).
* Numbers written as text in the event (``event.code: "4104"``) meet numbers in the query.

``now()`` reads the row's ``_esql_now`` column, which only the rows after an aggregation have
(the time of the last event the rule matched); elsewhere it is refused when the rule is
prepared. ``from_base64`` decodes to UTF-8 text (null when the text is not base64).

An unknown function raises :class:`UnknownFunction` with its name: the rule is not runnable.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import replace as dc_replace
from datetime import UTC, datetime, timedelta
from typing import Any

from ruleatlas.engine.functions import UnknownFunction, connective, strict
from ruleatlas.engine.sigma_semantics import as_number
from ruleatlas.languages.lucene_regex import RegexUnsupported, lucene_to_python
from ruleatlas.model import And, Call, FieldRef, Node, Not, Or, Pattern, Predicate, Term, Wild

Row = Mapping[str, Any]
# The column ``now()`` reads: set on the rows after an aggregation (engine/esql_semantics.py).
NOW = "_esql_now"
Fn = Callable[[Row], Any]

__all__ = ["UnknownFunction", "compile_esql_term", "single"]


def single(v: Any) -> Any:
    """A column's value as ES|QL sees it: a one-value list is the value, an empty list null."""
    if isinstance(v, list):
        if not v:
            return None
        if len(v) == 1:
            return v[0]
    return v


def _bad(*xs: Any) -> bool:
    """A null or a multi-valued operand (the operator's result is null)."""
    return any(x is None or isinstance(x, list) for x in xs)


# ---- values ------------------------------------------------------------------------------------


def to_datetime(v: Any) -> datetime | None:
    """A date from an ISO text (``2024-01-01T00:00:00Z``), epoch milliseconds or a datetime."""
    if isinstance(v, datetime):
        return v
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return datetime.fromtimestamp(v / 1000, UTC)
    if isinstance(v, str):
        try:
            d = datetime.fromisoformat(v.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        return d if d.tzinfo else d.replace(tzinfo=UTC)
    return None


def _pair(a: Any, b: Any) -> tuple[Any, Any]:
    """Two operands made comparable: numbers with numbers (text holding a number too), dates
    with dates, else both as they are."""
    if isinstance(a, datetime) or isinstance(b, datetime):
        return to_datetime(a), to_datetime(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return a, b
    if isinstance(a, (int, float)) or isinstance(b, (int, float)):
        na, nb = as_number(a), as_number(b)
        if na is not None and nb is not None:
            return na, nb
    return a, b


def _compare(op: str, a: Any, b: Any) -> bool | None:
    if _bad(a, b):
        return None
    a, b = _pair(a, b)
    if a is None or b is None:
        return None
    if op == "=~":
        return str(a).lower() == str(b).lower()
    if op == "==":
        return bool(a == b)
    if op == "!=":
        return bool(a != b)
    try:
        return bool(COMPARE[op](a, b))
    except TypeError:  # text against a number: ES|QL refuses the query; here, null
        return None


COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}


def _arith(op: str, a: Any, b: Any) -> Any:
    if _bad(a, b):
        return None
    if isinstance(a, datetime) and isinstance(b, timedelta):
        return a + b if op == "+" else a - b if op == "-" else None
    na, nb = as_number(a), as_number(b)
    if na is None or nb is None:
        return None
    if op in ("/", "%") and nb == 0:
        return None  # ES|QL: division by zero is null, with a warning
    if op == "/" and isinstance(na, int) and isinstance(nb, int):
        return int(na / nb)  # integer division truncates
    out = ARITH[op](na, nb)
    return out


ARITH: dict[str, Callable[[Any, Any], Any]] = {
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
    "/": lambda a, b: a / b, "%": lambda a, b: math.fmod(a, b),
}


def like_regex(pattern: str) -> re.Pattern[str]:
    """An ES|QL ``like`` pattern as an anchored regular expression."""
    p = Pattern.from_wildcards(pattern, escape="\\")
    out = []
    for x in p.parts:
        out.append(".*" if x is Wild.ANY else "." if x is Wild.ONE else re.escape(str(x)))
    return re.compile("".join(out) + r"\Z", re.S)


def rlike_regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(lucene_to_python(pattern), re.S)
    except (RegexUnsupported, re.error) as exc:
        raise UnknownFunction(f"rlike pattern {pattern[:60]!r}: {exc}") from None


# ---- compiling terms -----------------------------------------------------------------------


def compile_esql_term(t: Term) -> Fn:
    """One term as a closure over a row; raises :class:`UnknownFunction`."""
    if isinstance(t, FieldRef):
        name = t.name
        return lambda r: single(r.get(name))
    if not isinstance(t, Call):
        return lambda _r: t
    special = SPECIAL.get(t.name)
    if special is not None:
        return special(t)
    name = t.name.lower()
    args = [compile_esql_term(a) for a in t.args]
    if name in OPERATORS:
        fn2 = OPERATORS[name]
        a, b = args
        return lambda r: fn2(a(r), b(r))
    if name in MV_FUNCTIONS:
        f = MV_FUNCTIONS[name]
        return lambda r: f(*[g(r) for g in args])
    if name in SCALAR:
        f = SCALAR[name]
        return lambda r: _scalar(f, [g(r) for g in args])
    raise UnknownFunction(f"ES|QL function {t.name}() is not supported")


def _scalar(f: Callable[..., Any], vals: list[Any]) -> Any:
    if any(isinstance(v, list) for v in vals):
        return None
    try:
        return f(*vals)
    except (TypeError, ValueError, ArithmeticError, re.error, binascii.Error):
        return None  # ES|QL: a function error is null (with a warning)


def _and(t: Call) -> Fn:
    return connective([compile_esql_term(a) for a in t.args], decisive=False)


def _or(t: Call) -> Fn:
    return connective([compile_esql_term(a) for a in t.args], decisive=True)


def _not(t: Call) -> Fn:
    inner = compile_esql_term(t.args[0])

    def f(r: Row) -> bool | None:
        v = inner(r)
        return None if v is None else not v

    return f


def _like(t: Call) -> Fn:
    value = compile_esql_term(t.args[0])
    pats = t.args[1:]
    if not all(isinstance(p, str) for p in pats):
        raise UnknownFunction(f"{t.name} with a pattern that is not a literal")
    make = rlike_regex if t.name == "rlike" else like_regex
    rxs = [make(str(p)) for p in pats]

    def f(r: Row) -> bool | None:
        v = value(r)
        if _bad(v):
            return None
        s = v if isinstance(v, str) else str(v)
        return any(rx.match(s) is not None for rx in rxs)

    return f


def _in(t: Call) -> Fn:
    value = compile_esql_term(t.args[0])
    items = [compile_esql_term(a) for a in t.args[1:]]

    def f(r: Row) -> bool | None:
        v = value(r)
        if _bad(v):
            return None
        unknown = False
        for i in items:
            x = i(r)
            got = _compare("==", v, x)
            if got:
                return True
            if got is None:
                unknown = True
        return None if unknown else False

    return f


def _is_null(t: Call) -> Fn:
    inner = compile_esql_term(t.args[0])
    want = t.name == "is null"
    return lambda r: (inner(r) is None) is want


def _case(t: Call) -> Fn:
    """``case(c1, v1, c2, v2, ..., [else])``: the value of the first true condition."""
    args = [compile_esql_term(a) for a in t.args]
    pairs = list(zip(args[0::2], args[1::2], strict=False))
    default = args[-1] if len(args) % 2 else None

    def f(r: Row) -> Any:
        for c, v in pairs:
            if c(r) is True:
                return v(r)
        return default(r) if default is not None else None

    return f


def _coalesce(t: Call) -> Fn:
    args = [compile_esql_term(a) for a in t.args]

    def f(r: Row) -> Any:
        for a in args:
            v = a(r)
            if v is not None:
                return v
        return None

    return f


def _duration(t: Call) -> Fn:
    amount, unit = t.args
    secs = _UNIT_SECONDS.get(str(unit).lower().rstrip("s")) if isinstance(unit, str) else None
    if secs is None or not isinstance(amount, (int, float)):
        raise UnknownFunction(f"time span {amount} {unit} is not supported")
    span = timedelta(seconds=float(amount) * secs)
    return lambda _r: span


_UNIT_SECONDS: dict[str, float] = {
    "millisecond": 0.001, "ms": 0.001, "second": 1, "sec": 1, "minute": 60, "min": 60,
    "m": 60, "hour": 3600, "h": 3600, "hr": 3600, "day": 86400, "d": 86400,
    "week": 604800, "w": 604800,
}


def _cast(t: Call) -> Fn:
    inner, typ = t.args
    conv = CASTS.get(str(typ).lower())
    if conv is None:
        raise UnknownFunction(f"cast to {typ} is not supported")
    return compile_esql_term(Call(conv, (inner,)))


CASTS = {"string": "to_string", "keyword": "to_string", "text": "to_string", "long": "to_long",
         "integer": "to_integer", "int": "to_integer", "double": "to_double", "ip": "to_ip",
         "datetime": "to_datetime", "boolean": "to_boolean", "bool": "to_boolean"}


# Analysers of text fields: the Windows integration's ``powershell_script_analyzer`` (a
# ``pattern`` analyzer, pattern ``[\W&&[^-]]+``: tokens are ASCII word characters and hyphens,
# lower-cased) for PowerShell script text; the standard analyzer (approximated by Unicode word
# runs, lower-cased) for the other analysed text fields (languages/kql TEXT_FIELDS).
_PS_TOKENS = re.compile(r"[A-Za-z0-9_-]+")
_WORD_TOKENS = re.compile(r"\w+")
_PS_TEXT = frozenset({"powershell.file.script_block_text", "powershell.command.value",
                      "powershell.command.invocation_details.value"})


def _tokens(field: str, text: str) -> set[str]:
    rx = _PS_TOKENS if field in _PS_TEXT else _WORD_TOKENS
    return {x.lower() for x in rx.findall(text)}


def _match(t: Call) -> Fn:
    """The match operator ``f : "q"`` and ``match(f, "q")``: on an analysed text field, true when
    one of the query's tokens is a token of the field (a match query's default operator is
    ``OR``); on another field, the whole value equals the query. Options (``fuzziness``, ...)
    are refused; a null field gives null."""
    from ruleatlas.languages.kql.lower import is_text_field

    if len(t.args) != 2 or not isinstance(t.args[0], FieldRef) or not isinstance(
            t.args[1], str):
        raise UnknownFunction(f"{t.name}: only a field against a literal query is run "
                              "(options such as fuzziness are not)")
    field, query = t.args[0].name, t.args[1]
    if not is_text_field(field):
        return compile_esql_term(Call("==", (t.args[0], query)))
    want = _tokens(field, query)

    def f(r: Row) -> bool | None:
        v = r.get(field)
        if v is None:
            return None
        texts = v if isinstance(v, list) else [v]
        return any(not want.isdisjoint(_tokens(field, str(x))) for x in texts)

    return f


def _kql(t: Call) -> Fn:
    """``kql("query")``: the KQL query's tree (``languages/kql``) matched with Elasticsearch's
    semantics (``engine.elastic_semantics``), every comparison case-insensitive (ES|QL's
    ``kql()`` compares keywords case-insensitively, elastic/elasticsearch#135772; see
    docs/elastic-engine.md); true or false, never null."""
    from ruleatlas.engine.compile import NotRunnable
    from ruleatlas.engine.elastic_semantics import compile_elastic
    from ruleatlas.languages.kql import analyze_kql_query

    if len(t.args) != 1 or not isinstance(t.args[0], str):
        raise UnknownFunction("kql() with a query that is not one literal")
    got = analyze_kql_query(t.args[0])
    bad = [p.message for p in got.problems if p.severity == "error"]
    if bad:
        raise UnknownFunction(f"kql(): {bad[0]}")
    try:
        m = compile_elastic(_uncased(got.condition))
    except NotRunnable as exc:
        raise UnknownFunction(f"kql(): {exc.message}") from None
    return lambda r: m(r)


def _uncased(node: Node | None) -> Node | None:
    if isinstance(node, Predicate):
        return dc_replace(node, cased=False)
    if isinstance(node, And | Or):
        return type(node)(tuple(_uncased(a) for a in node.args))  # type: ignore[misc]
    if isinstance(node, Not):
        inner = _uncased(node.arg)
        return node if inner is None else Not(inner)
    return node


def _unsupported(why: str) -> Callable[[Call], Fn]:
    def f(t: Call) -> Fn:
        raise UnknownFunction(f"{t.name}: {why}")

    return f


SPECIAL: dict[str, Callable[[Call], Fn]] = {
    "AND": _and, "OR": _or, "NOT": _not, "like": _like, "rlike": _like, "in": _in,
    "is null": _is_null, "is not null": _is_null,
    "case": _case, "coalesce": _coalesce, "duration": _duration, "::": _cast,
    ":": lambda t: _match(t),
    "match": lambda t: _match(t),
    "qstr": _unsupported("a Lucene query string needs Elasticsearch's analyzers"),
    "kql": lambda t: _kql(t),
    "param": _unsupported("a query parameter has no value on a log file"),
    "now": lambda _t: lambda r: r.get(NOW),
}


OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    **{op: (lambda o: lambda a, b: _compare(o, a, b))(op)
       for op in ("==", "!=", "=~", "<", "<=", ">", ">=")},
    **{op: (lambda o: lambda a, b: _arith(o, a, b))(op) for op in ARITH},
}


# ---- functions ---------------------------------------------------------------------------------


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, datetime):
        return v.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(v, float) and v.is_integer():
        return repr(v)
    return str(v)


def _substring(s: Any, start: Any, length: Any = None) -> Any:
    """``substring(s, start[, length])``: 1-based; a negative start counts from the end."""
    if s is None or start is None:
        return None
    s, i = str(s), int(start)
    i = max(len(s) + i, 0) if i < 0 else max(i - 1, 0)
    return s[i:] if length is None else s[i:i + int(length)]


def _locate(s: Any, sub: Any, start: Any = None) -> Any:
    """``locate(s, sub[, start])``: the 1-based position of ``sub``, 0 when absent."""
    if s is None or sub is None:
        return None
    begin = 0 if start is None else max(int(start) - 1, 0)
    return str(s).find(str(sub), begin) + 1


def _replace(s: Any, regex: Any, repl: Any) -> Any:
    """``replace(s, regex, replacement)``: Java's ``String.replaceAll`` (the replacement's
    ``$n`` / ``${name}`` are groups, ``\\x`` is a literal x)."""
    if s is None or regex is None or repl is None:
        return None
    return re.sub(_java_regex(str(regex)), _java_replacement(str(repl)), str(s))


_JAVA_REPL = re.compile(r"\\(.)|\$(\d+)|\$\{(\w+)\}|([\\$])", re.S)


def _java_replacement(repl: str) -> Callable[[re.Match[str]], str]:
    parts: list[str | int | tuple[str]] = []
    pos = 0
    for m in _JAVA_REPL.finditer(repl):
        parts.append(repl[pos:m.start()])
        if m.group(1) is not None:
            parts.append(m.group(1))
        elif m.group(2) is not None:
            parts.append(int(m.group(2)))
        elif m.group(3) is not None:
            parts.append((m.group(3),))  # a named group
        pos = m.end()
    parts.append(repl[pos:])

    def sub(m: re.Match[str]) -> str:
        return "".join(p if isinstance(p, str) else (m.group(p if isinstance(p, int) else p[0])
                                                      or "") for p in parts)

    return sub


def _java_regex(p: str) -> str:
    """Java's regex syntax as Python's (named groups, possessive quantifiers)."""
    p = re.sub(r"\(\?<([A-Za-z][A-Za-z0-9]*)>", r"(?P<\1>", p)
    return re.sub(r"([*+?}])\+", r"\1", p)


def _cidr_match(ip: Any, *nets: Any) -> Any:
    if ip is None:
        return None
    try:
        addr = ipaddress.ip_address(str(ip))
    except ValueError:
        return None
    for n in nets:
        for x in n if isinstance(n, list) else [n]:
            try:
                if addr in ipaddress.ip_network(str(x), strict=False):
                    return True
            except ValueError:
                continue
    return False


_TRUNC_UNITS = ("year", "month", "week", "day", "hour", "minute", "second")


def _date_trunc(span: Any, d: Any) -> Any:
    """``date_trunc(1 hour, @timestamp)``: the date rounded down to a multiple of the span
    (from the epoch; a span of whole days or more rounds to UTC midnights)."""
    d = to_datetime(d)
    if d is None or not isinstance(span, timedelta):
        return None
    step = span.total_seconds()
    t = d.timestamp()
    return datetime.fromtimestamp(t - math.fmod(t, step), UTC)


_DIFF_UNITS: dict[str, float] = {
    "millisecond": 0.001, "milliseconds": 0.001, "ms": 0.001, "second": 1, "seconds": 1,
    "ss": 1, "s": 1, "minute": 60, "minutes": 60, "mi": 60, "n": 60, "hour": 3600, "hours": 3600,
    "hh": 3600, "day": 86400, "days": 86400, "dd": 86400, "d": 86400, "week": 604800,
    "weeks": 604800, "wk": 604800, "ww": 604800,
}


def _date_diff(unit: Any, a: Any, b: Any) -> Any:
    """``date_diff(unit, start, end)``: whole units from start to end (truncated)."""
    secs = _DIFF_UNITS.get(str(unit).lower())
    da, db = to_datetime(a), to_datetime(b)
    if secs is None or da is None or db is None:
        return None
    return int((db - da).total_seconds() / secs)


def _round(x: Any, digits: Any = 0) -> Any:
    n = as_number(x)
    if n is None:
        return None
    out = round(n, int(digits or 0))
    return int(out) if isinstance(n, int) or not digits else out


def _to_long(v: Any) -> Any:
    n = as_number(v)
    return None if n is None else int(n)


def _to_double(v: Any) -> Any:
    n = as_number(v)
    return None if n is None else float(n)


def _to_boolean(v: Any) -> Any:
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return v != 0
    return str(v).lower() == "true"


def _to_ip(v: Any) -> Any:
    try:
        return str(ipaddress.ip_address(str(v)))
    except ValueError:
        return None


# ``strict``: ES|QL's rule too, a null argument makes the result null.
SCALAR: dict[str, Callable[..., Any]] = {
    "to_lower": strict(lambda s: str(s).lower()),
    "to_upper": strict(lambda s: str(s).upper()),
    "length": strict(lambda s: len(str(s))),
    "substring": _substring,
    "starts_with": strict(lambda s, p: str(s).startswith(str(p))),
    "ends_with": strict(lambda s, p: str(s).endswith(str(p))),
    "contains": strict(lambda s, p: str(p) in str(s)),
    "concat": strict(lambda *xs: "".join(_text(x) for x in xs)),
    "trim": strict(lambda s: str(s).strip()),
    "ltrim": strict(lambda s: str(s).lstrip()),
    "rtrim": strict(lambda s: str(s).rstrip()),
    "space": strict(lambda n: " " * int(n)),
    "locate": _locate,
    "replace": _replace,
    "cidr_match": _cidr_match,
    "to_string": strict(_text), "to_str": strict(_text),
    "to_long": strict(_to_long), "to_integer": strict(_to_long),
    "to_int": strict(_to_long), "to_double": strict(_to_double),
    "to_dbl": strict(_to_double), "to_boolean": strict(_to_boolean),
    "to_ip": strict(_to_ip), "to_datetime": strict(to_datetime),
    "date_trunc": strict(_date_trunc), "date_diff": strict(_date_diff),
    "round": _round, "abs": strict(lambda x: abs(as_number(x) or 0)),
    "from_base64": strict(lambda s: base64.b64decode(str(s), validate=True).decode()),
    "to_base64": strict(lambda s: base64.b64encode(str(s).encode()).decode()),
    "url_decode": strict(lambda s: urllib.parse.unquote_plus(str(s))),
    "split": strict(lambda s, d: (lambda xs: xs[0] if len(xs) == 1 else xs)(
        str(s).split(str(d)))),
}


# Functions that read every value of a multi-valued column (their argument may be a list).
def _values(v: Any) -> list[Any]:
    if v is None:
        return []
    return list(v) if isinstance(v, list) else [v]


def _mv_out(xs: list[Any]) -> Any:
    return None if not xs else xs[0] if len(xs) == 1 else xs


def _mv_slice(v: Any, start: Any, end: Any = None) -> Any:
    """``mv_slice(v, start[, end])``: positions start..end (0-based, inclusive)."""
    xs = _values(v)
    if start is None:
        return None
    i = int(start)
    j = i if end is None else int(end)
    n = len(xs)
    i, j = (i + n if i < 0 else i), (j + n if j < 0 else j)
    return _mv_out(xs[i:j + 1])


def _ordered(xs: list[Any]) -> list[Any]:
    return sorted(xs, key=lambda x: (0, x, "") if isinstance(x, (int, float)) else (1, 0, str(x)))


MV_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "mv_count": lambda v: len(_values(v)) or None,
    "mv_first": lambda v: _mv_out(_values(v)[:1]),
    "mv_last": lambda v: _mv_out(_values(v)[-1:]),
    "mv_min": lambda v: _mv_out(_ordered(_values(v))[:1]),
    "mv_max": lambda v: _mv_out(_ordered(_values(v))[-1:]),
    "mv_dedupe": lambda v: _mv_out(list(dict.fromkeys(_values(v)))),
    "mv_sort": lambda v, order="asc": _mv_out(
        _ordered(_values(v))[::-1 if str(order).lower() == "desc" else 1]),
    "mv_concat": lambda v, d: None if v is None or d is None else str(d).join(
        _text(x) for x in _values(v)),
    "mv_slice": _mv_slice,
    "mv_contains": lambda a, b: None if a is None or b is None else all(
        any(_compare("==", x, y) for x in _values(a)) for y in _values(b)),
    "mv_intersection": lambda a, b: _mv_out([x for x in dict.fromkeys(_values(a))
                                             if x in _values(b)]),
    "mv_append": lambda a, b: _mv_out(_values(a) + _values(b)),
    "mv_sum": lambda v: _mv_out([sum(n for x in _values(v) if (n := as_number(x)) is not None)]
                                if v is not None else []),
}
