"""Compile a predicate tree into one Python closure over an event's flattened fields.

"Compile, don't interpret" (sqlglot's ``posts/python_sql_engine.md``): every decision that does
not depend on the event is taken here, once per rule and event kind: field names go through the
route's field map (``Image`` -> ``NewProcessName`` on Security 4688), values through their
transforms (``windash``, ``base64offset``, ...), literals are lowered, regexes compiled, wildcard
patterns turned into ``str`` methods or one precompiled ``fullmatch``, And/Or specialised by arity.
What runs per event is a handful of dict lookups and string methods.

Semantics (both languages, see ``docs/engine.md``):

* a predicate on a field the event does not have is false (so ``not filter`` is true), except
  ``eq null`` (true when missing or null) and ``exists false``;
* text comparison is case-insensitive unless ``cased`` (Sigma ``|cased``, SPL ``where``);
  ``regex`` is case-sensitive unless its flags hold ``i``;
* ``4104`` and ``"4104"`` meet (EventID is an int in EVTX JSON, a string in XML text);
* a multi-valued event field (a list) matches when any of its values matches;
* ``ne`` needs the field present (SPL ``field!=x``); ``negated`` is a ``Not`` around the check;
* ``Opaque`` nodes, unknown ops/transforms/functions raise :class:`NotRunnable`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from ruleatlas import model as M
from ruleatlas.caching import VALUE_TESTS, BoundedCache
from ruleatlas.engine.functions import UnknownFunction, compile_term, truthy
from ruleatlas.engine.sigma_semantics import (
    StrTest,
    TransformError,
    anchored,
    as_number,
    expand,
    pattern_test,
    to_text,
)
from ruleatlas.model import Op

Fields = Mapping[str, Any]
Matcher = Callable[[Fields], bool]
T = TypeVar("T")  # what a test is applied to: an event (Matcher) or a string (StrTest)

_MISSING = object()


class NotRunnable(M.AtlasError):
    """A tree the engine cannot run faithfully; the message is the reason shown to users."""


def _true(_: Fields) -> bool:
    return True


def _false(_: Fields) -> bool:
    return False


# --------------------------------------------------------------------------------------------
# Value tests: one closure per (op, value) on the event value's text
# --------------------------------------------------------------------------------------------

_PATTERN_OPS = {Op.EQ, Op.IN, Op.CONTAINS, Op.STARTSWITH, Op.ENDSWITH, Op.WILDCARD, Op.NE}


def _text_test(op: Op, v: M.Value, cased: bool) -> StrTest:
    """A test of the (lowered unless cased) text of an event value for one rule value."""
    if isinstance(v, (str, M.Pattern)):
        opname = op.value if op in (Op.CONTAINS, Op.STARTSWITH, Op.ENDSWITH) else "eq"
        return pattern_test(anchored(opname, v), cased)
    if isinstance(v, (int, float, bool)):
        return pattern_test(M.Pattern((to_text(v),)), True)
    raise NotRunnable(f"value {v!r} cannot be used with {op.value}")


def _combine(tests: Sequence[Callable[[T], bool]], every: bool) -> Callable[[T], bool]:
    """One test of ``tests`` (tried in order, short-circuiting): true where every one is when
    ``every`` (an And, a value's pattern groups; none is always true), else where one of them is
    (an Or, a value list; none is never true). Up to three tests it is one lambda of that arity,
    so the choice between ``and`` and ``or`` is made here, never per event."""
    if not tests:
        return (lambda _: True) if every else (lambda _: False)
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        a, b = tests
        return (lambda x: a(x) and b(x)) if every else (lambda x: a(x) or b(x))
    if len(tests) == 3:
        a, b, c = tests
        return ((lambda x: a(x) and b(x) and c(x)) if every
                else (lambda x: a(x) or b(x) or c(x)))
    tt = tuple(tests)
    if every:

        def all_of(x: T) -> bool:
            for t in tt:
                if not t(x):
                    return False
            return True

        return all_of

    def any_of(x: T) -> bool:
        for t in tt:
            if t(x):
                return True
        return False

    return any_of


def _any(tests: Sequence[Callable[[T], bool]]) -> Callable[[T], bool]:
    """True where one of ``tests`` is: the test of an Or and of a value list."""
    return _combine(tests, every=False)


def _all(tests: Sequence[Callable[[T], bool]]) -> Callable[[T], bool]:
    """True where every one of ``tests`` is: the test of an And and of a value's pattern
    groups."""
    return _combine(tests, every=True)


def _any_value(op: Op, values: list[M.Value], cased: bool) -> StrTest:
    """One test for "any of these values", grouped by shape so a 100-value list costs a few C
    calls, not 100 Python calls: exact values -> a set lookup, prefixes/suffixes -> one
    ``str.startswith(tuple)``/``str.endswith(tuple)``, substrings -> ``in`` (an Aho-Corasick
    automaton when there are many), the rest -> their own tests."""
    exact: set[str] = set()
    prefixes: list[str] = []
    suffixes: list[str] = []
    subs: list[str] = []
    others: list[StrTest] = []
    for v in values:
        if not isinstance(v, (str, M.Pattern, int, float)) or isinstance(v, bool):
            others.append(_text_test(op, v, cased))
            continue
        if isinstance(v, (int, float)):
            exact.add(to_text(v))
            continue
        opname = op.value if op in (Op.CONTAINS, Op.STARTSWITH, Op.ENDSWITH) else "eq"
        parts = anchored(opname, v).parts
        low = [x if isinstance(x, M.Wild) or cased else x.lower() for x in parts]
        if all(isinstance(x, str) for x in low) or not low:
            exact.add("".join(low))  # type: ignore[arg-type]
        elif len(low) == 2 and isinstance(low[0], str) and low[1] is M.Wild.ANY:
            prefixes.append(low[0])
        elif len(low) == 2 and low[0] is M.Wild.ANY and isinstance(low[1], str):
            suffixes.append(low[1])
        elif len(low) == 3 and low[0] is M.Wild.ANY and low[2] is M.Wild.ANY and isinstance(
                low[1], str):
            subs.append(low[1])
        else:
            others.append(_text_test(op, v, cased))
    checks: list[StrTest] = []
    if exact:
        ex = frozenset(exact)
        checks.append(lambda s: s in ex)
    if prefixes:
        pt = tuple(prefixes)
        checks.append(lambda s: s.startswith(pt))
    if suffixes:
        st = tuple(suffixes)
        checks.append(lambda s: s.endswith(st))
    if len(subs) > 8:
        import ahocorasick

        auto = ahocorasick.Automaton()
        for x in subs:
            auto.add_word(x, x)
        auto.make_automaton()

        def any_sub(s: str) -> bool:
            for _ in auto.iter(s):
                return True
            return False

        checks.append(any_sub)
    elif len(subs) == 1:
        (s0,) = subs
        checks.append(lambda s: s0 in s)
    elif len(subs) == 2:
        s0, s1 = subs
        checks.append(lambda s: s0 in s or s1 in s)
    elif len(subs) == 3:
        s0, s1, s2 = subs
        checks.append(lambda s: s0 in s or s1 in s or s2 in s)
    elif subs:
        sb = tuple(subs)

        def any_in(s: str) -> bool:
            for x in sb:
                if x in s:
                    return True
            return False

        checks.append(any_in)
    checks.extend(others)
    return _any(checks)


def _memo(test: Callable[[str], bool]) -> Callable[[str], bool]:
    """``test`` remembering its answer per string value. Event values repeat a lot (Image
    paths, GrantedAccess masks, call traces): a dict lookup replaces lowering and testing."""
    memo: BoundedCache[str, bool] = BoundedCache(VALUE_TESTS)
    get, put = memo.get, memo.put

    def t(s: str) -> bool:
        r = get(s)
        if r is None:
            r = put(s, test(s))
        return r

    return t


def _on_field(name: str, test: StrTest, lower: bool) -> Matcher:
    """Read a field, skip missing/null, apply ``test`` to its text (lowered unless cased)."""

    def one(v: Any) -> bool:
        s = v if type(v) is str else to_text(v)
        return test(s.lower() if lower else s)

    def low(s: str) -> bool:
        return test(s.lower() if lower else s)

    return _field_matcher(name, _memo(low), one)


def _field_matcher(name: str, on_str: Callable[[str], bool],
                   on_value: Callable[[Any], bool]) -> Matcher:
    """Read field ``name``: missing or null is False, a string goes through ``on_str``, a list
    matches when one of its non-null values passes ``on_value``, any other value through
    ``on_value``."""

    def m(ev: Fields) -> bool:
        v = ev.get(name)
        if v is None:
            return False
        if type(v) is str:
            return on_str(v)
        if isinstance(v, list):
            return any(on_value(x) for x in v if x is not None)
        return on_value(v)

    return m


def _number_test(op: Op, v: M.Value) -> Callable[[Any], bool]:
    n = as_number(v)
    if n is None:
        raise NotRunnable(f"{op.value} needs a number, got {v!r}")
    cmp: dict[Op, Callable[[float], bool]] = {
        Op.GT: lambda x: x > n,
        Op.GE: lambda x: x >= n,
        Op.LT: lambda x: x < n,
        Op.LE: lambda x: x <= n,
    }
    c = cmp[op]

    def t(x: Any) -> bool:
        num = as_number(x)
        return num is not None and c(num)

    return t


def _cidr_test(values: tuple[M.Value, ...]) -> Callable[[Any], bool]:
    try:
        nets = tuple(ipaddress.ip_network(str(v), strict=False) for v in values)
    except ValueError as exc:
        raise NotRunnable(f"bad cidr value: {exc}") from None

    def t(x: Any) -> bool:
        try:
            ip = ipaddress.ip_address(to_text(x).strip())
        except ValueError:
            return False
        return any(ip.version == n.version and ip in n for n in nets)

    return t


def _regex_test(values: tuple[M.Value, ...], match_all: bool) -> Callable[[Any], bool]:
    rxs = []
    for v in values:
        if isinstance(v, M.Regex):
            flags = re.I if "i" in v.flags else 0
            flags |= re.M if "m" in v.flags else 0
            flags |= re.S if "s" in v.flags else 0
            pat = v.pattern
        elif isinstance(v, str):
            flags, pat = 0, v
        else:
            raise NotRunnable(f"regex value {v!r}")
        try:
            rxs.append(re.compile(pat, flags).search)
        except re.error as exc:
            raise NotRunnable(f"regex {pat!r} does not compile in Python: {exc}") from None
    searches = tuple(rxs)
    if match_all:
        return lambda x: all(s(to_text(x)) is not None for s in searches)
    return lambda x: any(s(to_text(x)) is not None for s in searches)


def _raw_field(name: str, test: Callable[[Any], bool]) -> Matcher:
    return _field_matcher(name, _memo(test), test)


def _fieldref(name: str, op: Op, ref: str, cased: bool) -> Matcher:
    """``field|fieldref: other`` (and SPL ``where a=b``): compare two fields of one event."""

    def norm(v: Any) -> str:
        s = to_text(v)
        return s if cased else s.lower()

    tests: dict[Op, Callable[[str, str], bool]] = {
        Op.EQ: lambda a, b: a == b,
        Op.NE: lambda a, b: a != b,
        Op.CONTAINS: lambda a, b: b in a,
        Op.STARTSWITH: lambda a, b: a.startswith(b),
        Op.ENDSWITH: lambda a, b: a.endswith(b),
    }
    t = tests.get(op)
    if t is None:
        raise NotRunnable(f"fieldref with {op.value} is not supported")

    def m(ev: Fields) -> bool:
        a, b = ev.get(name), ev.get(ref)
        if a is None or b is None:
            return False
        return t(norm(a), norm(b))

    return m


def _keyword(values: tuple[M.Value, ...], cased: bool, match_all: bool) -> Matcher:
    """Keywords (no field): a value matches when any field's text holds it. A plain keyword is
    a substring test (Sigma keyword semantics as the regression data and pySigma's text backends
    read it); a keyword with wildcards is matched against each whole field value.

    Plain keywords are searched in the event's values joined by newlines, lowered once: a
    keyword without a newline cannot straddle two values, so this is exact."""
    subs: list[str] = []
    pats: list[StrTest] = []
    for v in values:
        if isinstance(v, M.Pattern) and v.has_wildcards:
            pats.append(pattern_test(v, cased))
        elif isinstance(v, (str, M.Pattern, int, float)):
            lit = v.literal() if isinstance(v, M.Pattern) else to_text(v)
            lit = lit or ""
            if "\n" in lit:
                pats.append(pattern_test(anchored("contains", lit), cased))
            else:
                subs.append(lit if cased else lit.lower())
        else:
            raise NotRunnable(f"keyword value {v!r}")
    lower = not cased

    def texts(ev: Fields) -> list[str]:
        out = []
        for x in ev.values():
            if x is None:
                continue
            if type(x) is str:
                out.append(x)
                continue
            for y in x if isinstance(x, list) else (x,):
                if y is not None:
                    out.append(to_text(y))
        return out

    def joined(ts: list[str]) -> str:
        j = "\n".join(ts)
        return j.lower() if lower else j

    def one_value(ts: list[str], t: StrTest) -> bool:
        return any(t(x.lower() if lower else x) for x in ts)

    sub_test = _any_value(Op.CONTAINS, list(subs), True) if subs else None
    pt = tuple(pats)
    if match_all:
        st = tuple(subs)

        def m_all(ev: Fields) -> bool:
            ts = texts(ev)
            j = joined(ts)
            return all(x in j for x in st) and all(one_value(ts, t) for t in pt)

        return m_all

    def m_any(ev: Fields) -> bool:
        ts = texts(ev)
        if sub_test is not None and sub_test(joined(ts)):
            return True
        return any(one_value(ts, t) for t in pt)

    return m_any


# --------------------------------------------------------------------------------------------
# Predicates
# --------------------------------------------------------------------------------------------


def compile_predicate(p: M.Predicate, field_map: Mapping[str, str] | None = None) -> Matcher:
    fm = field_map or {}
    mapped_name = fm.get(p.field) if p.field else None
    if mapped_name and mapped_name != p.field:
        # read the mapped field (NewProcessName for Image); when an event has only the rule's
        # own name (a Splunk export with EventCode), read that one
        mapped = _predicate(p, fm)
        orig = _predicate(p, {k: v for k, v in fm.items() if k != p.field})

        def either(ev: Fields) -> bool:
            return mapped(ev) if mapped_name in ev else orig(ev)

        m: Matcher = either
    else:
        m = _predicate(p, fm)
    if p.negated:
        inner = m
        return lambda ev: not inner(ev)
    return m


def _predicate(p: M.Predicate, fm: Mapping[str, str]) -> Matcher:
    op = p.op
    try:
        values = [x for v in p.values for x in expand(v, p.transforms)]
        groups = [expand(v, p.transforms) for v in p.values]
    except TransformError as exc:
        raise NotRunnable(str(exc)) from None
    if op is Op.KEYWORD or p.field is None:
        if op not in (Op.KEYWORD, Op.CONTAINS, Op.EQ, Op.WILDCARD):
            raise NotRunnable(f"{op.value} without a field")
        return _keyword(tuple(values), p.cased, p.match_all)
    name = fm.get(p.field, p.field)
    if op is Op.EXISTS:
        want = not (p.values and p.values[0] is False)
        if want:
            return lambda ev: ev.get(name) is not None
        return lambda ev: ev.get(name) is None
    if op is Op.EQ and any(v is None for v in values):
        others = tuple(v for v in values if v is not None)
        rest = _predicate(M.Predicate(p.field, op, others, cased=p.cased), fm) if others else None

        def null_or(ev: Fields) -> bool:
            v = ev.get(name, _MISSING)
            if v is _MISSING or v is None:
                return True
            return rest is not None and rest(ev)

        return null_or
    if not values:
        raise NotRunnable(f"predicate on {p.field} has no value")
    if any(isinstance(v, M.FieldRef) for v in values):
        if len(values) != 1 or not isinstance(values[0], M.FieldRef):
            raise NotRunnable("fieldref mixed with other values")
        return _fieldref(name, op, fm.get(values[0].name, values[0].name), p.cased)
    if op is Op.REGEX:
        return _raw_field(name, _regex_test(tuple(values), p.match_all))
    if op in (Op.GT, Op.GE, Op.LT, Op.LE):
        tests = [_number_test(op, v) for v in values]
        return _raw_field(name, (lambda x: all(t(x) for t in tests)) if p.match_all
                          else (lambda x: any(t(x) for t in tests)))
    if op is Op.CIDR:
        return _raw_field(name, _cidr_test(tuple(values)))
    if op in _PATTERN_OPS:
        if any(isinstance(v, M.Regex) for v in values):
            return _raw_field(name, _regex_test(tuple(values), p.match_all))
        base = Op.EQ if op is Op.NE else op
        if p.match_all:
            test = _all([_any_value(base, list(g), p.cased) for g in groups])
        else:
            test = _any_value(base, values, p.cased)
        m = _on_field(name, test, not p.cased)
        if op is Op.NE:  # SPL field!=x: the field must be there
            return lambda ev: ev.get(name) is not None and not m(ev)
        return m
    raise NotRunnable(f"operator {op.value} is not supported")


# --------------------------------------------------------------------------------------------
# Trees
# --------------------------------------------------------------------------------------------


TermCompiler = Callable[[M.Term, Mapping[str, str]], Callable[[Fields], Any]]


def compile_node(node: M.Node | None, field_map: Mapping[str, str] | None = None, *,
                 terms: TermCompiler | None = None) -> Matcher:
    """The matcher of a whole tree (None = match everything). Raises :class:`NotRunnable`.

    ``terms`` compiles the :class:`Condition` expressions: the language's own operators and
    functions (default :func:`engine.functions.compile_term`, SPL's; Elastic's EQL passes
    ``engine.eql_functions.compile_eql_term``, see ``engine/elastic_semantics.py``)."""
    fm = field_map or {}
    if node is None:
        return _true
    if isinstance(node, M.Predicate):
        return compile_predicate(node, fm)
    if isinstance(node, M.And):
        return _all([compile_node(a, fm, terms=terms) for a in node.args])
    if isinstance(node, M.Or):
        return _any([compile_node(a, fm, terms=terms) for a in node.args])
    if isinstance(node, M.Not):
        inner = compile_node(node.arg, fm, terms=terms)
        return lambda ev: not inner(ev)
    if isinstance(node, M.Const):
        return _true if node.value else _false
    if isinstance(node, M.Condition):
        try:
            ev_ = (terms or compile_term)(node.expr, fm)
        except UnknownFunction as exc:
            raise NotRunnable(exc.message) from None
        return lambda ev: truthy(ev_(ev))
    if isinstance(node, M.Opaque):
        raise NotRunnable(f"cannot run {node.text!r}: {node.reason}")
    raise NotRunnable(f"unknown node {type(node).__name__}")


# --------------------------------------------------------------------------------------------
# The naive baseline: the same semantics, interpreted per event (for bench/hunt.py only)
# --------------------------------------------------------------------------------------------


def interpret(node: M.Node | None, ev: Fields, field_map: Mapping[str, str] | None = None) -> bool:
    """Walk the tree on one event, building each predicate's test as it goes: what an engine
    without a compile step does. Same answers as :func:`compile_node`, many times slower."""
    if node is None:
        return True
    if isinstance(node, M.And):
        return all(interpret(a, ev, field_map) for a in node.args)
    if isinstance(node, M.Or):
        return any(interpret(a, ev, field_map) for a in node.args)
    if isinstance(node, M.Not):
        return not interpret(node.arg, ev, field_map)
    return compile_node(node, field_map)(ev)
