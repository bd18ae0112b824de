"""Predicate trees -> SQL boolean expressions over the flattened event table.

One sqlglot expression tree is built per (rule, event kind) and generated for the target
dialect (``spark``, ``duckdb``); dialect subclasses only change tables and flags (STYLE.md:
sqlglot's generator shape). The table is the one ``ruleatlas convert`` writes
(:mod:`.columnar`): one **string** column per field name the local engine sees, holding the
engine's text of the value (``to_text``: ``4104`` and ``"4104"`` are both ``'4104'``, booleans
``'true'``), and for fields that are lists in some events a ``<name>[]`` column
(``array<string>``, the non-null items' texts; the scalar column is then NULL).

Semantics are the local engine's (``engine/compile.py``), exactly:

* every predicate is a non-null boolean (``COALESCE(..., FALSE)``): a predicate on a missing
  field is false and ``NOT`` of it true, as in the local engine; ``eq null`` and
  ``exists: false`` are the exceptions (``IS NULL``);
* text tests run on ``LOWER(col)`` against literals lowered here (Python ``str.lower``) unless
  ``cased``; patterns become ``=``/``IN``, ``CONTAINS``, ``STARTSWITH``, ``ENDSWITH`` or
  ``LIKE ... ESCAPE '!'`` with ``%``/``_``/``!`` in literal text escaped (the LIKE wildcards
  match newlines in both engines, as Sigma's ``*`` does);
* Sigma transforms (``windash``, ``base64``, ``base64offset``, ``wide``/``utf16*``) are expanded
  in Python by the local engine's own ``expand`` and compared as strings;
* a list field matches when any item matches (``EXISTS(col[], x -> test(x))``);
* numbers (``gt ge lt le``): the text parsed as Python's ``float()``/``int(s, 16)`` would
  (decimal, exponent, ``0x`` hex, surrounding spaces) and compared as a double;
* ``cidr``: IPv4 networks as a range check on the dotted quad's value, with Python's parse
  rules (no leading zeros, each octet <= 255); IPv6 -> unsupported (no exact SQL form yet);
* ``regex``: the Python pattern re-emitted for Java or RE2 from Python's parse (:mod:`.regex`);
* keywords (no field): a plain keyword is a substring of the event's values joined by newlines
  (the local engine's own formulation, exact for keywords without a newline); a keyword with
  wildcards or a newline is tested against each value;
* a field mapped by the route (``Image`` -> ``NewProcessName`` on Security 4688) reads the
  mapped column when it is not NULL, else the rule's own name, as the local engine does.

What SQL cannot express goes to :meth:`PredicateCompiler.unsupported` (collected, the rule then
falls back to the local engine with the reasons): ``Opaque``, ``Condition`` (SPL ``where``
expressions), IPv6 networks, regex features the dialect lacks, ``fieldref`` on list fields.
Values are sqlglot literals, escaped by the generator for each dialect, never pasted text.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from sqlglot import exp

from ruleatlas import model as M
from ruleatlas.engine.sigma_semantics import (
    TransformError,
    _collapse,
    anchored,
    as_number,
    expand,
    to_text,
)
from ruleatlas.engine.sql.regex import JAVA, RE2, RegexDialect, RegexUnsupported
from ruleatlas.model import Op

LIST_SUFFIX = "[]"  # column of a field's list values: ``Data[]``
META_COLUMNS = frozenset({"_file", "_position", "_kind", "_seq", "_epoch", "_types"})
LIKE_ESCAPE = "!"
ITEM = "_item"  # the lambda variable over a list column's items
TEXT_COLUMN = "_text"  # the joined values, computed per kind when a keyword rule needs them
# Python's str.isspace() characters (str.strip() removes them), as a regex class.
SPACE_CLASS = r"[\t-\r\x{1c}-\x{20}\x{85}\p{Z}]"
MANY = 4  # more literal substrings than this in one predicate: one regex alternation
TEXT_OPS = {Op.EQ, Op.IN, Op.CONTAINS, Op.STARTSWITH, Op.ENDSWITH, Op.WILDCARD, Op.NE}
NUMBER_OPS = {Op.GT: exp.GT, Op.GE: exp.GTE, Op.LT: exp.LT, Op.LE: exp.LTE}
Test = Callable[[exp.Expr], exp.Expr]


@dataclass(frozen=True, slots=True)
class Table:
    """The columns of the event table a rule runs on: scalar field columns and the fields that
    also have a ``<name>[]`` list column."""

    columns: frozenset[str]
    lists: frozenset[str] = frozenset()
    # column name -> the name the table has it under, when they differ (DuckDB: case-variant
    # field names such as ProcessID / ProcessId get distinct aliases, see duckdb.attach)
    aliases: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_names(cls, names: Sequence[str],
                   aliases: Mapping[str, str] | None = None) -> Table:
        cols = {n for n in names if not n.endswith(LIST_SUFFIX) and n not in META_COLUMNS}
        lists = {n[: -len(LIST_SUFFIX)] for n in names if n.endswith(LIST_SUFFIX)}
        return cls(frozenset(cols), frozenset(lists), tuple(sorted((aliases or {}).items())))

    def col(self, name: str) -> exp.Column:
        """The quoted column of a (scalar or ``name[]``) column name, through the aliases."""
        return exp.column(dict(self.aliases).get(name, name), quoted=True) if self.aliases \
            else exp.column(name, quoted=True)

    @property
    def fields(self) -> list[str]:
        """Every event field, sorted (scalar or list)."""
        return sorted(self.columns | self.lists)


@dataclass(frozen=True, slots=True)
class Compiled:
    """A rule's condition as one SQL boolean expression, or the reasons it cannot be one."""

    expression: exp.Expr
    unsupported: tuple[str, ...] = ()
    uses_text: bool = False  # reads the ``_text`` column (keywords): the joined values

    @property
    def ok(self) -> bool:
        return not self.unsupported


def _false() -> exp.Expr:
    return exp.false()


def _true() -> exp.Expr:
    return exp.true()


def _is_const(e: exp.Expr, value: bool) -> bool:
    return isinstance(e, exp.Boolean) and e.this is value


def _connective(args: Sequence[exp.Expr], is_or: bool) -> exp.Expr:
    """AND (``is_or`` False) or OR of ``args`` with the constants folded: ``FALSE`` decides an
    AND and ``TRUE`` an OR; the other constant drops out (none left: it is the result)."""
    if any(_is_const(a, is_or) for a in args):
        return exp.Boolean(this=is_or)
    args = [a for a in args if not _is_const(a, not is_or)]
    if not args:
        return exp.Boolean(this=not is_or)
    if len(args) == 1:
        return args[0]
    return exp.or_(*args, copy=False) if is_or else exp.and_(*args, copy=False)


def _and(args: Sequence[exp.Expr]) -> exp.Expr:
    return _connective(args, False)


def _or(args: Sequence[exp.Expr]) -> exp.Expr:
    return _connective(args, True)


def _not(a: exp.Expr) -> exp.Expr:
    if isinstance(a, exp.Boolean):
        return exp.Boolean(this=not a.this)
    return exp.not_(a, copy=False)


def _s(text: str) -> exp.Literal:
    return exp.Literal.string(text)


def _try_cast(this: exp.Expr, to: exp.DataType) -> exp.Expr:
    """``TRY_CAST``: NULL on malformed text (Spark 4 runs ANSI mode, where CAST fails)."""
    return exp.TryCast(this=this, to=to, safe=True)


def _nonnull(e: exp.Expr) -> exp.Expr:
    """``COALESCE(e, FALSE)``: a comparison with a NULL side is false, never unknown."""
    if isinstance(e, exp.Boolean):
        return e
    return exp.Coalesce(this=e, expressions=[_false()])


REGEX_META = frozenset("\\.^$|?*+()[]{}#&-~ ")


def regex_literal(text: str) -> str:
    """A literal for Java and RE2 regexes: metacharacters backslash-escaped, controls and
    non-ASCII as ``\\x{HEX}``."""
    out = []
    for c in text:
        if c in REGEX_META:
            out.append("\\" + c if c != " " else c)
        elif c.isascii() and c.isprintable():
            out.append(c)
        else:
            out.append(f"\\x{{{ord(c):x}}}")
    return "".join(out)


def like_pattern(parts: Sequence[str | M.Wild]) -> str:
    """A LIKE pattern for a wildcard pattern, escape char ``!``."""
    out: list[str] = []
    for p in parts:
        if p is M.Wild.ANY:
            out.append("%")
        elif p is M.Wild.ONE:
            out.append("_")
        else:
            assert isinstance(p, str)
            out.append("".join(LIKE_ESCAPE + c if c in "%_" + LIKE_ESCAPE else c for c in p))
    return "".join(out)


class PredicateCompiler:
    """Compiles one rule's tree for one event table and field map; ``<node>_sql`` methods per
    node type (dispatch table ``NODES``), gaps recorded by :meth:`unsupported`."""

    DIALECT: ClassVar[str] = "spark"
    REGEX: ClassVar[RegexDialect] = JAVA
    NODES: ClassVar[dict[type, str]] = {
        M.Predicate: "predicate_sql",
        M.And: "and_sql",
        M.Or: "or_sql",
        M.Not: "not_sql",
        M.Const: "const_sql",
        M.Condition: "condition_sql",
        M.Opaque: "opaque_sql",
    }

    def __init__(self, table: Table, field_map: Mapping[str, str] | None = None) -> None:
        self.table = table
        self.field_map = dict(field_map or {})
        self.problems: list[str] = []
        self.uses_text = False

    # ------------------------------------------------------------------------- entry points

    def compile(self, node: M.Node | None) -> Compiled:
        self.problems = []
        self.uses_text = False
        e = _true() if node is None else self.node_sql(node)
        return Compiled(e, tuple(dict.fromkeys(self.problems)), self.uses_text)

    def sql(self, e: exp.Expr) -> str:
        return e.sql(dialect=self.DIALECT)

    def unsupported(self, reason: str) -> exp.Expr:
        self.problems.append(reason)
        return _false()

    # ------------------------------------------------------------------------- trees

    def node_sql(self, node: M.Node) -> exp.Expr:
        name = self.NODES.get(type(node))
        if name is None:
            return self.unsupported(f"unknown node {type(node).__name__}")
        method: Callable[[M.Node], exp.Expr] = getattr(self, name)
        return method(node)

    def and_sql(self, node: M.And) -> exp.Expr:
        return _and([self.node_sql(a) for a in node.args])

    def or_sql(self, node: M.Or) -> exp.Expr:
        return _or([self.node_sql(a) for a in node.args])

    def not_sql(self, node: M.Not) -> exp.Expr:
        return _not(self.node_sql(node.arg))

    def const_sql(self, node: M.Const) -> exp.Expr:
        return _true() if node.value else _false()

    def condition_sql(self, node: M.Condition) -> exp.Expr:
        return self.unsupported(f"SPL expression {node.text!r} is not compiled to SQL yet")

    def opaque_sql(self, node: M.Opaque) -> exp.Expr:
        return self.unsupported(f"cannot run {node.text!r}: {node.reason}")

    # ------------------------------------------------------------------------- columns

    def column(self, name: str) -> exp.Expr | None:
        """The scalar column of a field, None when the table has no such column."""
        return self.table.col(name) if name in self.table.columns else None

    def list_column(self, name: str) -> exp.Expr | None:
        if name not in self.table.lists:
            return None
        return self.table.col(name + LIST_SUFFIX)

    def present(self, name: str) -> exp.Expr:
        """The field is there and not null (scalar or list)."""
        parts: list[exp.Expr] = []
        for c in (self.column(name), self.list_column(name)):
            if c is not None:
                parts.append(exp.Not(this=exp.Is(this=c, expression=exp.Null())))
        return _or(parts)

    def any_value(self, name: str, test: Test) -> exp.Expr:
        """``test`` on the field's text, or on any item of its list: a non-null boolean."""
        out: list[exp.Expr] = []
        col = self.column(name)
        if col is not None:
            out.append(_nonnull(test(col)))
        lst = self.list_column(name)
        if lst is not None:
            var = exp.to_identifier(ITEM)
            out.append(_nonnull(self.list_any(lst, var, test(exp.column(ITEM)))))
        return _or(out)

    def list_any(self, lst: exp.Expr, var: exp.Identifier,
                 body: exp.Expr) -> exp.Expr:
        """Spark: ``EXISTS(list, x -> body)``."""
        return exp.Exists(this=lst, expression=exp.Lambda(this=body, expressions=[var]))

    def lower(self, e: exp.Expr, cased: bool) -> exp.Expr:
        return e if cased else exp.Lower(this=e)

    # ------------------------------------------------------------------------- predicates

    def predicate_sql(self, p: M.Predicate) -> exp.Expr:
        mapped = self.field_map.get(p.field) if p.field else None
        if mapped and mapped != p.field:
            on_mapped = self._predicate(p, self.field_map)
            own = {k: v for k, v in self.field_map.items() if k != p.field}
            on_own = self._predicate(p, own)
            has = self.present(mapped)
            e = _or([_and([has, on_mapped]), _and([_not(has), on_own])])
        else:
            e = self._predicate(p, self.field_map)
        return _not(e) if p.negated else e

    def _predicate(self, p: M.Predicate, fm: Mapping[str, str]) -> exp.Expr:
        try:
            groups = [expand(v, p.transforms) for v in p.values]
        except TransformError as exc:
            return self.unsupported(str(exc))
        values = [x for g in groups for x in g]
        if p.op is Op.KEYWORD or p.field is None:
            if p.op not in (Op.KEYWORD, Op.CONTAINS, Op.EQ, Op.WILDCARD):
                return self.unsupported(f"{p.op.value} without a field")
            return self.keyword_sql(values, p.cased, p.match_all)
        name = fm.get(p.field, p.field)
        if p.op is Op.EXISTS:
            want = not (p.values and p.values[0] is False)
            has = self.present(name)
            return has if want else _not(has)
        if p.op is Op.EQ and any(v is None for v in values):
            others = tuple(v for v in values if v is not None)
            rest = (self._predicate(M.Predicate(p.field, p.op, others, cased=p.cased), fm)
                    if others else _false())
            return _or([_not(self.present(name)), rest])
        if not values:
            return self.unsupported(f"predicate on {p.field} has no value")
        if any(isinstance(v, M.FieldRef) for v in values):
            if len(values) != 1 or not isinstance(values[0], M.FieldRef):
                return self.unsupported("fieldref mixed with other values")
            ref = values[0].name
            return self.fieldref_sql(name, p.op, fm.get(ref, ref), p.cased)
        if p.op is Op.REGEX or (p.op in TEXT_OPS and any(isinstance(v, M.Regex) for v in values)):
            return self.regex_sql(name, values, p.match_all)
        if p.op in NUMBER_OPS:
            return self.number_sql(name, p.op, values, p.match_all)
        if p.op is Op.CIDR:
            return self.cidr_sql(name, values)
        if p.op in TEXT_OPS:
            return self.text_sql(name, p, groups)
        return self.unsupported(f"operator {p.op.value} is not supported")

    # ------------------------------------------------------------------------- text

    def value_test(self, op: Op, v: M.Value, s: exp.Expr, cased: bool) -> exp.Expr:
        """One rule value against the (lowered unless cased) text ``s``."""
        if isinstance(v, (int, float)):  # bools too: their text is true/false
            return exp.EQ(this=s, expression=_s(to_text(v)))
        if not isinstance(v, (str, M.Pattern)):
            return self.unsupported(f"value {v!r} cannot be used with {op.value}")
        opname = op.value if op in (Op.CONTAINS, Op.STARTSWITH, Op.ENDSWITH) else "eq"
        parts = _collapse(anchored(opname, v).parts)
        low = tuple(x if isinstance(x, M.Wild) or cased else x.lower() for x in parts)
        if not low:
            return exp.EQ(this=s, expression=_s(""))
        if all(isinstance(x, str) for x in low):
            return exp.EQ(this=s, expression=_s("".join(low)))  # type: ignore[arg-type]
        if low == (M.Wild.ANY,):
            return exp.Not(this=exp.Is(this=s, expression=exp.Null()))
        if len(low) == 3 and low[0] is M.Wild.ANY and low[2] is M.Wild.ANY and isinstance(
                low[1], str):
            return exp.Contains(this=s, expression=_s(low[1]))
        if len(low) == 2 and isinstance(low[0], str) and low[1] is M.Wild.ANY:
            return exp.StartsWith(this=s, expression=_s(low[0]))
        if len(low) == 2 and low[0] is M.Wild.ANY and isinstance(low[1], str):
            return exp.EndsWith(this=s, expression=_s(low[1]))
        return exp.Escape(this=exp.Like(this=s, expression=_s(like_pattern(low))),
                          expression=_s(LIKE_ESCAPE))

    def any_of(self, op: Op, values: Sequence[M.Value], s: exp.Expr,
               cased: bool) -> exp.Expr:
        """Any of the values: exact texts grouped into one ``IN``; more than ``MANY`` substrings
        (or prefixes, or suffixes) into one regex alternation of escaped literals (hash and
        path lists: one scan of the lowered text instead of hundreds of calls)."""
        exact: list[str] = []
        shaped: dict[type, list[str]] = {exp.Contains: [], exp.StartsWith: [],
                                         exp.EndsWith: []}
        rest: list[exp.Expr] = []
        for v in values:
            t = self.value_test(op, v, s, cased)
            lit = t.expression if isinstance(t, exp.Binary | exp.Func) else None
            if isinstance(t, exp.EQ) and isinstance(lit, exp.Literal):
                exact.append(lit.this)
            elif type(t) in shaped and isinstance(lit, exp.Literal):
                shaped[type(t)].append(lit.this)
                rest.append(t)
            else:
                rest.append(t)
        for kind, lits in shaped.items():
            if len(lits) > MANY:
                rest = [t for t in rest if type(t) is not kind]
                alt = "|".join(regex_literal(x) for x in dict.fromkeys(lits))
                rx = (f"\\A(?:{alt})" if kind is exp.StartsWith
                      else f"(?:{alt})\\z" if kind is exp.EndsWith else f"(?:{alt})")
                rest.append(exp.RegexpLike(this=s, expression=_s(rx)))
        if len(exact) == 1:
            rest.insert(0, exp.EQ(this=s, expression=_s(exact[0])))
        elif exact:
            uniq = list(dict.fromkeys(exact))
            rest.insert(0, exp.In(this=s, expressions=[_s(x) for x in uniq]))
        return _or(rest)

    def text_sql(self, name: str, p: M.Predicate, groups: list[list[M.Value]]) -> exp.Expr:
        base = Op.EQ if p.op is Op.NE else p.op
        cased = p.cased

        def test(col: exp.Expr) -> exp.Expr:
            s = self.lower(col, cased)
            if p.match_all:
                return _and([self.any_of(base, g, s, cased) for g in groups])
            return self.any_of(base, [v for g in groups for v in g], s, cased)

        m = self.any_value(name, test)
        if p.op is Op.NE:  # SPL field!=x: the field must be there
            return _and([self.present(name), _not(m)])
        return m

    def fieldref_sql(self, name: str, op: Op, ref: str, cased: bool) -> exp.Expr:
        if name in self.table.lists or ref in self.table.lists:
            return self.unsupported(f"fieldref on a multi-valued field ({name}, {ref})")
        a, b = self.column(name), self.column(ref)
        if a is None or b is None:
            return _false()
        x, y = self.lower(a, cased), self.lower(b, cased)
        tests: dict[Op, Callable[[], exp.Expr]] = {
            Op.EQ: lambda: exp.EQ(this=x, expression=y),
            Op.NE: lambda: exp.NEQ(this=x, expression=y),
            Op.CONTAINS: lambda: exp.Contains(this=x, expression=y),
            Op.STARTSWITH: lambda: exp.StartsWith(this=x, expression=y),
            Op.ENDSWITH: lambda: exp.EndsWith(this=x, expression=y),
        }
        t = tests.get(op)
        if t is None:
            return self.unsupported(f"fieldref with {op.value} is not supported")
        return _nonnull(t())

    def keyword_sql(self, values: Sequence[M.Value], cased: bool,
                    match_all: bool) -> exp.Expr:
        """Keywords: plain ones are substrings of the values joined by newlines; ones with
        wildcards or a newline are tested against each value."""
        fields = self.table.fields
        tests: list[exp.Expr] = []
        jt: exp.Expr | None = None
        if self.table.fields:  # the joined text is computed once per row (``_text``)
            jt = self.lower(exp.column(TEXT_COLUMN, quoted=True), cased)
        for v in values:
            if isinstance(v, M.Pattern) and v.has_wildcards:
                pat = v
            elif isinstance(v, (str, M.Pattern, int, float)):
                lit = v.literal() if isinstance(v, M.Pattern) else to_text(v)
                lit = lit or ""
                if "\n" not in lit:
                    needle = lit if cased else lit.lower()
                    self.uses_text = self.uses_text or jt is not None
                    tests.append(_nonnull(exp.Contains(this=jt, expression=_s(needle)))
                                 if jt is not None else _false())
                    continue
                pat = anchored("contains", lit)
            else:
                tests.append(self.unsupported(f"keyword value {v!r}"))
                continue
            tests.append(_or([self.any_value(f, self._whole_value(pat, cased)) for f in fields]))
        return _and(tests) if match_all else _or(tests)

    def _whole_value(self, pat: M.Pattern, cased: bool) -> Test:
        def test(c: exp.Expr) -> exp.Expr:
            return self.value_test(Op.EQ, pat, self.lower(c, cased), cased)

        return test

    def text_expression(self) -> exp.Expr | None:
        """The event's values joined by newlines (NULLs skipped, list items each a value): the
        ``_text`` column keyword tests read; None when the table has no field."""
        args: list[exp.Expr] = []
        for f in self.table.fields:
            c = self.column(f)
            if c is not None:
                args.append(c)
            lst = self.list_column(f)
            if lst is not None:
                args.append(self.list_join(lst))
        if not args:
            return None
        # an anonymous call: sqlglot's ConcatWs is rewritten NULL-propagating for DuckDB, and
        # both engines' CONCAT_WS skip NULLs, which is what the join needs
        return exp.Anonymous(this="CONCAT_WS", expressions=[_s("\n"), *args])

    def list_join(self, lst: exp.Expr) -> exp.Expr:
        """Spark's ``concat_ws`` takes arrays as they are."""
        return lst

    # ------------------------------------------------------------------------- regex

    def regex_sql(self, name: str, values: Sequence[M.Value], match_all: bool) -> exp.Expr:
        pats: list[str] = []
        for v in values:
            if isinstance(v, M.Regex):
                pat, flags = v.pattern, v.flags
            elif isinstance(v, str):
                pat, flags = v, frozenset()
            else:
                return self.unsupported(f"regex value {v!r}")
            try:
                pats.append(self.REGEX.translate(pat, frozenset(flags)))
            except RegexUnsupported as exc:
                return self.unsupported(exc.message)

        def test(s: exp.Expr) -> exp.Expr:
            parts = [exp.RegexpLike(this=s, expression=_s(x)) for x in pats]
            return _and(parts) if match_all else _or(parts)

        return self.any_value(name, test)

    # ------------------------------------------------------------------------- numbers

    def number(self, s: exp.Expr) -> exp.Expr:
        """The text as Python's ``as_number`` reads it (a DOUBLE, NULL when not a number)."""
        t = self.strip(s)
        digits = "[0-9](_?[0-9])*"
        dec = rf"\A[+-]?({digits}(\.({digits})?)?|\.{digits})([eE][+-]?{digits})?\z"
        special = r"(?i)\A[+-]?(inf|infinity)\z"  # nan: every comparison is false -> NULL
        hexa = r"\A0[xX]_?[0-9a-fA-F](_?[0-9a-fA-F])*\z"
        no_us = exp.func("REPLACE", t, _s("_"), _s(""))
        return exp.Case(ifs=[
            exp.If(this=exp.RegexpLike(this=t, expression=_s(dec)),
                   true=_try_cast(this=no_us, to=exp.DataType.build("DOUBLE"))),
            exp.If(this=exp.RegexpLike(this=t, expression=_s(hexa)),
                   true=self.hex_number(exp.Substring(this=no_us, start=exp.Literal.number(3)))),
            exp.If(this=exp.RegexpLike(this=t, expression=_s(special)),
                   true=_try_cast(this=t, to=exp.DataType.build("DOUBLE"))),
        ])

    def hex_number(self, digits: exp.Expr) -> exp.Expr:
        """Spark: ``CAST(CONV(digits, 16, 10) AS DOUBLE)``."""
        return _try_cast(this=exp.func("CONV", digits, exp.Literal.number(16),
                                         exp.Literal.number(10)),
                           to=exp.DataType.build("DOUBLE"))

    def number_sql(self, name: str, op: Op, values: Sequence[M.Value],
                   match_all: bool) -> exp.Expr:
        nums = []
        for v in values:
            n = as_number(v)
            if n is None:
                return self.unsupported(f"{op.value} needs a number, got {v!r}")
            nums.append(n)
        cmp = NUMBER_OPS[op]

        def test(s: exp.Expr) -> exp.Expr:
            x = self.number(s)
            parts = [cmp(this=x, expression=self.double(n)) if n == n else _false()
                     for n in nums]  # nan: Python's comparisons with it are all false
            return _and(parts) if match_all else _or(parts)

        return self.any_value(name, test)

    def double(self, n: float) -> exp.Expr:
        if n in (float("inf"), float("-inf")):
            return exp.Cast(this=_s(repr(n)), to=exp.DataType.build("DOUBLE"))
        return exp.Cast(this=exp.Literal.number(repr(n)), to=exp.DataType.build("DOUBLE"))

    # ------------------------------------------------------------------------- cidr

    def cidr_sql(self, name: str, values: Sequence[M.Value]) -> exp.Expr:
        ranges: list[tuple[int, int]] = []
        for v in values:
            try:
                net = ipaddress.ip_network(str(v), strict=False)
            except ValueError as exc:
                return self.unsupported(f"bad cidr value: {exc}")
            if net.version != 4:
                return self.unsupported(f"IPv6 network {v} (cidr): no exact SQL form of "
                                        "Python's IPv6 address parse")
            ranges.append((int(net.network_address), int(net.broadcast_address)))

        def test(s: exp.Expr) -> exp.Expr:
            t = self.strip(s)
            octet = "(0|[1-9][0-9]{0,2})"
            rx = rf"\A{octet}\.{octet}\.{octet}\.{octet}\z"
            parts = [_try_cast(this=exp.RegexpExtract(this=t, expression=_s(rx),
                                                        group=exp.Literal.number(i + 1)),
                                 to=exp.DataType.build("BIGINT")) for i in range(4)]
            value = exp.Add(
                this=exp.Add(this=exp.Mul(this=parts[0], expression=exp.Literal.number(16777216)),
                             expression=exp.Mul(this=parts[1],
                                                expression=exp.Literal.number(65536))),
                expression=exp.Add(this=exp.Mul(this=parts[2],
                                                expression=exp.Literal.number(256)),
                                   expression=parts[3]))
            ok = _and([exp.RegexpLike(this=t, expression=_s(rx)),
                       *[exp.LTE(this=p, expression=exp.Literal.number(255)) for p in parts]])
            within = _or([exp.Between(this=value, low=exp.Literal.number(lo),
                                      high=exp.Literal.number(hi)) for lo, hi in ranges])
            return _and([ok, within])

        return self.any_value(name, test)

    def strip(self, s: exp.Expr) -> exp.Expr:
        """Python's ``str.strip()``: Unicode whitespace off both ends."""
        return exp.RegexpReplace(this=s, expression=_s(rf"\A{SPACE_CLASS}+|{SPACE_CLASS}+\z"),
                                 replacement=_s(""))


class SparkCompiler(PredicateCompiler):
    """Spark SQL (Java regexes, ``EXISTS(array, lambda)``)."""


class DuckDBCompiler(PredicateCompiler):
    """DuckDB (RE2 regexes, ``list_bool_or(list_transform(...))``)."""

    DIALECT = "duckdb"
    REGEX = RE2

    def list_any(self, lst: exp.Expr, var: exp.Identifier,
                 body: exp.Expr) -> exp.Expr:
        lam = exp.Lambda(this=body, expressions=[var])
        return exp.func("LIST_BOOL_OR", exp.func("LIST_TRANSFORM", lst, lam))

    def list_join(self, lst: exp.Expr) -> exp.Expr:
        return exp.func("ARRAY_TO_STRING", lst, _s("\n"))

    def hex_number(self, digits: exp.Expr) -> exp.Expr:
        return _try_cast(this=_try_cast(this=exp.Concat(expressions=[_s("0x"), digits]),
                                            to=exp.DataType.build("UBIGINT", dialect="duckdb")),
                           to=exp.DataType.build("DOUBLE"))

    def strip(self, s: exp.Expr) -> exp.Expr:
        return exp.RegexpReplace(this=s, expression=_s(rf"\A{SPACE_CLASS}+|{SPACE_CLASS}+\z"),
                                 replacement=_s(""), modifiers=_s("g"))


COMPILERS: dict[str, type[PredicateCompiler]] = {"spark": SparkCompiler,
                                                 "duckdb": DuckDBCompiler}
