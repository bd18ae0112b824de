"""SPL tree -> the shared model: stages, predicate trees, group-by, computed fields.

Each stage as written is expanded (macros) and parsed again; the commands it expands to give
the stage its kind, its condition and, for aggregations, its ``by`` fields. Predicates before
the first aggregating command filter raw events (``Phase.EVENT``); later ones filter result
rows (``Phase.RESULT``, e.g. ``| where count > 10``).

Value mapping (search syntax, case-insensitive): ``f=v`` -> ``eq``; a value with ``*`` ->
``wildcard`` with a :class:`Pattern`; ``f=*`` -> ``exists``; ``f!=v`` -> ``ne`` (the field must
exist); ``NOT f=v`` -> ``Not(eq)``; ``f IN (...)`` -> ``in``; ``< <= > >=`` -> ``lt le gt ge``;
a bare term -> ``keyword``. ``where`` (eval syntax) is case-sensitive (``cased``): ``like`` ->
``wildcard``, ``match`` -> ``regex``, ``isnull``/``isnotnull`` -> ``exists``, ``cidrmatch`` ->
``cidr``, ``in`` -> ``in``, ``searchmatch`` -> its search; anything else -> a
:class:`Condition` holding the expression as a :class:`Call` tree.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ruleatlas import model as M
from ruleatlas.languages.parsing import ParseError, span_of
from ruleatlas.languages.spl import ast as S
from ruleatlas.languages.spl.generator import expr as expr_text
from ruleatlas.languages.spl.parser import Parser
from ruleatlas.languages.spl.tokens import unescape
from ruleatlas.model import Op

AGGREGATING = frozenset({
    "stats", "tstats", "mstats", "eventstats", "streamstats", "chart", "timechart", "top",
    "rare", "transaction", "geostats", "sistats", "sichart", "sitimechart", "mcollect",
})
GENERATING = frozenset({
    "tstats", "mstats", "inputlookup", "from", "rest", "makeresults", "datamodel", "metadata",
    "loadjob", "savedsearch", "inputcsv", "dbinspect", "eventcount", "pivot",
})
FILTERING = frozenset({"search", "where", "regex"})
TIME_MODIFIERS = frozenset({
    "earliest", "latest", "starthoursago", "endhoursago", "startdaysago", "enddaysago",
    "starttime", "endtime", "starttimeu", "endtimeu", "timeformat", "_index_earliest",
    "_index_latest", "minutesago", "hoursago", "daysago",
})
CMP_OPS = {"=": Op.EQ, "==": Op.EQ, "!=": Op.NE, "<": Op.LT, "<=": Op.LE, ">": Op.GT,
           ">=": Op.GE}
FLIP = {Op.LT: Op.GT, Op.LE: Op.GE, Op.GT: Op.LT, Op.GE: Op.LE, Op.EQ: Op.EQ, Op.NE: Op.NE}
IPLOCATION_FIELDS = ("City", "Country", "Region", "lat", "lon")
_REX_GROUP = re.compile(r"\(\?P?<([A-Za-z_][\w]*)>")


def search_value(v: S.Word | S.Str) -> str | M.Pattern:
    """A search-syntax value with escapes resolved; ``*`` makes it a :class:`Pattern`."""
    s = v.value if isinstance(v, S.Str) else unescape(v.raw)
    if "*" not in s:
        return s
    parts: list[str | M.Wild] = []
    for i, chunk in enumerate(s.split("*")):
        if i:
            parts.append(M.Wild.ANY)
        parts.append(chunk)
    return M.Pattern(tuple(parts))


def like_pattern(s: str) -> M.Pattern:
    """An SPL ``like`` pattern: ``%`` any run, ``_`` one character."""
    return M.Pattern.from_wildcards(s, "%", "_")


@dataclass
class _Ctx:
    """State while lowering one search: where we are and what we learnt so far."""

    stage: int = 0
    phase: M.Phase = M.Phase.EVENT
    datamodel: str | None = None  # "Endpoint" (the datamodel of the last tstats/from)
    nodename: str | None = None
    source: str = ""  # the text the current stage was parsed from (offsets refer to it)
    cmd_text: str = ""  # the current command's own text
    span: M.Span | None = None
    computed: list[str] = field(default_factory=list)
    renamed: list[str] = field(default_factory=list)
    datamodels: list[str] = field(default_factory=list)
    problems: list[M.Problem] = field(default_factory=list)
    query: str = ""  # the whole search as written (spans refer to it)
    tstats: list[dict[str, Any]] = field(default_factory=list)
    # fields the rows carry unchanged from events after an aggregation (None: before any, every
    # field but the computed ones); see carry()
    carried: list[str] | None = None

    def dm_for(self, name: str | None) -> str | None:
        if not name or not self.datamodel or "." not in name:
            return None
        return f"{self.datamodel}.{name.split('.', 1)[0]}"

    def text(self, start: int, end: int) -> str:
        return self.source[start:end]

    def span_for(self, start: int, end: int) -> M.Span | None:
        """The span of ``source[start:end]`` in the query: exact when the stage was parsed from
        the query itself, else where that text occurs in the stage as written (a term next to
        a macro), else the stage's span (a term the macro brought in)."""
        if not self.query or self.span is None or self.span.start is None or end <= start:
            return self.span
        if self.source is self.query:
            return span_of(self.query, start, end)
        t = self.source[start:end]
        i = self.query.find(t, self.span.start, self.span.end)
        return span_of(self.query, i, i + len(t)) if i >= 0 else self.span


# ---- search syntax ------------------------------------------------------------------------


def lower_search(n: S.SNode, ctx: _Ctx) -> M.Node | None:
    if isinstance(n, S.And):
        return M.conjoin([lower_search(a, ctx) for a in n.args]) or M.Const(True)
    if isinstance(n, S.Or):
        args = [lower_search(a, ctx) for a in n.args]
        if any(a is None or a == M.Const(True) for a in args):
            return M.Const(True)
        return M.Or(tuple(a for a in args if a is not None))
    if isinstance(n, S.Not):
        inner = lower_search(n.arg, ctx)
        return M.Not(inner) if inner is not None else None
    if isinstance(n, S.SCompare):
        return _compare(n, ctx)
    if isinstance(n, S.SIn):
        return M.Predicate(n.field, Op.IN, tuple(search_value(v) for v in n.values),
                         datamodel=ctx.dm_for(n.field), phase=ctx.phase, stage=ctx.stage,
                         text=ctx.text(n.start, n.end), span=ctx.span_for(n.start, n.end))
    if isinstance(n, S.STerm):
        val = search_value(n.value)
        if val == M.Pattern((M.Wild.ANY,)):
            return M.Const(True)
        return M.Predicate(None, Op.KEYWORD, (val,), cased=n.func == "CASE", phase=ctx.phase,
                         stage=ctx.stage, text=ctx.text(n.start, n.end),
                         span=ctx.span_for(n.start, n.end))
    if isinstance(n, S.Macro):
        return M.Opaque(f"`{n.body}`", "unknown macro", stage=ctx.stage, span=ctx.span)
    if isinstance(n, S.Sub):
        return M.Opaque(ctx.text(n.start, n.end),
                      "subsearch: the filter depends on the results of another search",
                      stage=ctx.stage, span=ctx.span)
    raise TypeError(n)


def _compare(n: S.SCompare, ctx: _Ctx) -> M.Node | None:
    fld = n.field
    low = fld.lower()
    if low in TIME_MODIFIERS:
        return None  # a time range, not a filter on event content
    if low == "nodename" and ctx.datamodel:
        ctx.nodename = unescape(n.value.raw) if isinstance(n.value, S.Word) else n.value.value
        return None
    val = search_value(n.value)
    cased = False
    if isinstance(n.value, S.Word):  # f=CASE(v) / f=TERM(v): the value inside, CASE is cased
        raw = n.value.raw
        head = raw[:5].upper()
        if head in ("CASE(", "TERM(") and raw.endswith(")") and len(raw) > 6:
            val = search_value(S.Word(raw[5:-1]))
            cased = head == "CASE("
    op = CMP_OPS[n.op]
    text = ctx.text(n.start, n.end)
    common: dict[str, Any] = dict(datamodel=ctx.dm_for(fld), phase=ctx.phase, stage=ctx.stage,
                                  text=text, span=ctx.span_for(n.start, n.end), cased=cased)
    star = M.Pattern((M.Wild.ANY,))
    if op is Op.EQ:
        if val == star:
            return M.Predicate(fld, Op.EXISTS, (), **common)
        if isinstance(val, M.Pattern):
            return M.Predicate(fld, Op.WILDCARD, (val,), **common)
        return M.Predicate(fld, Op.EQ, (val,), **common)
    if op is Op.NE and val == star:
        return M.Predicate(fld, Op.EXISTS, (), negated=True, **common)
    if isinstance(val, M.Pattern) and op is not Op.NE:
        val = val.display()
    return M.Predicate(fld, op, (val,), **common)


# ---- eval syntax --------------------------------------------------------------------------


def term(e: S.ENode) -> M.Term:
    if isinstance(e, S.Field):
        return M.FieldRef(e.name)
    if isinstance(e, S.Str | S.Num):
        return e.value
    if isinstance(e, S.Call):
        return M.Call(e.name, tuple(term(a) for a in e.args))
    if isinstance(e, S.BinOp):
        return M.Call(e.op, (term(e.left), term(e.right)))
    if isinstance(e, S.Unary):
        return M.Call(e.op, (term(e.arg),))
    if isinstance(e, S.Macro):
        return M.Call("macro", (e.body,))
    if isinstance(e, S.EOpaque):
        return M.Call(e.text, ())
    raise TypeError(e)


def _literal(e: S.ENode) -> str | None:
    if isinstance(e, S.Str):
        return e.value
    if isinstance(e, S.Num):
        return e.text
    return None


def _field_span(e: S.ENode, ctx: _Ctx) -> M.Span | None:
    """Where a where-clause part starts in the query: at its first field reference (eval nodes
    keep no other offsets); the stage's span when parsed from a macro's expansion."""
    if ctx.source is not ctx.query or not ctx.query:
        return ctx.span
    stack: list[S.ENode] = [e]
    while stack:
        n = stack.pop()
        if isinstance(n, S.Field):
            return span_of(ctx.query, n.start, n.start + len(n.name)) if n.start else ctx.span
        if isinstance(n, S.BinOp):
            stack.extend((n.right, n.left))
        elif isinstance(n, S.Unary):
            stack.append(n.arg)
        elif isinstance(n, S.Call):
            stack.extend(reversed(n.args))
    return ctx.span


def _unwrap(t: str) -> str:
    """``(a = 1)`` -> ``a = 1`` when the outer parentheses enclose the whole text."""
    while t.startswith("(") and t.endswith(")"):
        depth, quoted = 0, False
        for i, ch in enumerate(t):
            if ch == '"' and (i == 0 or t[i - 1] != "\\"):
                quoted = not quoted
            elif not quoted and ch in "()":
                depth += 1 if ch == "(" else -1
                if depth == 0 and i < len(t) - 1:
                    return t
        t = t[1:-1]
    return t


def lower_eval(e: S.ENode, ctx: _Ctx, text: str, top: S.ENode | None = None) -> M.Node:
    """A where/eval boolean expression as predicates where it can, else a Condition.

    ``text`` is the whole clause as written; a part of an AND/OR/NOT (``top`` is the whole
    expression) gets its own text, generated from its subtree."""
    top = e if top is None else top
    if isinstance(e, S.BinOp) and e.op in ("AND", "OR"):
        left, right = lower_eval(e.left, ctx, text, top), lower_eval(e.right, ctx, text, top)
        return M.connective(M.And if e.op == "AND" else M.Or, (left, right))
    if isinstance(e, S.Unary) and e.op == "NOT":
        return M.Not(lower_eval(e.arg, ctx, text, top))
    if top is not None and e is not top:  # a part of a larger clause: its own text
        text = _unwrap(expr_text(e))
    common: dict[str, Any] = dict(cased=True, phase=ctx.phase, stage=ctx.stage, text=text,
                                  span=_field_span(e, ctx))
    if isinstance(e, S.BinOp) and e.op in CMP_OPS:
        op = CMP_OPS[e.op]
        lhs, rhs = e.left, e.right
        if not isinstance(lhs, S.Field) and isinstance(rhs, S.Field):
            lhs, rhs, op = rhs, lhs, FLIP[op]
        if isinstance(lhs, S.Field):
            lit = _literal(rhs)
            if lit is not None:
                return M.Predicate(lhs.name, op, (lit,), datamodel=ctx.dm_for(lhs.name),
                                 **common)
            if isinstance(rhs, S.Field) and op in (Op.EQ, Op.NE):
                return M.Predicate(lhs.name, op, (M.FieldRef(rhs.name),),
                                 datamodel=ctx.dm_for(lhs.name), **common)
    if isinstance(e, S.BinOp) and e.op == "LIKE" and isinstance(e.left, S.Field):
        lit = _literal(e.right)
        if lit is not None:
            return M.Predicate(e.left.name, Op.WILDCARD, (like_pattern(lit),),
                             datamodel=ctx.dm_for(e.left.name), **common)
    if isinstance(e, S.Call):
        node = _lower_call(e, ctx, text, common)
        if node is not None:
            return node
    t = term(e)
    return M.Condition(t, text, M.term_fields(t), phase=ctx.phase, stage=ctx.stage,
                     span=common["span"])


def _lower_call(e: S.Call, ctx: _Ctx, text: str, common: dict[str, Any]) -> M.Node | None:
    a = e.args
    f = a[0].name if a and isinstance(a[0], S.Field) else None
    dm = ctx.dm_for(f)
    if e.name == "like" and f and len(a) == 2 and _literal(a[1]) is not None:
        return M.Predicate(f, Op.WILDCARD, (like_pattern(_literal(a[1]) or ""),), datamodel=dm,
                         **common)
    if e.name == "match" and f and len(a) == 2 and _literal(a[1]) is not None:
        return M.Predicate(f, Op.REGEX, (M.Regex(_literal(a[1]) or ""),), datamodel=dm, **common)
    if e.name in ("isnull", "isnotnull") and f and len(a) == 1:
        return M.Predicate(f, Op.EXISTS, (), negated=e.name == "isnull", datamodel=dm, **common)
    if e.name == "cidrmatch" and len(a) == 2 and isinstance(a[1], S.Field):
        lit = _literal(a[0])
        if lit is not None:
            return M.Predicate(a[1].name, Op.CIDR, (lit,), datamodel=ctx.dm_for(a[1].name),
                             **common)
    if e.name == "in" and f and len(a) >= 2 and all(_literal(x) is not None for x in a[1:]):
        return M.Predicate(f, Op.IN, tuple(_literal(x) or "" for x in a[1:]), datamodel=dm,
                         **common)
    if e.name == "searchmatch" and len(a) == 1 and isinstance(a[0], S.Str):
        try:
            p = Parser(a[0].value)
            node = p.search_expr(p.search_tokens(a[0].value, 0))
        except ParseError:
            return None
        if node is None:
            return M.Const(True)
        sub = _Ctx(ctx.stage, ctx.phase, ctx.datamodel, source=a[0].value, span=ctx.span)
        return lower_search(node, sub)
    return None


# ---- commands -----------------------------------------------------------------------------


def _words(items: tuple[S.Item, ...]) -> list[str]:
    return [i.raw if isinstance(i, S.Word) else i.value if isinstance(i, S.Str) else
            i.text if isinstance(i, S.Sym) else "" for i in items]


def by_fields(items: tuple[S.Item, ...]) -> tuple[str, ...]:
    """Fields after ``by`` (``k=v`` options such as ``span=1h`` skipped)."""
    out: list[str] = []
    seen_by = False
    i = 0
    while i < len(items):
        it = items[i]
        if isinstance(it, S.Word) and it.raw.lower() in ("by", "groupby") and not seen_by:
            seen_by = True
            i += 1
            continue
        if seen_by:
            nxt = items[i + 1] if i + 1 < len(items) else None
            if isinstance(nxt, S.Sym) and nxt.text == "=":
                i += 3
                continue
            if isinstance(it, S.Word | S.Str):
                name = it.raw if isinstance(it, S.Word) else it.value
                if name.lower() in ("over", "where", "by"):
                    i += 1
                    continue
                out.append(name)
        i += 1
    return tuple(out)


def rename_pairs(items: tuple[S.Item, ...]) -> list[tuple[str, str]]:
    names = [x for x in items if isinstance(x, S.Word | S.Str)]
    vals = [x.raw if isinstance(x, S.Word) else x.value for x in names]
    pairs = []
    i = 0
    while i + 2 < len(vals):
        if vals[i + 1].lower() == "as":
            pairs.append((vals[i], vals[i + 2]))
            i += 3
        else:
            i += 1
    return pairs


def apply_rename(fields: tuple[str, ...], pairs: list[tuple[str, str]]) -> tuple[str, ...]:
    out = list(fields)
    for src, dst in pairs:
        if "*" in src:
            rx = re.compile("^" + ".*?".join(re.escape(p) for p in src.split("*")).replace(
                ".*?", "(.*?)") + "$")
            for k, f in enumerate(out):
                m = rx.match(f)
                if m:
                    caps = iter(m.groups())
                    out[k] = "".join(p if j == 0 else next(caps, "") + p
                                     for j, p in enumerate(dst.split("*")))
        else:
            out = [dst if f == src else f for f in out]
    return tuple(dict.fromkeys(out))


TSTATS_OPTIONS = frozenset({
    "summariesonly", "allow_old_summaries", "fillnull_value", "prestats", "local", "append",
    "chunk_size", "include_reduced_buckets",
})


def tstats_options(items: tuple[S.Item, ...]) -> dict[str, str]:
    """``summariesonly=true`` and the other tstats options (after macro expansion)."""
    out: dict[str, str] = {}
    for i in range(len(items) - 2):
        k, eq, v = items[i], items[i + 1], items[i + 2]
        if isinstance(k, S.Word) and eq == S.Sym("=") and k.raw.lower() in TSTATS_OPTIONS:
            if isinstance(v, S.Word):
                out[k.raw.lower()] = unescape(v.raw)
            elif isinstance(v, S.Str):
                out[k.raw.lower()] = v.value
            elif isinstance(v, S.Macro):
                out[k.raw.lower()] = f"`{v.body}`"
    return out


def datamodel_of(items: tuple[S.Item, ...]) -> str | None:
    vals = _words(items)
    for i, v in enumerate(vals):
        if v.lower() == "datamodel":
            if i + 2 < len(vals) and vals[i + 1] == "=":
                return vals[i + 2]
            if i + 1 < len(vals) and vals[i + 1] != "=":
                return vals[i + 1]
        if v.lower().startswith("datamodel:"):
            return v.split(":", 1)[1]
    return None


def computed_by(cmd: S.Command) -> list[str]:
    """Fields a command creates (eval, rex, lookup outputs, iplocation, spath, stats as)."""
    name = cmd.name
    if name == "eval":
        return [f for f, _ in cmd.assignments]
    vals = _words(cmd.items)
    if name == "rex":
        return [m for it in cmd.items if isinstance(it, S.Str)
                for m in _REX_GROUP.findall(it.value)]
    if name == "lookup":
        out: list[str] = []
        mode = False
        for i, v in enumerate(vals):
            if v.upper() in ("OUTPUT", "OUTPUTNEW"):
                mode = True
                continue
            if mode and v not in (",", "=") and v.lower() != "as":
                if i + 1 < len(vals) and vals[i + 1].lower() == "as":
                    continue
                out.append(v)
        return out
    if name == "iplocation":
        prefix = ""
        for i, v in enumerate(vals):
            if v == "prefix" and i + 2 < len(vals):
                prefix = vals[i + 2]
        return [prefix + f for f in IPLOCATION_FIELDS]
    if name == "spath":
        for i, v in enumerate(vals):
            if v == "output" and i + 2 < len(vals):
                return [vals[i + 2]]
        return []
    if name in AGGREGATING:
        return agg_outputs(cmd.items)
    if name in ("fillnull", "strcat"):
        return [vals[i + 1] for i, v in enumerate(vals[:-1]) if v.lower() == "as"]
    return []


@dataclass(frozen=True, slots=True)
class AggCall:
    """One function of an aggregation as written (``dc(user) as n``): its word, the items
    inside its parentheses (None without; ``closed`` False when the ``)`` is missing) and the
    item after ``as``."""

    word: S.Word
    args: tuple[S.Item, ...] | None = None
    closed: bool = True
    alias: S.Item | None = None

    @property
    def column(self) -> str:
        """The column it creates: the ``as`` alias, else its own text (``dc(user)``)."""
        if isinstance(self.alias, S.Word | S.Str):
            return self.alias.raw if isinstance(self.alias, S.Word) else self.alias.value
        if self.args is None:
            return self.word.raw
        inner = "".join(_item_text(t) for t in self.args)
        return f"{self.word.raw}({inner}{')' if self.closed else ''}"


def agg_items(items: tuple[S.Item, ...]) -> Iterator[AggCall | S.Item]:
    """The functions of an aggregation in order, up to its ``by``/``where``/``from``, with
    ``k=v`` options skipped; an item that cannot start a function (a comma, a string) comes
    as itself, for the caller to skip or report. The one reading of a function list behind
    :func:`agg_outputs`, :func:`agg_calls` and :func:`agg_functions`."""
    i, n = 0, len(items)
    while i < n:
        it = items[i]
        if not isinstance(it, S.Word):
            yield it
            i += 1
            continue
        if it.raw.lower() in ("by", "where", "from"):
            return
        if i + 1 < n and items[i + 1] == S.Sym("="):
            i += 3
            continue
        call = AggCall(it)
        j = i + 1
        if j < n and items[j] == S.Sym("("):
            depth = 0
            while j < n:
                depth += 1 if items[j] == S.Sym("(") else -1 if items[j] == S.Sym(")") else 0
                j += 1
                if depth == 0:
                    break
            call = AggCall(it, items[i + 2 : j - 1 if depth == 0 else j], depth == 0)
        nxt = items[j] if j < n else None
        if j + 1 < n and isinstance(nxt, S.Word) and nxt.raw.lower() == "as":
            call = AggCall(it, call.args, call.closed, items[j + 1])
            j += 2
        yield call
        i = j


def agg_outputs(items: tuple[S.Item, ...]) -> list[str]:
    """The columns an aggregation creates: each function's ``as`` alias, else its own text
    (``count``, ``dc(user)``); options (``k=v``), ``from``/``where`` clauses and the ``by``
    list are skipped."""
    return [c.column for c in agg_items(items)
            if isinstance(c, AggCall) and c.column.lower() != "as"]


# Aggregation functions whose output is one of the values the events had (not a number computed
# from them): a later filter on their output tests event content.
CARRYING_FUNCTIONS = frozenset({
    "values", "list", "latest", "earliest", "first", "last", "min", "max", "mode",
})
# Aggregating commands that keep every row (or every event's fields) and only add columns.
ADDING_AGGREGATIONS = frozenset({"eventstats", "streamstats", "transaction"})


def agg_calls(items: tuple[S.Item, ...]) -> list[tuple[str, str | None, str]]:
    """``(function, argument, output column)`` of each function of an aggregation
    (``values(x) as y`` -> ``("values", "x", "y")``, ``count`` -> ``("count", None, "count")``);
    the argument only when it is one field; the same columns as :func:`agg_outputs`."""
    out: list[tuple[str, str | None, str]] = []
    for c in agg_items(items):
        if not isinstance(c, AggCall) or c.column.lower() == "as":
            continue
        one = c.args[0] if c.args is not None and len(c.args) == 1 and c.closed else None
        out.append((c.word.raw.lower(), _text(one) if one is not None else None, c.column))
    return out


def _carried(f: str, ctx: _Ctx) -> bool:
    """Whether ``f`` holds event values here; ``_time`` never does for this purpose: ``by _time
    span=1h`` buckets it, and a test of it (or of ``min(_time)``) is a time bound."""
    if f == "_time":
        return False
    return f not in ctx.computed if ctx.carried is None else f in ctx.carried


def carry(cmd: S.Command, by: tuple[str, ...], ctx: _Ctx) -> None:
    """Follow the fields whose values stay as the events had them (``ctx.carried``), before
    ``cmd``'s outputs are recorded as computed: an aggregation keeps its carried ``by`` fields
    and the outputs of :data:`CARRYING_FUNCTIONS` over carried fields (never ``_time``);
    ``rename`` renames them; a command that writes a field drops it."""
    name = cmd.name
    if name in AGGREGATING and name not in ADDING_AGGREGATIONS:
        keep = [f for f in by if _carried(f, ctx)]
        keep += [col for fn, arg, col in agg_calls(cmd.items)
                 if fn in CARRYING_FUNCTIONS and arg is not None and _carried(arg, ctx)]
        ctx.carried = list(dict.fromkeys(keep))
        return
    if ctx.carried is None:
        return
    if name == "rename":
        ctx.carried = list(apply_rename(tuple(ctx.carried), rename_pairs(cmd.items)))
        return
    written = set(computed_by(cmd))
    ctx.carried = [f for f in ctx.carried if f not in written]


def options(items: tuple[S.Item, ...]) -> tuple[dict[str, str], list[S.Item]]:
    """A command's ``key=value`` options (keys lowered) and its other items, in order."""
    opts: dict[str, str] = {}
    rest: list[S.Item] = []
    i = 0
    while i < len(items):
        x = items[i]
        if isinstance(x, S.Word) and i + 2 < len(items) and items[i + 1] == S.Sym("="):
            v = items[i + 2]
            opts[x.raw.lower()] = v.raw if isinstance(v, S.Word) else v.value \
                if isinstance(v, S.Str) else ""
            i += 3
            continue
        rest.append(x)
        i += 1
    return opts, rest


def _text(x: S.Item) -> str | None:
    return x.raw if isinstance(x, S.Word) else x.value if isinstance(x, S.Str) else None


def rex_step(cmd: S.Command, stage: int) -> M.Rex:
    """A ``rex`` command's options and pattern: ``field`` (default ``_raw``), ``pattern`` (SPL
    escapes resolved), ``max_match``, ``mode`` (``sed`` rewrites the field)."""
    opts, rest = options(cmd.items)
    most: int | str = opts.get("max_match", "1")
    try:
        most = int(most)
    except ValueError:
        pass
    return M.Rex(stage, opts.get("field", "_raw"),
               next((x.value for x in rest if isinstance(x, S.Str)), None), most, opts.get("mode"))


def spath_step(cmd: S.Command, stage: int) -> M.Spath:
    """``spath [input=F] [output=O] [path=P | P]`` (input defaults to ``_raw``; no path: every
    field of the JSON or XML document)."""
    opts, rest = options(cmd.items)
    positional = next((t for t in map(_text, rest) if t is not None), None)
    return M.Spath(stage, opts.get("input", "_raw"), opts.get("output"),
                 opts.get("path", positional))


@dataclass(frozen=True, slots=True)
class JoinSpec:
    """``join [type=inner|outer|left] [max=N] [overwrite=t] f1, f2 [subsearch]``: the step
    without its subsearch, and the subsearch's offsets in the stage's text (brackets included)
    for the analyzer to analyze it."""

    step: M.Join
    start: int
    end: int


def join_spec(cmd: S.Command, stage: int) -> JoinSpec | M.Join:
    """A ``join``'s fields and options, with the offsets of its subsearch; a :class:`M.Join`
    without subsearch when it has not exactly one."""
    subs = [x for x in cmd.items if isinstance(x, S.Sub)]
    opts, rest = options(tuple(x for x in cmd.items if not isinstance(x, S.Sub)))
    fields = tuple(t for x in rest if (t := _text(x)) is not None and t != ",")
    kind = opts.get("type", "inner").lower()
    step = M.Join(stage, fields, "outer" if kind == "left" else kind, opts.get("max", "1"),
                opts.get("overwrite", "t").lower() not in ("f", "false", "0"))
    return JoinSpec(step, subs[0].start, subs[0].end) if len(subs) == 1 else step


def bin_step(cmd: S.Command, stage: int) -> M.Bin:
    """``bin span=5m _time`` / ``bucket _time span=1h``: the fields and the span."""
    opts, rest = options(cmd.items)
    span = opts.pop("span", None)
    return M.Bin(stage, tuple(t for t in map(_text, rest) if t is not None), span,
               tuple(opts.items()))


def addtotals_step(cmd: S.Command, stage: int) -> M.AddTotals:
    """``addtotals fieldname=Score a, b, c`` (no fields: every numeric field; ``fieldname``
    defaults to ``Total``)."""
    opts, rest = options(cmd.items)
    return M.AddTotals(stage, opts.get("fieldname", "Total"),
                     tuple(t for t in map(_text, rest) if t is not None),
                     opts.get("row", "t").lower() not in ("f", "false", "0"))


def pipeline_step(cmd: S.Command, condition: M.Node | None, stage: int) -> M.Step | JoinSpec:
    """One command as a typed pipeline step (``model.Step``): a filter (its lowered
    condition), an ``eval`` (assignments as terms), a ``rex``, a ``rename`` (its pairs), an
    ``addtotals``, a ``spath``, a ``join`` (a :class:`JoinSpec`: the analyzer adds the
    subsearch), an aggregation, or any other command with the fields it writes."""
    if condition is not None:
        return M.Filter(stage, condition)
    if cmd.name == "eval" and cmd.assignments:
        return M.Eval(stage, tuple((f, term(e)) for f, e in cmd.assignments))
    if cmd.name == "rex":
        return rex_step(cmd, stage)
    if cmd.name == "rename":
        return M.Rename(stage, tuple(rename_pairs(cmd.items)))
    if cmd.name == "addtotals":
        return addtotals_step(cmd, stage)
    if cmd.name == "spath":
        return spath_step(cmd, stage)
    if cmd.name == "join":
        return join_spec(cmd, stage)
    if cmd.name in ("bin", "bucket"):
        return bin_step(cmd, stage)
    return M.OtherCommand(stage, cmd.name, tuple(computed_by(cmd)))


def _item_text(x: S.Item) -> str:
    return x.raw if isinstance(x, S.Word) else x.value if isinstance(x, S.Str) else \
        x.text if isinstance(x, S.Sym) else ""


def agg_functions(items: tuple[S.Item, ...]) -> tuple[tuple[M.AggFunc, ...], str | None]:
    """The functions of an aggregation as written (``count``, ``dc(user) as n``), up to its
    ``by``/``where``/``from``; ``k=v`` options skipped. The second value names a form that is
    not read (a nested ``eval(...)``, an item that is no function)."""
    out: list[M.AggFunc] = []
    for c in agg_items(items):
        if not isinstance(c, AggCall):
            if c == S.Sym(","):
                continue
            return tuple(out), f"cannot read {_item_text(c)!r}"
        if c.args is not None and S.Sym("(") in c.args:
            return tuple(out), (f"{c.word.raw}() with a nested expression (eval(...)) is "
                                "not supported")
        arg = " ".join(_item_text(t) for t in c.args) if c.args is not None else None
        alias = _item_text(c.alias) if c.alias is not None else None
        out.append(M.AggFunc(c.word.raw, arg, alias))
    return tuple(out), None


def by_span(items: tuple[S.Item, ...]) -> str | None:
    """``... by _time span=1h`` -> ``1h`` (a ``span`` option after ``by``)."""
    words = [_item_text(x) for x in items]
    low = [w.lower() for w in words]
    start = next((k for k, w in enumerate(low) if w in ("by", "groupby")), None)
    if start is None:
        return None
    for k in range(start + 1, len(words) - 2):
        if low[k] == "span" and words[k + 1] == "=":
            return words[k + 2]
    return None


def aggregate_step(cmd: S.Command, by: tuple[str, ...], stage: int, ctx: _Ctx) -> M.Aggregate:
    """An aggregating command as a typed step (functions, ``by``, span; tstats' datamodel,
    nodename and options)."""
    funcs, problem = agg_functions(cmd.items)
    tail = cmd.tail if cmd.search is not None else cmd.items
    tstats = cmd.name in ("tstats", "mstats")
    return M.Aggregate(stage, cmd.name, by, funcs, by_span(tail),
                     datamodel_of(cmd.items) if tstats else None,
                     ctx.nodename if tstats else None,
                     tuple(tstats_options(cmd.items).items()) if tstats else (), problem)


@dataclass
class CommandResult:
    condition: M.Node | None = None
    kind: M.StageKind = M.StageKind.TRANSFORM
    by: tuple[str, ...] = ()


def lower_command(cmd: S.Command, ctx: _Ctx) -> CommandResult:
    name = cmd.name
    res = CommandResult()
    if name in GENERATING:
        res.kind = M.StageKind.GENERATE
    if name == "tstats" or name == "from" or name == "datamodel":
        dm = datamodel_of(cmd.items)
        if dm:
            ctx.datamodel = dm.split(".")[0]
            ctx.nodename = None
            if dm not in ctx.datamodels:
                ctx.datamodels.append(dm)
    if name == "search" or (name == "tstats" and cmd.search is not None):
        if cmd.search is not None:
            res.condition = lower_search(cmd.search, ctx)
            if res.condition == M.Const(True):
                res.condition = None
        if name == "search":
            res.kind = M.StageKind.FILTER
    elif name == "where" and cmd.expr is not None:
        res.condition = lower_eval(cmd.expr, ctx, ctx.cmd_text.strip())
        res.kind = M.StageKind.FILTER
    elif name == "regex":
        res.kind = M.StageKind.FILTER
        res.condition = _regex_command(cmd, ctx)
    if name in AGGREGATING:
        res.kind = M.StageKind.AGGREGATE
        res.by = by_fields(cmd.tail if cmd.search is not None else cmd.items)
    if name in ("tstats", "mstats"):
        ctx.tstats.append({"stage": ctx.stage, "command": name,
                           "datamodel": datamodel_of(cmd.items), "nodename": ctx.nodename,
                           "options": tstats_options(cmd.items)})
    carry(cmd, res.by, ctx)
    for f in computed_by(cmd):
        if f not in ctx.computed:
            ctx.computed.append(f)
    if name == "rename":
        for _src, dst in rename_pairs(cmd.items):
            if "*" not in dst and dst not in ctx.renamed:
                ctx.renamed.append(dst)
    return res


def _regex_command(cmd: S.Command, ctx: _Ctx) -> M.Node | None:
    it = cmd.items
    text = ctx.cmd_text.strip()
    if (len(it) == 3 and isinstance(it[0], S.Word | S.Str) and isinstance(it[1], S.Sym)
            and isinstance(it[2], S.Str) and it[1].text in ("=", "!=")):
        fld = it[0].raw if isinstance(it[0], S.Word) else it[0].value
        return M.Predicate(fld, Op.REGEX, (M.Regex(it[2].value),), negated=it[1].text == "!=",
                         phase=ctx.phase, stage=ctx.stage, text=text, span=ctx.span)
    if len(it) == 1 and isinstance(it[0], S.Str):
        return M.Predicate("_raw", Op.REGEX, (M.Regex(it[0].value),), phase=ctx.phase,
                         stage=ctx.stage, text=text, span=ctx.span)
    return M.Opaque(text, "regex command form not understood", stage=ctx.stage, span=ctx.span)
