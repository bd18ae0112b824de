"""The one model every layer of Rule Atlas shares.

Sources read repositories into :class:`Rule` records; languages turn a rule's query into an
:class:`Analysis` (stages holding trees of :class:`Predicate`); ``indicators`` turns predicates
into :class:`Indicator` rows; the store keeps all of it; the engine runs the trees on events.
Each layer talks to the next only through these types, so a new query language (EQL, KQL,
ES|QL) plugs in by producing the same trees.

Design rules (see ``../shared/STYLE.md``):

* dataclasses are frozen and slotted, collections are tuples, spans never take part in
  equality, so two rules that check the same thing compare equal whatever their layout;
* wildcards are :class:`Pattern` parts, never raw ``*`` strings, so that escaping is resolved once
  by the language that knows its own escape rules;
* nothing is dropped: what a language cannot express as a predicate becomes a
  :class:`Condition` (a generic expression the engine may still evaluate) or an :class:`Opaque`
  node (kept text plus the reason), and the engine refuses to run a tree holding an ``Opaque``.

Every type round-trips through plain JSON (:func:`node_to_dict` / :func:`node_from_dict`), which
is how trees travel into the store and back out to the engine and the web layer.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field
from enum import Enum, StrEnum
from typing import Any, TypeAlias

# --------------------------------------------------------------------------------------------
# Locations and errors
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Span:
    """Where something was written: 1-based line and column, optionally an end and a file.

    ``start``/``end`` are 0-based character offsets into the text the span refers to (a query,
    or a file), when the producer knows them.
    """

    line: int
    col: int
    start: int | None = None
    end: int | None = None
    path: str | None = None

    def __str__(self) -> str:
        where = f"{self.line}:{self.col}"
        return f"{self.path}:{where}" if self.path else where

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__ if getattr(self, k) is not None}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Span:
        return cls(**d)


class AtlasError(ValueError):
    """Base error: the message ends with the location, ``path:line:col``, when one is known."""

    def __init__(self, message: str, location: Span | None = None) -> None:
        self.message = message
        self.location = location
        super().__init__(f"{message} ({location})" if location else message)


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------


class Wild(Enum):
    """A wildcard inside a :class:`Pattern`: ``ANY`` is ``*``, ``ONE`` is ``?``."""

    ANY = "*"
    ONE = "?"


@dataclass(frozen=True, slots=True)
class Pattern:
    """A wildcard pattern: literal text parts and :class:`Wild` parts, escapes already resolved.

    ``Pattern(("", Wild.ANY, "invoke-wmiexec", Wild.ANY))`` is SPL's ``"*invoke-wmiexec*"``.
    Literal parts never contain escape characters: a literal ``*`` is just ``"*"`` inside a str
    part.
    """

    parts: tuple[str | Wild, ...]

    def __post_init__(self) -> None:
        # Normalise: merge adjacent strings, drop empty strings, so equal patterns compare equal.
        merged: list[str | Wild] = []
        for p in self.parts:
            if isinstance(p, str):
                if not p:
                    continue
                if merged and isinstance(merged[-1], str):
                    merged[-1] = merged[-1] + p
                    continue
            merged.append(p)
        object.__setattr__(self, "parts", tuple(merged))

    @classmethod
    def from_wildcards(cls, text: str, many: str = "*", one: str = "?",
                       escape: str | None = None) -> Pattern:
        """``text`` in a wildcard syntax: ``many`` stands for any run, ``one`` for one
        character; after ``escape`` a character is literal (a trailing escape stays as
        written)."""
        parts: list[str | Wild] = []
        i, n = 0, len(text)
        while i < n:
            ch = text[i]
            if ch == escape and i + 1 < n:
                parts.append(text[i + 1])
                i += 2
                continue
            parts.append(Wild.ANY if ch == many else Wild.ONE if ch == one else ch)
            i += 1
        return cls(tuple(parts))

    @property
    def has_wildcards(self) -> bool:
        return any(isinstance(p, Wild) for p in self.parts)

    def literal(self) -> str | None:
        """The plain text if the pattern has no wildcard, else None."""
        if self.has_wildcards:
            return None
        return "".join(p for p in self.parts if isinstance(p, str))

    def display(self, escape: str = "\\") -> str:
        """Text form with ``*``/``?`` for wildcards and literal ``* ? \\`` escaped."""
        out: list[str] = []
        for p in self.parts:
            if isinstance(p, Wild):
                out.append(p.value)
            else:
                for ch in p:
                    out.append(escape + ch if ch in "*?" or ch == escape else ch)
        return "".join(out)

    def __str__(self) -> str:
        return self.display()


@dataclass(frozen=True, slots=True)
class Regex:
    """A regular expression (Python ``re`` syntax) with flags from ``{"i", "m", "s"}``."""

    pattern: str
    flags: frozenset[str] = frozenset()

    def __str__(self) -> str:
        return f"/{self.pattern}/{''.join(sorted(self.flags))}"


@dataclass(frozen=True, slots=True)
class FieldRef:
    """A reference to another field of the same event (Sigma ``fieldref``, SPL ``where a=b``)."""

    name: str

    def __str__(self) -> str:
        return self.name


Scalar: TypeAlias = str | int | float | bool | None
Value: TypeAlias = str | int | float | bool | Pattern | Regex | FieldRef | None


def value_text(v: Value) -> str:
    """A human display form of one value (used in indicator rows and stage listings)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


# --------------------------------------------------------------------------------------------
# Expressions (for what is not a simple field/op/value predicate)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Call:
    """A function or operator application: ``Call("len", (FieldRef("x"),))``,
    ``Call(">", (Call("len", ...), 10))``, ``Call(".", (a, b))`` for SPL concatenation.

    Operators use their symbol as name (``+ - * / % . == != < <= > >= AND OR NOT``).
    """

    name: str
    args: tuple[Term, ...] = ()


Term: TypeAlias = Call | FieldRef | str | int | float | bool | None


def term_fields(t: Term) -> tuple[str, ...]:
    """The fields a term reads, each once, in the order they are first read."""
    out: list[str] = []

    def rec(x: Term) -> None:
        if isinstance(x, FieldRef):
            if x.name not in out:
                out.append(x.name)
        elif isinstance(x, Call):
            for a in x.args:
                rec(a)

    rec(t)
    return tuple(out)


# --------------------------------------------------------------------------------------------
# Predicate trees
# --------------------------------------------------------------------------------------------


class Op(StrEnum):
    """What a predicate checks. Values are as written, with wildcards as :class:`Pattern`.

    ``eq``/``ne`` compare whole values; ``in`` is "equal to any value" (values may be patterns);
    ``contains``/``startswith``/``endswith`` match a substring; ``wildcard`` matches a
    :class:`Pattern` against the whole value; ``regex`` searches a :class:`Regex`; ``gt ge lt le``
    compare numbers; ``exists`` is true when the field is present and not null; ``cidr`` tests an
    IP against a network; ``keyword`` (field ``None``) matches text in any field.
    """

    EQ = "eq"
    NE = "ne"
    IN = "in"
    CONTAINS = "contains"
    STARTSWITH = "startswith"
    ENDSWITH = "endswith"
    WILDCARD = "wildcard"
    REGEX = "regex"
    GT = "gt"
    GE = "ge"
    LT = "lt"
    LE = "le"
    EXISTS = "exists"
    CIDR = "cidr"
    KEYWORD = "keyword"


class Phase(StrEnum):
    """Whether a predicate filters raw events or the result rows after an aggregation."""

    EVENT = "event"
    RESULT = "result"


@dataclass(frozen=True, slots=True)
class Predicate:
    """One check: ``field op values``, optionally negated.

    * ``values`` holds the values as written (after the language's escapes are resolved); a
      predicate with several values matches when any matches, unless ``match_all`` (Sigma
      ``|all``).
    * ``transforms`` are value transformations applied before matching, in order, by name:
      ``base64``, ``base64offset``, ``wide`` (= ``utf16le``), ``utf16``, ``utf16be``,
      ``windash``. Keeping them by name (not pre-expanded) keeps the indicator as written.
    * ``cased`` is True when the comparison is case-sensitive (Sigma ``cased``; SPL ``where``
      and ``CASE()``; for ``regex`` the :class:`Regex` flags decide).
    * ``datamodel`` is the datamodel object of a datamodel field (``Endpoint.Processes`` for
      ``Processes.process_name``).
    """

    field: str | None
    op: Op
    values: tuple[Value, ...] = ()
    negated: bool = False
    match_all: bool = False
    transforms: tuple[str, ...] = ()
    cased: bool = False
    datamodel: str | None = None
    phase: Phase = dc_field(default=Phase.EVENT, compare=False)
    stage: int | None = dc_field(default=None, compare=False)
    text: str | None = dc_field(default=None, compare=False)
    span: Span | None = dc_field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class And:
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    arg: Node


@dataclass(frozen=True, slots=True)
class Const:
    """A constant truth value (``search *``, an empty filter macro, Sigma ``all of them`` over
    nothing)."""

    value: bool


@dataclass(frozen=True, slots=True)
class Condition:
    """A boolean expression the model cannot reduce to predicates (``where len(x) > 10``).

    ``expr`` is a :class:`Term` tree the engine may evaluate; ``fields`` lists the fields it
    reads (for routing and event coverage).
    """

    expr: Term
    text: str
    fields: tuple[str, ...] = ()
    phase: Phase = dc_field(default=Phase.EVENT, compare=False)
    stage: int | None = dc_field(default=None, compare=False)
    span: Span | None = dc_field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Opaque:
    """Syntax kept as text because it cannot be represented; ``reason`` says why.

    Loud gap: the engine treats a tree holding an ``Opaque`` as not runnable.
    """

    text: str
    reason: str
    stage: int | None = dc_field(default=None, compare=False)
    span: Span | None = dc_field(default=None, compare=False)


Node: TypeAlias = Predicate | And | Or | Not | Const | Condition | Opaque


def walk(node: Node | None) -> Iterator[Node]:
    """Every node of a tree, depth first, parents before children."""
    if node is None:
        return
    stack: list[Node] = [node]
    while stack:
        n = stack.pop()
        yield n
        if isinstance(n, (And, Or)):
            stack.extend(reversed(n.args))
        elif isinstance(n, Not):
            stack.append(n.arg)


def predicates(node: Node | None) -> Iterator[tuple[Predicate, bool]]:
    """Each predicate of a tree with its effective polarity (False under an odd number of Not)."""

    def rec(n: Node, positive: bool) -> Iterator[tuple[Predicate, bool]]:
        if isinstance(n, Predicate):
            yield n, positive
        elif isinstance(n, (And, Or)):
            for a in n.args:
                yield from rec(a, positive)
        elif isinstance(n, Not):
            yield from rec(n.arg, not positive)

    if node is not None:
        yield from rec(node, True)


def conjoin(nodes: list[Node | None] | tuple[Node | None, ...]) -> Node | None:
    """AND of the given nodes, flattening nested Ands and skipping None/``Const(True)``."""
    out: list[Node] = []
    for n in nodes:
        if n is None or n == Const(True):
            continue
        if isinstance(n, And):
            out.extend(n.args)
        else:
            out.append(n)
    if not out:
        return None
    return out[0] if len(out) == 1 else And(tuple(out))


def connective(cls: type[And] | type[Or], nodes: Iterable[Node]) -> And | Or:
    """``cls`` (And or Or) of ``nodes`` in order, a node that is itself a ``cls`` giving its
    arguments (``a and (b and c)`` is ``And(a, b, c)``): how the lowerings keep trees flat."""
    out: list[Node] = []
    for n in nodes:
        if isinstance(n, cls):
            out.extend(n.args)
        else:
            out.append(n)
    return cls(tuple(out))


# --------------------------------------------------------------------------------------------
# Analysis of a query: stages, group-by, problems
# --------------------------------------------------------------------------------------------


class StageKind(StrEnum):
    """What a stage does to the event stream."""

    FILTER = "filter"  # search, where, regex, Sigma selections and condition
    AGGREGATE = "aggregate"  # stats, tstats, eventstats, Sigma correlation
    GENERATE = "generate"  # inputlookup, from, rest, tstats (also aggregates)
    TRANSFORM = "transform"  # eval, rename, table, fillnull, rex, lookup, ...
    MACRO = "macro"  # a macro stage that expands to nothing (``*_filter``) or to other stages
    OPAQUE = "opaque"  # unknown command or unparsable text, kept as written


@dataclass(frozen=True, slots=True)
class Problem:
    """Something a language or source could not do, with where and why.

    ``severity``: ``error`` (could not build that part), ``unsupported`` (a construct kept as
    opaque), ``warning`` (built, but worth a look, e.g. an unknown macro).
    """

    message: str
    severity: str = "error"
    location: Span | None = None
    code: str | None = None

    def __str__(self) -> str:
        return f"{self.message} ({self.location})" if self.location else self.message


@dataclass(frozen=True, slots=True)
class Stage:
    """One stage of a query as a user reads it: a pipeline command, or a Sigma selection.

    ``text`` is the stage as written; ``expanded`` the text after macro expansion (None when
    the same); ``condition`` the filter tree it contributes (None for non-filtering stages);
    ``by`` the group-by fields of an aggregation; ``name`` a Sigma selection identifier;
    ``carried`` (result-phase stages) the fields whose values the rows reaching this stage carry
    unchanged from events (the last aggregation's group-by fields and its ``values()``,
    ``latest()``, ``min()``... outputs, through renames, minus what a command rewrote): a
    result-phase predicate on one of them still tests event content (docs/indicators.md).
    """

    index: int
    command: str
    text: str
    kind: StageKind = StageKind.FILTER
    expanded: str | None = None
    condition: Node | None = None
    phase: Phase = Phase.EVENT
    by: tuple[str, ...] = ()
    name: str | None = None
    notes: tuple[str, ...] = ()
    carried: tuple[str, ...] = ()
    span: Span | None = dc_field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class SequenceStep:
    """One member of an event sequence (EQL ``[process where ...] by f with runs=3``).

    ``condition`` is what one event must satisfy to be this member; ``by`` the member's own join
    keys (the keys shared by every member are :attr:`Sequence.by`); ``runs`` how many
    consecutive events the member stands for; ``missing`` marks an event that must NOT occur
    (``![...]``); ``category`` the event category written before ``where`` (None for ``any``).
    """

    condition: Node | None
    by: tuple[str, ...] = ()
    runs: int | None = None
    missing: bool = False
    category: str | None = None
    text: str = dc_field(default="", compare=False)
    span: Span | None = dc_field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Sequence:
    """An ordered (``kind="sequence"``) or unordered (``kind="sample"``) set of events that share
    the join keys ``by``, within ``maxspan`` seconds of the first (``maxspan_text`` as written,
    ``5m``); ``until`` is the member whose event ends a pending sequence."""

    kind: str
    steps: tuple[SequenceStep, ...]
    by: tuple[str, ...] = ()
    maxspan: float | None = None
    maxspan_text: str | None = None
    until: SequenceStep | None = None


# --------------------------------------------------------------------------------------------
# Pipeline steps: a query's commands in order, as the engine's plan reads them
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Filter:
    """Keep the events (or rows) ``node`` is true of (``search``/``where``/``regex``)."""

    stage: int
    node: Node | None


@dataclass(frozen=True, slots=True)
class Eval:
    """Assignments evaluated left to right, each seeing the ones before; a null result removes
    the field (SPL ``eval``)."""

    stage: int
    assigns: tuple[tuple[str, Term], ...]


@dataclass(frozen=True, slots=True)
class Rex:
    """A regular expression's named groups extracted from ``field`` (``mode="sed"``: ``pattern``
    is a ``s/x/y/g`` rewrite of the field); ``max_match`` as written when it is not a number."""

    stage: int
    field: str = "_raw"
    pattern: str | None = None
    max_match: int | str = 1
    mode: str | None = None


@dataclass(frozen=True, slots=True)
class Rename:
    """``(source, target)`` pairs; ``*`` in both renames every matching field."""

    stage: int
    pairs: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Spath:
    """The JSON or XML document in ``input`` flattened into fields (with ``path``: that field
    alone, written to ``output``, default the path)."""

    stage: int
    input: str = "_raw"
    output: str | None = None
    path: str | None = None


@dataclass(frozen=True, slots=True)
class AddTotals:
    """``fieldname`` = the sum of the numeric ``fields`` (none: every numeric field)."""

    stage: int
    fieldname: str = "Total"
    fields: tuple[str, ...] = ()
    row: bool = True


@dataclass(frozen=True, slots=True)
class Join:
    """Each row merged with the first row of ``subsearch`` with the same ``fields`` values
    (``kind`` inner drops a row without one; ``max`` as written, Splunk's default 1);
    ``subsearch`` None for a join written without one subsearch."""

    stage: int
    fields: tuple[str, ...]
    kind: str = "inner"
    max: str = "1"
    overwrite: bool = True
    subsearch: Analysis | None = None


@dataclass(frozen=True, slots=True)
class AggFunc:
    """One aggregation function as written: ``name`` (``dc``, ``values``, ...), ``field`` its
    argument (None without parentheses, ``*`` for ``count(*)``), ``alias`` its ``as`` name."""

    name: str
    field: str | None = None
    alias: str | None = None


@dataclass(frozen=True, slots=True)
class Aggregate:
    """An aggregating command (``stats``, ``eventstats``, ``tstats``, ``streamstats``, ``top``,
    ...; ``command`` names it) computing ``functions`` grouped ``by`` fields; ``span`` the
    ``by ... span=1h`` bucket as written; for ``tstats`` the ``datamodel``, ``nodename`` and
    ``options`` (``summariesonly``, ``fillnull_value``, ...); ``problem`` a function form the
    lowering could not read (the engine refuses the rule with it)."""

    stage: int
    command: str
    by: tuple[str, ...] = ()
    functions: tuple[AggFunc, ...] = ()
    span: str | None = None
    datamodel: str | None = None
    nodename: str | None = None
    options: tuple[tuple[str, str], ...] = ()
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class Bin:
    """``bin``/``bucket``: the values of ``fields`` (as written, one for the forms the engine
    runs) rounded down to ``span`` (as written, ``5m``); ``options`` the others (``bins=``)."""

    stage: int
    fields: tuple[str, ...]
    span: str | None = None
    options: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class OtherCommand:
    """Any other command, kept for the fields it writes (``outputs``), which the engine does
    not compute (``lookup``, ``iplocation``, ...)."""

    stage: int
    command: str
    outputs: tuple[str, ...] = ()


Step = Filter | Eval | Rex | Rename | Spath | AddTotals | Join | Aggregate | Bin | OtherCommand


@dataclass(frozen=True, slots=True)
class Analysis:
    """What a language makes of one rule's query.

    ``condition`` is the whole event-level filter (what must be true of one raw event for it to
    reach the first aggregation, or to be a finding when there is none); ``result_condition``
    the filter applied to aggregated rows; ``group_by`` the final grouping fields (after
    renames); ``problems`` everything that could not be represented. ``extra`` carries
    language-specific JSON-able details (correlation type, datamodel, macros used, ...).
    ``sequence`` is set for an event sequence (EQL ``sequence``/``sample``); ``condition`` is
    then what one event must satisfy to take part in it. ``steps`` are the query's pipeline
    commands in order (SPL: every command; the ones before the first :class:`Aggregate` run on
    events, the ones after the last on its rows), for the engine's plan (``engine/plan.py``).
    """

    language: str
    stages: tuple[Stage, ...] = ()
    condition: Node | None = None
    result_condition: Node | None = None
    group_by: tuple[str, ...] = ()
    problems: tuple[Problem, ...] = ()
    extra: Mapping[str, Any] = dc_field(default_factory=dict)
    sequence: Sequence | None = None
    steps: tuple[Step, ...] = ()

    def all_predicates(self) -> Iterator[tuple[Predicate, bool]]:
        """Predicates of every stage (including result-phase ones), with polarity."""
        for st in self.stages:
            yield from predicates(st.condition)


@dataclass(frozen=True, slots=True)
class SubSearch:
    """A search nested in a rule's query whose rows feed it (SPL ``join [ ... ]``): the stage
    of the command holding it (0-based), the command, and the nested search's own analysis."""

    stage: int
    command: str
    analysis: Analysis


def sub_analyses(a: Analysis) -> tuple[SubSearch, ...]:
    """The nested searches of an analysis, in query order (the one place that knows where an
    analysis keeps them: the :class:`Join` steps' subsearches)."""
    return tuple(SubSearch(x.stage, "join", x.subsearch) for x in a.steps
                 if isinstance(x, Join) and x.subsearch is not None)


# --------------------------------------------------------------------------------------------
# Indicators and event coverage
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IndicatorValue:
    """One value of an indicator row: as written, and the normalised key used for counting."""

    value: str
    key: str


@dataclass(frozen=True, slots=True)
class Indicator:
    """One row of a rule's indicator table: a field and operator, and the values it matches.

    ``field_key`` is the canonical field name (through the alias table) used for counting;
    ``negated`` is True for values a rule excludes (filters); ``phase`` is ``result`` for a
    test on event content made after an aggregation (``| regex process_name="..."`` on a
    group-by field).
    """

    field: str
    op: str
    values: tuple[IndicatorValue, ...]
    field_key: str
    negated: bool = False
    phase: Phase = Phase.EVENT


def indicator_to_dict(i: Indicator) -> dict[str, Any]:
    return {"field": i.field, "op": i.op, "negated": i.negated, "field_key": i.field_key,
            "phase": i.phase.value,
            "values": [{"value": v.value, "key": v.key} for v in i.values]}


def indicator_from_dict(d: Mapping[str, Any]) -> Indicator:
    return Indicator(field=d["field"], op=d["op"], field_key=d["field_key"],
                     negated=bool(d.get("negated", False)),
                     phase=Phase(d.get("phase", "event")),
                     values=tuple(IndicatorValue(v["value"], v["key"]) for v in d["values"]))


@dataclass(frozen=True, slots=True)
class EventRef:
    """A concrete event kind a rule covers: ``EventRef("Microsoft-Windows-PowerShell/Operational",
    "4104")``, ``EventRef("Sysmon", "1")``, ``EventRef("aws:cloudtrail")``."""

    channel: str
    event_id: str | None = None

    def __str__(self) -> str:
        return f"{self.channel} {self.event_id}" if self.event_id else self.channel


@dataclass(frozen=True, slots=True)
class RuleRef:
    """A rule as a report or an error names it (the two rules of a twin pair, the rules an
    ambiguous reference names): its id, source, title and, where known, its path."""

    id: str
    source: str
    title: str
    path: str = ""

    def __str__(self) -> str:
        return f"{self.id}  {self.title}  ({self.source}: {self.path})"


# --------------------------------------------------------------------------------------------
# Rules as the sources read them
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TestRef:
    """Test data a rule names: Sigma regression ``info.yml`` / evtx, Splunk attack_data."""

    name: str
    kind: str  # "sigma-regression" | "attack_data"
    path: str  # repo-relative path (Sigma) or URL (Splunk)
    source: str | None = None
    sourcetype: str | None = None
    match_count: int | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    """One detection rule, whatever its source, with its raw text kept as written.

    ``path`` is relative to the repository root (POSIX separators); ``source_url`` the upstream
    GitHub URL of that file; ``body`` the rule's own text (one document of a multi-document
    file); ``query`` the query text in ``language`` (``spl``; for Sigma the ``detection:`` YAML).
    ``extra`` keeps every vendor key the model has no column for, so nothing is thrown away.
    """

    id: str
    source: str
    path: str
    title: str
    language: str
    query: str
    body: str
    source_url: str | None = None
    status: str | None = None
    severity: str | None = None
    author: str | None = None
    date: str | None = None
    modified: str | None = None
    version: str | None = None
    type: str | None = None
    description: str = ""
    references: tuple[str, ...] = ()
    falsepositives: tuple[str, ...] = ()
    how_to_implement: str | None = None
    attack: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    data_sources: tuple[str, ...] = ()
    logsource: Mapping[str, str] = dc_field(default_factory=dict)
    stories: tuple[str, ...] = ()
    tests: tuple[TestRef, ...] = ()
    doc_index: int = 0
    line: int = 1
    extra: Mapping[str, Any] = dc_field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LoadError:
    """A file (or one document of it) that could not become a rule, with where and why."""

    source: str
    path: str
    reason: str
    line: int | None = None
    col: int | None = None
    kind: str = "error"  # error class name, e.g. "yaml", "schema", "duplicate-id", "encoding"

    def __str__(self) -> str:
        where = self.path + (f":{self.line}" if self.line else "") + (
            f":{self.col}" if self.line and self.col else ""
        )
        return f"{where}: {self.reason}"


@dataclass(frozen=True, slots=True)
class FileResult:
    """What one input file became: rules, errors, or both (a collection with one bad doc)."""

    source: str
    path: str
    sha256: str
    rules: tuple[Rule, ...] = ()
    errors: tuple[LoadError, ...] = ()


@dataclass(frozen=True, slots=True)
class Macro:
    """A Splunk macro: ``name`` as called (``name`` or ``name(n)`` key form is ``key``)."""

    name: str
    definition: str
    arguments: tuple[str, ...] = ()
    description: str = ""
    path: str | None = None

    @property
    def key(self) -> str:
        return f"{self.name}({len(self.arguments)})" if self.arguments else self.name


# --------------------------------------------------------------------------------------------
# JSON round trip for trees (store <-> engine <-> web)
# --------------------------------------------------------------------------------------------


def value_to_json(v: Value) -> Any:
    if isinstance(v, Pattern):
        return {"pattern": [p if isinstance(p, str) else {"wild": p.value} for p in v.parts]}
    if isinstance(v, Regex):
        return {"regex": v.pattern, "flags": sorted(v.flags)}
    if isinstance(v, FieldRef):
        return {"fieldref": v.name}
    return v


def value_from_json(d: Any) -> Value:
    if isinstance(d, dict):
        if "pattern" in d:
            return Pattern(
                tuple(Wild(p["wild"]) if isinstance(p, dict) else p for p in d["pattern"])
            )
        if "regex" in d:
            return Regex(d["regex"], frozenset(d.get("flags", ())))
        if "fieldref" in d:
            return FieldRef(d["fieldref"])
        raise ValueError(f"unknown value object {d!r}")
    return d  # type: ignore[no-any-return]


def term_to_json(t: Term) -> Any:
    if isinstance(t, Call):
        return {"call": t.name, "args": [term_to_json(a) for a in t.args]}
    return value_to_json(t)  # a field reference or a constant: written as a value is


def term_from_json(d: Any) -> Term:
    if isinstance(d, dict):
        if "call" in d:
            return Call(d["call"], tuple(term_from_json(a) for a in d["args"]))
        if "fieldref" in d:
            return FieldRef(d["fieldref"])
        raise ValueError(f"unknown term object {d!r}")
    return d  # type: ignore[no-any-return]


def node_to_dict(n: Node | None) -> Any:
    """JSON form of a tree; spans and display text are kept (they are what pages show)."""
    if n is None:
        return None
    if isinstance(n, Predicate):
        d: dict[str, Any] = {
            "type": "predicate",
            "field": n.field,
            "op": n.op.value,
            "values": [value_to_json(v) for v in n.values],
        }
        for k in ("negated", "match_all", "cased"):
            if getattr(n, k):
                d[k] = True
        if n.transforms:
            d["transforms"] = list(n.transforms)
        if n.datamodel:
            d["datamodel"] = n.datamodel
        if n.phase is not Phase.EVENT:
            d["phase"] = n.phase.value
        if n.stage is not None:
            d["stage"] = n.stage
        if n.text is not None:
            d["text"] = n.text
        if n.span is not None:
            d["span"] = n.span.to_dict()
        return d
    if isinstance(n, And):
        return {"type": "and", "args": [node_to_dict(a) for a in n.args]}
    if isinstance(n, Or):
        return {"type": "or", "args": [node_to_dict(a) for a in n.args]}
    if isinstance(n, Not):
        return {"type": "not", "arg": node_to_dict(n.arg)}
    if isinstance(n, Const):
        return {"type": "const", "value": n.value}
    if isinstance(n, Condition):
        return {
            "type": "condition",
            "expr": term_to_json(n.expr),
            "text": n.text,
            "fields": list(n.fields),
            "phase": n.phase.value,
            "stage": n.stage,
            "span": n.span.to_dict() if n.span else None,
        }
    if isinstance(n, Opaque):
        return {
            "type": "opaque",
            "text": n.text,
            "reason": n.reason,
            "stage": n.stage,
            "span": n.span.to_dict() if n.span else None,
        }
    raise TypeError(f"not a node: {n!r}")


def node_from_dict(d: Any) -> Node | None:
    if d is None:
        return None
    t = d["type"]
    span = Span.from_dict(d["span"]) if d.get("span") else None
    if t == "predicate":
        return Predicate(
            field=d["field"],
            op=Op(d["op"]),
            values=tuple(value_from_json(v) for v in d["values"]),
            negated=d.get("negated", False),
            match_all=d.get("match_all", False),
            transforms=tuple(d.get("transforms", ())),
            cased=d.get("cased", False),
            datamodel=d.get("datamodel"),
            phase=Phase(d.get("phase", "event")),
            stage=d.get("stage"),
            text=d.get("text"),
            span=span,
        )
    if t == "and":
        return And(tuple(node_from_dict(a) for a in d["args"]))  # type: ignore[misc]
    if t == "or":
        return Or(tuple(node_from_dict(a) for a in d["args"]))  # type: ignore[misc]
    if t == "not":
        arg = node_from_dict(d["arg"])
        assert arg is not None
        return Not(arg)
    if t == "const":
        return Const(bool(d["value"]))
    if t == "condition":
        return Condition(
            expr=term_from_json(d["expr"]),
            text=d["text"],
            fields=tuple(d.get("fields", ())),
            phase=Phase(d.get("phase", "event")),
            stage=d.get("stage"),
            span=span,
        )
    if t == "opaque":
        return Opaque(d["text"], d["reason"], stage=d.get("stage"), span=span)
    raise ValueError(f"unknown node type {t!r}")


def stage_to_dict(s: Stage) -> dict[str, Any]:
    return {
        "index": s.index,
        "command": s.command,
        "text": s.text,
        "kind": s.kind.value,
        "expanded": s.expanded,
        "condition": node_to_dict(s.condition),
        "phase": s.phase.value,
        "by": list(s.by),
        "name": s.name,
        "notes": list(s.notes),
        **({"carried": list(s.carried)} if s.carried else {}),
        "span": s.span.to_dict() if s.span else None,
    }


def stage_from_dict(d: Mapping[str, Any]) -> Stage:
    return Stage(
        index=d["index"],
        command=d["command"],
        text=d["text"],
        kind=StageKind(d.get("kind", "filter")),
        expanded=d.get("expanded"),
        condition=node_from_dict(d.get("condition")),
        phase=Phase(d.get("phase", "event")),
        by=tuple(d.get("by", ())),
        name=d.get("name"),
        notes=tuple(d.get("notes", ())),
        carried=tuple(d.get("carried", ())),
        span=Span.from_dict(d["span"]) if d.get("span") else None,
    )


def problem_to_dict(p: Problem) -> dict[str, Any]:
    return {
        "message": p.message,
        "severity": p.severity,
        "location": p.location.to_dict() if p.location else None,
        "code": p.code,
    }


def problem_from_dict(d: Mapping[str, Any]) -> Problem:
    loc = d.get("location")
    return Problem(d["message"], d.get("severity", "error"), Span.from_dict(loc) if loc else None,
                   d.get("code"))


def step_to_dict(s: SequenceStep) -> dict[str, Any]:
    return {
        "condition": node_to_dict(s.condition),
        "by": list(s.by),
        "runs": s.runs,
        "missing": s.missing,
        "category": s.category,
        "text": s.text,
        "span": s.span.to_dict() if s.span else None,
    }


def step_from_dict(d: Mapping[str, Any]) -> SequenceStep:
    return SequenceStep(
        condition=node_from_dict(d.get("condition")),
        by=tuple(d.get("by", ())),
        runs=d.get("runs"),
        missing=bool(d.get("missing", False)),
        category=d.get("category"),
        text=d.get("text", ""),
        span=Span.from_dict(d["span"]) if d.get("span") else None,
    )


def sequence_to_dict(q: Sequence) -> dict[str, Any]:
    return {
        "kind": q.kind,
        "steps": [step_to_dict(s) for s in q.steps],
        "by": list(q.by),
        "maxspan": q.maxspan,
        "maxspan_text": q.maxspan_text,
        "until": step_to_dict(q.until) if q.until else None,
    }


def sequence_from_dict(d: Mapping[str, Any]) -> Sequence:
    return Sequence(
        kind=d["kind"],
        steps=tuple(step_from_dict(s) for s in d.get("steps", ())),
        by=tuple(d.get("by", ())),
        maxspan=d.get("maxspan"),
        maxspan_text=d.get("maxspan_text"),
        until=step_from_dict(d["until"]) if d.get("until") else None,
    )


def analysis_to_dict(a: Analysis) -> dict[str, Any]:
    d: dict[str, Any] = {
        "language": a.language,
        "stages": [stage_to_dict(s) for s in a.stages],
        "condition": node_to_dict(a.condition),
        "result_condition": node_to_dict(a.result_condition),
        "group_by": list(a.group_by),
        "problems": [problem_to_dict(p) for p in a.problems],
        "extra": dict(a.extra),
    }
    if a.sequence is not None:
        d["sequence"] = sequence_to_dict(a.sequence)
    if a.steps:
        d["steps"] = [pipeline_step_to_dict(x) for x in a.steps]
    return d


def analysis_from_dict(d: Mapping[str, Any]) -> Analysis:
    return Analysis(
        language=d["language"],
        stages=tuple(stage_from_dict(s) for s in d.get("stages", ())),
        condition=node_from_dict(d.get("condition")),
        result_condition=node_from_dict(d.get("result_condition")),
        group_by=tuple(d.get("group_by", ())),
        problems=tuple(problem_from_dict(p) for p in d.get("problems", ())),
        extra=dict(d.get("extra", {})),
        sequence=sequence_from_dict(d["sequence"]) if d.get("sequence") else None,
        steps=tuple(pipeline_step_from_dict(x) for x in d.get("steps", ())),
    )


def pipeline_step_to_dict(x: Step) -> dict[str, Any]:
    """A pipeline step as JSON: ``{"step": "eval", "stage": 2, ...}`` (its fields by name)."""
    d: dict[str, Any] = {"step": _STEP_NAMES[type(x)], "stage": x.stage}
    if isinstance(x, Filter):
        d["node"] = node_to_dict(x.node)
    elif isinstance(x, Eval):
        d["assigns"] = [[name, term_to_json(t)] for name, t in x.assigns]
    elif isinstance(x, Rex):
        d.update(field=x.field, pattern=x.pattern, max_match=x.max_match, mode=x.mode)
    elif isinstance(x, Rename):
        d["pairs"] = [list(p) for p in x.pairs]
    elif isinstance(x, Spath):
        d.update(input=x.input, output=x.output, path=x.path)
    elif isinstance(x, AddTotals):
        d.update(fieldname=x.fieldname, fields=list(x.fields), row=x.row)
    elif isinstance(x, Join):
        d.update(fields=list(x.fields), kind=x.kind, max=x.max, overwrite=x.overwrite,
                 subsearch=analysis_to_dict(x.subsearch) if x.subsearch else None)
    elif isinstance(x, Bin):
        d.update(fields=list(x.fields), span=x.span, options=[list(o) for o in x.options])
    elif isinstance(x, Aggregate):
        d.update(command=x.command, by=list(x.by), span=x.span, datamodel=x.datamodel,
                 nodename=x.nodename, options=[list(o) for o in x.options], problem=x.problem,
                 functions=[[f.name, f.field, f.alias] for f in x.functions])
    else:
        d.update(command=x.command, outputs=list(x.outputs))
    return d


def pipeline_step_from_dict(d: Mapping[str, Any]) -> Step:
    kind, stage = d["step"], int(d["stage"])
    if kind == "filter":
        return Filter(stage, node_from_dict(d.get("node")))
    if kind == "eval":
        return Eval(stage, tuple((str(n), term_from_json(t)) for n, t in d["assigns"]))
    if kind == "rex":
        return Rex(stage, d["field"], d.get("pattern"), d.get("max_match", 1), d.get("mode"))
    if kind == "rename":
        return Rename(stage, tuple((str(a), str(b)) for a, b in d["pairs"]))
    if kind == "spath":
        return Spath(stage, d["input"], d.get("output"), d.get("path"))
    if kind == "addtotals":
        return AddTotals(stage, d["fieldname"], tuple(d.get("fields", ())), d.get("row", True))
    if kind == "join":
        sub = d.get("subsearch")
        return Join(stage, tuple(d["fields"]), d["kind"], d["max"], d["overwrite"],
                    analysis_from_dict(sub) if sub else None)
    if kind == "aggregate":
        return Aggregate(stage, d["command"], tuple(d.get("by", ())),
                         tuple(AggFunc(n, f, a) for n, f, a in d.get("functions", ())),
                         d.get("span"), d.get("datamodel"), d.get("nodename"),
                         tuple((str(k), str(v)) for k, v in d.get("options", ())),
                         d.get("problem"))
    if kind == "bin":
        return Bin(stage, tuple(d["fields"]), d.get("span"),
                   tuple((str(k), str(v)) for k, v in d.get("options", ())))
    if kind == "command":
        return OtherCommand(stage, d["command"], tuple(d.get("outputs", ())))
    raise ValueError(f"unknown pipeline step {kind!r}")


_STEP_NAMES: dict[type, str] = {
    Filter: "filter", Eval: "eval", Rex: "rex", Rename: "rename", Spath: "spath",
    AddTotals: "addtotals", Join: "join", Aggregate: "aggregate", Bin: "bin",
    OtherCommand: "command",
}
