"""SPL searches that compute a field, then filter on it: ``eval`` and ``rex`` replayed in order.

``... | rex field=Message "(?<user>\\S+)@" | eval u=lower(user) | search u=admin*`` cannot be one
predicate tree over the raw event: ``u`` does not exist before the ``eval``. The SPL lowering
records every command as a typed step (``Analysis.steps``, ``model.Step``, see
``languages.spl.lower.pipeline_step``); :func:`plan` splits the ones before the first
aggregation into

* the *head*: every filter that reads no field an earlier ``eval``/``rex`` writes. Filters
  commute with commands that do not write what they read, so the head is the rule's condition
  for the pre-filter (its literals are the anchors) and for the first, cheap match;
* the *steps*: ``eval`` assignments, ``rex`` extractions and the remaining filters, in search
  order, run on a copy of the event's fields for the few events that pass the head.

An assignment or extraction whose output no later filter reads is optional: when the engine
cannot compute it (an SPL function it does not have) it is skipped, as before this module, and
an aggregation grouping by it sees the raw field. One a filter needs makes the rule not
runnable, with the reason.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree

from ruleatlas import model as mdl
from ruleatlas.engine import datamodels
from ruleatlas.engine.compile import Matcher, NotRunnable, compile_node
from ruleatlas.engine.functions import UnknownFunction, compile_term
from ruleatlas.engine.sigma_semantics import as_number, to_text
from ruleatlas.engine.spl_semantics import route_channel_terms
from ruleatlas.model import (
    Analysis,
    Condition,
    Node,
    Predicate,
    Term,
    conjoin,
    term_fields,
    walk,
)

Fields = Mapping[str, Any]
Steps = Callable[[Fields], dict[str, Any] | None]

_NAMED = re.compile(r"\(\?<([A-Za-z_]\w*)>")  # PCRE's spelling (Python wants ?P<x>)
_GROUP = re.compile(r"\(\?P?<([A-Za-z_]\w*)>")  # either spelling


@dataclass(frozen=True, slots=True)
class Step:
    """``kind``: ``filter`` (``node``), ``eval`` (``assigns``), ``rex`` (``rex``), ``rename``
    (``renames``, source and target name pairs), or
    ``command``: any other command, kept for the fields it writes (``outputs``), which the
    engine does not compute."""

    kind: str
    stage: int
    node: Node | None = None
    assigns: tuple[tuple[str, Term], ...] = ()
    rex: Mapping[str, Any] | None = None
    command: str = ""
    outputs: tuple[str, ...] = ()
    renames: tuple[tuple[str, str], ...] = ()
    totals: Mapping[str, Any] | None = None  # addtotals: fieldname, fields, row
    spath: Mapping[str, Any] | None = None  # spath: input, output, path
    derive: Mapping[str, Any] | None = None  # tstats: datamodel, names, fill (datamodels.py)
    join: mdl.Join | None = None  # join: fields, kind, max, overwrite, subsearch
    aggregate: mdl.Aggregate | None = None  # aggregate (ES|QL's replay: esql_semantics.py)

    def writes(self) -> set[str]:
        if self.kind == "derive" and self.derive is not None:
            return set(self.derive["names"]) | {n for n, _ in self.derive.get("fill", ())}
        if self.kind == "spath" and self.spath is not None:
            p = self.spath.get("path")
            return {str(self.spath.get("output") or p)} if p else set()
        if self.kind == "addtotals" and self.totals is not None:
            return {str(self.totals.get("fieldname") or "Total")} if self.totals.get(
                "row", True) else set()
        if self.kind == "command":
            return set(self.outputs)
        if self.kind == "rename":  # the source is gone too: a filter on it must stay after
            return {f for src, dst in self.renames if "*" not in src + dst for f in (src, dst)}
        if self.kind == "eval":
            return {name for name, _ in self.assigns}
        if self.kind == "rex" and self.rex is not None:
            if str(self.rex.get("mode") or "").lower() == "sed":
                return {str(self.rex.get("field") or "_raw")}
            return set(_GROUP.findall(str(self.rex.get("pattern") or "")))
        return set()

    def write_globs(self) -> list[str]:
        """Targets of a wildcard rename (``rename properties.* as *``): which fields it writes
        only the events tell."""
        if self.kind == "rename":
            return [g for a, b in self.renames if "*" in a or "*" in b for g in (a, b)]
        if self.kind == "spath" and self.spath is not None and not self.spath.get("path"):
            return ["*"]  # every field of the document: only the event tells which
        return []

    def writes_any(self, fields: set[str]) -> bool:
        if self.writes() & fields:
            return True
        globs = self.write_globs()
        return bool(globs) and any(fnmatch.fnmatchcase(f, g) for f in fields for g in globs)

    def reads(self) -> set[str]:
        if self.kind == "join" and self.join is not None:
            return set(self.join.fields)
        if self.kind == "filter":
            return node_fields(self.node)
        if self.kind == "eval":
            out: set[str] = set()
            for _, t in self.assigns:
                out.update(term_fields(t))
            return out
        if self.kind == "rex" and self.rex is not None:
            return {str(self.rex.get("field") or "_raw")}
        if self.kind == "rename":
            return {src for src, dst in self.renames if "*" not in src + dst}
        if self.kind == "spath" and self.spath is not None:
            return {str(self.spath.get("input") or "_raw")}
        if self.kind == "addtotals" and self.totals is not None:
            return {str(x) for x in self.totals.get("fields") or () if "*" not in str(x)}
        return set()


@dataclass(frozen=True, slots=True)
class Plan:
    """``head``: the filters that can run on the raw event; ``steps``: the rest, in order;
    ``uncomputed``: fields a filter reads after a command the engine does not run wrote them
    (``lookup``, ``spath``, ``iplocation``, ...), with that command's name; ``unrun``: such
    fields as they stand when the events reach the aggregation."""

    head: Node | None
    steps: tuple[Step, ...]
    uncomputed: Mapping[str, str]
    unrun: Mapping[str, str]  # fields standing at the end as a command not run wrote them


def fields_of(node: Node | None) -> list[str]:
    """The fields a tree reads, in the order written (predicates and ``where`` conditions)."""
    out: list[str] = []
    for n in walk(node):
        if isinstance(n, Predicate) and n.field:
            out.append(n.field)
        elif isinstance(n, Condition):
            out.extend(n.fields or sorted(term_fields(n.expr)))
    return list(dict.fromkeys(out))


def node_fields(node: Node | None) -> set[str]:
    return set(fields_of(node))


def plan(analysis: Analysis) -> Plan | None:
    """The head and steps of the commands before the first aggregation (None: the language
    records no pipeline steps, the analysis condition is the whole event filter)."""
    if not analysis.steps:
        return None
    first = next((i for i, x in enumerate(analysis.steps) if isinstance(x, mdl.Aggregate)),
                 len(analysis.steps))
    return _split(_steps(analysis.steps[:first], joins=False), with_head=True)


def result_plan(analysis: Analysis) -> Plan | None:
    """The steps after the last aggregation (``| stats ... | eval z=(x-avg)/stdev | where z >
    3``), all in order, no head: rows are few, and a row filter has no literals to anchor.
    None when they compute nothing (only filters: the result condition is the row filter)."""
    last = max((i for i, x in enumerate(analysis.steps) if isinstance(x, mdl.Aggregate)),
               default=None)
    if last is None:
        return None
    after = analysis.steps[last + 1:]
    if not any(isinstance(x, RESULT_COMPUTING) and not (
            isinstance(x, mdl.Join) and x.subsearch is None) for x in after):
        return None
    return _split(_steps(after, joins=True), with_head=False)


RESULT_COMPUTING = (mdl.Eval, mdl.Rex, mdl.Rename, mdl.AddTotals, mdl.Spath, mdl.Join)


def stage_writes(analysis: Analysis, stage: int) -> set[str]:
    """The fields the typed steps of one stage write (``eval`` names, ``rex`` groups, an
    unreplayed command's declared outputs, ...)."""
    return {f for st in _steps([s for s in analysis.steps if s.stage == stage], joins=True)
            for f in st.writes()}


def _steps(raw: Sequence[mdl.Step], joins: bool) -> list[Step]:
    """The model's typed steps as the engine's (``joins``: a join runs its subsearch; before
    the aggregation it does not, runnability judges it by the fields it writes)."""
    steps: list[Step] = []
    for d in raw:
        stage = d.stage
        if isinstance(d, mdl.Filter):
            steps.append(Step("filter", stage, node=route_channel_terms(d.node)))
        elif isinstance(d, mdl.Eval):
            steps.append(Step("eval", stage, assigns=d.assigns))
        elif isinstance(d, mdl.Rex):
            steps.append(Step("rex", stage, rex={"field": d.field, "pattern": d.pattern,
                                                 "max_match": d.max_match, "mode": d.mode}))
        elif isinstance(d, mdl.Rename):
            steps.append(Step("rename", stage, renames=d.pairs))
        elif isinstance(d, mdl.AddTotals):
            steps.append(Step("addtotals", stage, totals={
                "fieldname": d.fieldname, "fields": list(d.fields), "row": d.row}))
        elif isinstance(d, mdl.Spath):
            steps.append(Step("spath", stage, spath={"input": d.input, "output": d.output,
                                                     "path": d.path}))
        elif isinstance(d, mdl.Join) and d.subsearch is not None:
            if joins:
                steps.append(Step("join", stage, join=d))
        elif isinstance(d, mdl.Join | mdl.Bin):  # writes nothing the plan tracks
            steps.append(Step("command", stage, command=type(d).__name__.lower()))
        elif isinstance(d, mdl.OtherCommand):
            steps.append(Step("command", stage, command=d.command, outputs=d.outputs))
    return steps


def _split(steps: list[Step], with_head: bool) -> Plan:
    """Steps into a :class:`Plan`. ``with_head`` (events): the filters that read nothing an
    earlier step writes move to the head, and trailing steps that write nothing are dropped.
    Without (rows after the aggregation): all steps stay in order, and only filters report the
    fields a command the engine does not run wrote."""
    head: list[Node | None] = []
    tail: list[Step] = []
    written: set[str] = set()  # by eval/rex: computed by the steps
    other: dict[str, str] = {}  # by other commands: not computed
    uncomputed: dict[str, str] = {}
    globs: list[str] = []  # targets of wildcard renames
    for st in steps:
        if st.kind == "command":
            for f in st.outputs:
                other[f] = st.command
            continue
        reads = st.reads()
        if with_head or st.kind == "filter":
            for f in reads & other.keys():
                uncomputed.setdefault(f, other[f])
        if (with_head and st.kind == "filter" and not (reads & written)
                and not any(fnmatch.fnmatchcase(f, g) for f in reads for g in globs)):
            head.append(st.node)
            continue
        for f in st.writes():
            written.add(f)
            other.pop(f, None)
        globs.extend(st.write_globs())
        tail.append(st)
    while with_head and tail and tail[-1].kind != "filter" and not (
            tail[-1].writes() or tail[-1].write_globs()):
        tail.pop()
    return Plan(conjoin(head), tuple(tail), uncomputed, other)


def needed(steps: Sequence[Step], later: AbstractSet[str] = frozenset()) -> list[bool]:
    """Per step, whether a later filter (or ``later``, the fields read after the pipeline)
    depends on what it writes; filters are always needed."""
    need = set(later)
    out = [False] * len(steps)
    for i in range(len(steps) - 1, -1, -1):
        st = steps[i]
        if st.kind in ("filter", "join") or st.writes_any(need):
            out[i] = True
            need |= st.reads()
    return out


def compile_steps(steps: Sequence[Step], fmap: Mapping[str, str] | None = None,
                  later: AbstractSet[str] = frozenset(),
                  joins: Mapping[int, Callable[[dict[str, Any]], bool]] | None = None,
                  ) -> Steps | None:
    """One function running the steps on a copy of an event's fields: the copy with the
    computed fields, or None when a filter rejects it. Raises :class:`NotRunnable` when a
    needed step cannot be computed. None when there is nothing to run. ``joins``: the
    operation of each ``join`` step, by its stage (the runner builds them: they read the rows
    of a subsearch the engine runs beside the rule)."""
    if not steps:
        return None
    fm = dict(fmap or {})
    need = needed(steps, later)
    ops: list[Callable[[dict[str, Any]], bool]] = []
    for st, required in zip(steps, need, strict=True):
        if st.kind == "join":
            if joins is None or st.stage not in joins:
                raise NotRunnable(f"stage {st.stage + 1} (join): the subsearch is not run")
            ops.append(joins[st.stage])
            continue
        try:
            op = _compile_step(st, fm)
        except NotRunnable as exc:
            if required:
                raise NotRunnable(f"stage {st.stage + 1} ({st.kind}): {exc.message}") from None
            continue
        ops.append(op)

    def run(fields: Fields) -> dict[str, Any] | None:
        f = dict(fields)
        for op in ops:
            if not op(f):
                return None
        return f

    return run


def _compile_step(st: Step, fm: Mapping[str, str]) -> Callable[[dict[str, Any]], bool]:
    if st.kind == "filter":
        m: Matcher = compile_node(st.node, fm)
        return m
    if st.kind == "eval":
        return _compile_eval(st.assigns, fm)
    if st.kind == "rex" and st.rex is not None:
        return _compile_rex(st.rex, fm)
    if st.kind == "rename":
        return _compile_rename(st.renames, fm)
    if st.kind == "addtotals" and st.totals is not None:
        return _compile_addtotals(st.totals, fm)
    if st.kind == "spath" and st.spath is not None:
        return _compile_spath(st.spath, fm)
    if st.kind == "derive" and st.derive is not None:
        d = st.derive
        return datamodels.derive(d["datamodel"], list(d["names"]), fm, tuple(d.get("fill", ())))
    raise NotRunnable(f"step {st.kind} is not supported")


def _compile_eval(assigns: tuple[tuple[str, Term], ...],
                  fm: Mapping[str, str]) -> Callable[[dict[str, Any]], bool]:
    """SPL evaluates one ``eval``'s assignments left to right, each seeing the ones before; a
    null result removes the field."""
    try:
        compiled = [(name, compile_term(t, fm)) for name, t in assigns]
    except UnknownFunction as exc:
        raise NotRunnable(exc.message) from None

    def op(f: dict[str, Any]) -> bool:
        for name, fn in compiled:
            try:
                v = fn(f)
            except (TypeError, ValueError, ArithmeticError, re.error):
                v = None  # Splunk: an eval error leaves the field null
            put(f, name, v)
        return True

    return op


def put(row: dict[str, Any], name: str, value: Any) -> None:
    """Set a field, or remove it when the value is null (eval's and rename's rule in SPL and
    ES|QL: a null field is absent)."""
    if value is None:
        row.pop(name, None)
    else:
        row[name] = value


def _compile_rename(pairs: tuple[tuple[str, str], ...],
                    fm: Mapping[str, str]) -> Callable[[dict[str, Any]], bool]:
    """``rename a as b``: ``b`` takes ``a``'s value (or is removed when ``a`` is missing) and
    ``a`` is gone. With wildcards (``rename properties.* as *``) every field matching the source
    is renamed, each ``*`` of the target taking what the source's matched, in order."""
    ops: list[Callable[[dict[str, Any]], None]] = []
    for a, b in pairs:
        if "*" in a or "*" in b:
            ops.append(_glob_rename(a, b))
        else:
            ops.append(_plain_rename(fm.get(a, a), b))

    def op(f: dict[str, Any]) -> bool:
        for o in ops:
            o(f)
        return True

    return op


def _plain_rename(a: str, b: str) -> Callable[[dict[str, Any]], None]:
    def op(f: dict[str, Any]) -> None:
        if a == b:
            return
        v = f.pop(a, None)
        if v is None:
            f.pop(b, None)
        else:
            f[b] = v

    return op


def _glob_rename(a: str, b: str) -> Callable[[dict[str, Any]], None]:
    if a.count("*") != b.count("*"):
        raise NotRunnable(f"rename {a} as {b}: the wildcards do not pair up")
    rx = re.compile("^" + "(.*?)".join(re.escape(p) for p in a.split("*")) + "$", re.S)
    parts = b.split("*")

    def op(f: dict[str, Any]) -> None:
        moves = []
        for k in list(f):
            m = rx.match(k)
            if m is not None:
                new = parts[0] + "".join(g + p for g, p in zip(m.groups(), parts[1:],
                                                               strict=True))
                if new != k:
                    moves.append((k, new))
        for k, new in moves:
            f[new] = f.pop(k)

    return op


def _compile_addtotals(spec: Mapping[str, Any],
                       fm: Mapping[str, str]) -> Callable[[dict[str, Any]], bool]:
    """``addtotals fieldname=F a b c``: F is the sum of the listed fields' numeric values
    (``*`` wildcards allowed; no list: every numeric field), as Splunk's row totals."""
    if not spec.get("row", True):
        return lambda f: True
    out = str(spec.get("fieldname") or "Total")
    names = [str(x) for x in spec.get("fields") or ()]
    plain = [fm.get(n, n) for n in names if "*" not in n]
    globs = [re.compile(fnmatch.translate(n)) for n in names if "*" in n]
    every = not names

    def op(f: dict[str, Any]) -> bool:
        total = 0.0
        keys = plain if not globs and not every else [
            k for k in f if every or k in plain or any(g.match(k) for g in globs)]
        for k in keys:
            if k == out:
                continue
            v = as_number(f.get(k))
            if v is not None and not isinstance(f.get(k), bool):
                total += v
        f[out] = int(total) if total.is_integer() else total
        return True

    return op


def _compile_spath(spec: Mapping[str, Any],
                   fm: Mapping[str, str]) -> Callable[[dict[str, Any]], bool]:
    """``spath``: the JSON or XML document in ``input`` flattened into Splunk's field names
    (``a.b``, ``a{}.c`` for arrays, ``a.b{@attr}`` for XML attributes); with ``path``, only
    that field, written to ``output`` (default: the path). Text that is neither is left."""
    src = str(spec.get("input") or "_raw")
    src = fm.get(src, src)
    path = spec.get("path")
    out = str(spec.get("output") or path) if path else None

    def op(f: dict[str, Any]) -> bool:
        v = f.get(src)
        if not isinstance(v, str):
            return True
        flat = spath_fields(v)
        if out is None:
            f.update(flat)
        elif path in flat:
            f[out] = flat[path]
        return True

    return op


def spath_fields(text: str) -> dict[str, Any]:
    """Splunk's spath field names and values of a JSON or XML document ({} when neither)."""
    t = text.strip()
    acc: dict[str, list[Any]] = {}
    if t[:1] in ("{", "["):
        try:
            doc = json.loads(t)
        except ValueError:
            return {}
        _flat_json(doc, "", acc)
    elif t[:1] == "<":
        try:
            root = ElementTree.fromstring(t)
        except (ElementTree.ParseError, ValueError):
            return {}
        _flat_xml(root, "", acc)
    return {k: vs[0] if len(vs) == 1 else vs for k, vs in acc.items()}


def _flat_json(v: Any, name: str, acc: dict[str, list[Any]]) -> None:
    if isinstance(v, dict):
        for k, x in v.items():
            _flat_json(x, f"{name}.{k}" if name else str(k), acc)
    elif isinstance(v, list):
        for x in v:
            _flat_json(x, name + "{}", acc)
    elif name:
        acc.setdefault(name, []).append(
            "true" if v is True else "false" if v is False else v)


def _flat_xml(el: ElementTree.Element, name: str, acc: dict[str, list[Any]]) -> None:
    tag = el.tag.rsplit("}", 1)[-1] if isinstance(el.tag, str) else ""
    here = f"{name}.{tag}" if name else tag
    for k, v in el.attrib.items():
        acc.setdefault(f"{here}{{@{k.rsplit('}', 1)[-1]}}}", []).append(v)
    kids = list(el)
    if not kids:
        acc.setdefault(here, []).append(el.text or "")
    for kid in kids:
        _flat_xml(kid, here, acc)


class JoinRows:
    """The rows of a ``join``'s subsearch, filled by the engine when every event has been seen,
    looked up by the join fields (as text, as Splunk compares them)."""

    def __init__(self, fields: Sequence[str]) -> None:
        self.fields = tuple(fields)
        self.rows: list[dict[str, Any]] = []
        self._index: dict[tuple[str, ...], dict[str, Any]] | None = None

    def set(self, rows: list[dict[str, Any]]) -> None:
        self.rows, self._index = rows, None

    def first(self, row: Mapping[str, Any]) -> dict[str, Any] | None:
        if self._index is None:
            self._index = {}
            for r in self.rows:
                k = join_key(r, self.fields)
                if k is not None:
                    self._index.setdefault(k, r)  # max=1: the first row of the subsearch
        k = join_key(row, self.fields)
        return None if k is None else self._index.get(k)


def join_key(row: Mapping[str, Any], fields: Sequence[str]) -> tuple[str, ...] | None:
    out = []
    for f in fields:
        texts = _value_text(row.get(f))
        if not texts:
            return None
        out.append("\n".join(texts))
    return tuple(out)


def join_op(spec: mdl.Join, rows: JoinRows) -> Callable[[dict[str, Any]], bool]:
    """``join type=inner|outer f1, f2 [sub]`` on one row: the subsearch's first row with the
    same values is merged in (its fields overwrite, unless ``overwrite=false``); an inner join
    drops a row without one."""
    inner = spec.kind == "inner"
    overwrite = spec.overwrite

    def op(f: dict[str, Any]) -> bool:
        sub = rows.first(f)
        if sub is None:
            return not inner
        for k, v in sub.items():
            if overwrite or f.get(k) is None:
                f[k] = v
        return True

    return op


def pcre_to_python(pattern: str) -> re.Pattern[str]:
    """Splunk's PCRE named groups ``(?<x>...)`` in Python's spelling; a pattern Python cannot
    compile is :class:`NotRunnable` with the reason."""
    try:
        return re.compile(_NAMED.sub(r"(?P<\1>", pattern))
    except re.error as exc:
        raise NotRunnable(f"regex {pattern[:60]!r}: {exc}") from None


def _value_text(v: Any) -> list[str]:
    if v is None:
        return []
    if isinstance(v, list):
        return [to_text(x) for x in v if x is not None]
    return [to_text(v)]


def _compile_rex(spec: Mapping[str, Any], fm: Mapping[str, str]) -> Callable[[dict[str, Any]],
                                                                              bool]:
    src = str(spec.get("field") or "_raw")
    src = fm.get(src, src)
    pattern = spec.get("pattern")
    if not isinstance(pattern, str):
        raise NotRunnable("rex without a pattern")
    if str(spec.get("mode") or "").lower() == "sed":
        return _compile_sed(src, pattern)
    rx = pcre_to_python(pattern)
    names = list(rx.groupindex)
    try:
        raw_most = spec.get("max_match")
        most = 1 if raw_most is None else int(str(raw_most))
    except (TypeError, ValueError):
        raise NotRunnable(f"rex max_match={spec.get('max_match')!r}") from None

    def op(f: dict[str, Any]) -> bool:
        texts = _value_text(f.get(src))
        if not texts:
            return True
        if most == 1:
            for t in texts:
                m = rx.search(t)
                if m is not None:
                    for n in names:
                        g = m.group(n)
                        if g is not None:
                            f[n] = g
                    break
            return True
        found: dict[str, list[str]] = {n: [] for n in names}
        k = 0
        for t in texts:
            for m in rx.finditer(t):
                for n in names:
                    g = m.group(n)
                    if g is not None:
                        found[n].append(g)
                k += 1
                if most and k >= most:
                    break
        for n, vals in found.items():
            if vals:
                f[n] = vals[0] if len(vals) == 1 else vals
        return True

    return op


_SED = re.compile(r"^s(.)(.*?)(?<!\\)\1(.*?)(?<!\\)\1([gi0-9]*)$", re.S)


def _compile_sed(src: str, expr: str) -> Callable[[dict[str, Any]], bool]:
    """``rex mode=sed field=F "s/REGEX/REPLACEMENT/FLAGS"``: ``g`` (all), ``N`` (the Nth)."""
    m = _SED.match(expr.strip())
    if m is None:
        raise NotRunnable(f"rex mode=sed expression {expr[:60]!r} is not supported")
    _, pat, repl, flags = m.groups()
    rx = pcre_to_python(pat)
    count = 0 if "g" in flags else 1
    digits = "".join(c for c in flags if c.isdigit())
    if digits and digits != "1":
        raise NotRunnable(f"rex mode=sed flag {flags!r} is not supported")
    py_repl = re.sub(r"\\(\d)", r"\\g<\1>", repl.replace("\\/", "/"))

    def op(f: dict[str, Any]) -> bool:
        v = f.get(src)
        if isinstance(v, str):
            f[src] = rx.sub(py_repl, v, count=count)
        return True

    return op
