"""Parse a user's ``'FIELD OP VALUE'`` into the same normalised (field_key, key) as rules get.

Why a parser of its own: ``ruleatlas indicator`` and the web explorer must find the rules that
hold an indicator however the user writes it (Sigma-ish ``ScriptBlockText contains
Invoke-WMIExec``, Splunk-ish ``Processes.process_name=cmd.exe``); going through a
:class:`~ruleatlas.model.Predicate` and :func:`normalize.predicate_keys` guarantees the key is
computed by the very code that keyed the rules.

Grammar: ``FIELD [not] OP[|modifier...] VALUE`` or ``FIELD=VALUE`` / ``FIELD!=VALUE``;
OP is an :class:`~ruleatlas.model.Op` name, ``re``, or ``= != > >= < <=``; modifiers are Sigma's
transforms (``base64offset``, ``wide``, ``windash``, ...), ``all`` and ``cased``; a value may be
quoted with ``"`` or ``'``; ``*`` and ``?`` are wildcards unless escaped with a backslash
(``\\*``); a regex may be written ``/pattern/flags``. Comparison is case-insensitive unless
``cased``, as in Sigma and SPL search.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ruleatlas.indicators.normalize import QUERY_LANGUAGE, field_key_of, predicate_keys
from ruleatlas.model import AtlasError, Op, Pattern, Predicate, Regex, Value, Wild


class SpecError(AtlasError):
    """An indicator spec that cannot be parsed; the message says what was expected."""


OP_WORDS: dict[str, Op] = {op.value: op for op in Op} | {
    "=": Op.EQ,
    "==": Op.EQ,
    "!=": Op.NE,
    ">": Op.GT,
    ">=": Op.GE,
    "<": Op.LT,
    "<=": Op.LE,
    "re": Op.REGEX,
    "gte": Op.GE,
    "lte": Op.LE,
}
TRANSFORMS = frozenset(
    {"base64", "base64offset", "wide", "utf16", "utf16le", "utf16be", "windash", "expand"}
)
_COMPACT = re.compile(r"^\s*([^\s=!<>]+)\s*(!=|==|=|>=|<=|>|<)\s*(.*?)\s*$", re.S)


@dataclass(frozen=True, slots=True)
class Spec:
    """A parsed spec: the predicate it stands for and its normalised keys."""

    predicate: Predicate
    negated: bool
    field_key: str
    key: str
    value: str


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def _glob_value(text: str) -> Value:
    """Plain text, or a Pattern when it holds unescaped ``*``/``?`` (``\\*`` is literal)."""
    parts: list[str | Wild] = []
    buf: list[str] = []
    i = 0
    wild = False
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in "*?\\":
            buf.append(text[i + 1])
            i += 2
            continue
        if ch in "*?":
            parts.append("".join(buf))
            buf = []
            parts.append(Wild.ANY if ch == "*" else Wild.ONE)
            wild = True
        else:
            buf.append(ch)
        i += 1
    parts.append("".join(buf))
    return Pattern(tuple(parts)) if wild else "".join(p for p in parts if isinstance(p, str))


def _regex_value(text: str) -> Regex:
    m = re.fullmatch(r"/(.*)/([ims]*)", text, re.S)
    if m:
        return Regex(m.group(1), frozenset(m.group(2)))
    return Regex(text)


def parse_spec(spec: str) -> Spec:
    """Parse ``'FIELD OP VALUE'`` (see the module docstring); raises :class:`SpecError`."""
    negated = False
    m = _COMPACT.match(spec)
    if m and " " not in m.group(1):
        field, op_text, raw = m.group(1), m.group(2), m.group(3)
        mods: list[str] = []
    else:
        tokens = spec.strip().split(None, 2)
        if len(tokens) < 2:
            raise SpecError(f"expected 'FIELD OP VALUE', got {spec!r}")
        field, op_text = tokens[0], tokens[1]
        rest = tokens[2] if len(tokens) > 2 else ""
        if op_text.lower() == "not":
            negated = True
            sub = rest.split(None, 1)
            if not sub:
                raise SpecError(f"expected an operator after 'not' in {spec!r}")
            op_text, rest = sub[0], (sub[1] if len(sub) > 1 else "")
        if op_text.startswith("!") and op_text != "!=":
            negated = not negated
            op_text = op_text[1:]
        raw = rest
        mods = op_text.split("|")
        op_text = next((x for x in mods if x.lower() in OP_WORDS), "")
        if not op_text:
            raise SpecError(
                f"unknown operator in {spec!r}; expected one of {', '.join(sorted(OP_WORDS))}"
            )
        mods = [x.lower() for x in mods if x != op_text]
    op = OP_WORDS[op_text.lower()]
    bad = [x for x in mods if x not in TRANSFORMS and x not in ("all", "cased")]
    if bad:
        raise SpecError(f"unknown modifier(s) {', '.join(bad)} in {spec!r}")
    text = _unquote(raw)
    if op is Op.EXISTS:
        values: tuple[Value, ...] = ()
        if text.lower() == "false":
            negated = not negated
    elif op is Op.REGEX:
        values = (_regex_value(text),)
    elif op in (Op.EQ, Op.NE, Op.IN, Op.WILDCARD, Op.KEYWORD):
        values = (_glob_value(text),)
    else:
        values = (text,)
    if op is not Op.EXISTS and not text:
        raise SpecError(f"missing value in {spec!r}")
    pred = Predicate(
        field=None if op is Op.KEYWORD else field,
        op=op,
        values=values,
        transforms=tuple(x for x in mods if x in TRANSFORMS),
        match_all="all" in mods,
        cased="cased" in mods,
    )
    ((shown, key),) = predicate_keys(pred, QUERY_LANGUAGE, negated)
    _, info = field_key_of(pred)
    return Spec(predicate=pred, negated=negated, field_key=info.key, key=key, value=shown)
