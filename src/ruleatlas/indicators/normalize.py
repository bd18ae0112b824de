"""Normalised keys: one text per (field, value) that two vendors' rules share when they look for
the same thing.

Why keys are text and not objects: counting happens in SQLite (a GROUP BY over
``(field_key, key)``), and users see the key in JSON and on hover, so it must be short, readable
and unambiguous. The grammar (see docs/indicators.md):

* glob keys for equality and substring matches: ``*`` any run, ``?`` one character, literal
  ``*``, ``?`` and ``[`` written ``[*]``, ``[?]``, ``[[]`` (fnmatch style, so backslashes stay as
  they are: ``*\\cmd.exe``); ``contains x`` = ``*x*``, ``startswith x`` = ``x*``,
  ``endswith x`` = ``*x``; runs of ``*`` collapse; a lone ``*`` is ``exists``;
* case folded (lower) unless the comparison is case-sensitive (``cased``, SPL ``where``) or the
  value is matched after a base64/utf16 transform;
* numbers as canonical text (int ``4104`` and str ``"4104"`` both ``4104``);
* typed keys: ``re:/pattern/flags``, ``cidr:10.0.0.0/8``, ``ref:Field``, ``>5`` ``>=5`` ``<5``
  ``<=5``, ``exists``, ``null``, ``true``/``false``;
* transforms prefixed in the order written: ``base64offset:*x*``, ``wide:base64offset:*x*``;
* negation (including ``ne``) prefixed ``!`` outermost, so excluded values count apart;
* a literal key that would read as a typed one (``!x``, ``re:x``, ``exists``) gets its first
  character bracket-escaped (``[!]x``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from ruleatlas.indicators.fields import FieldInfo, field_info
from ruleatlas.languages import language as plugin
from ruleatlas.model import FieldRef, Op, Pattern, Predicate, Regex, Value, Wild, value_text

# The command line's ``FIELD OP VALUE`` indicator specs compare like SPL and Sigma: without case.
QUERY_LANGUAGE = "cli"

# Transforms after which the matched text is an encoding: case folding would change it.
ENCODING_TRANSFORMS = frozenset({"base64", "base64offset", "wide", "utf16", "utf16le", "utf16be"})

COMPARISON_PREFIX = {Op.GT: ">", Op.GE: ">=", Op.LT: "<", Op.LE: "<="}

_INT_RE = re.compile(r"^[+-]?\d+$")

# Typed-key prefixes a literal key must not start with (see module docstring).
_RESERVED_WORDS = ("re:", "cidr:", "ref:")
_RESERVED_EXACT = frozenset({"exists", "null"})


@dataclass(frozen=True, slots=True)
class KeyContext:
    """What a value key depends on besides the value: folding, path fields, basename aliases,
    transforms and negation. Built once per predicate by :func:`key_context`."""

    fold: bool
    path: bool = False
    basename: bool = False
    transforms: tuple[str, ...] = ()
    negated: bool = False
    token: bool = False


def canonical_number(v: int | float | str) -> str | None:
    """``4104``, ``4104.0`` and ``"4104"`` all give ``"4104"``; None when not a number."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else repr(v)
    if isinstance(v, str) and _INT_RE.match(v.strip()):
        return str(int(v.strip()))
    return None


def escape_literal(text: str) -> str:
    """Bracket-escape the glob metacharacters of literal text (``*`` -> ``[*]``)."""
    if not any(c in text for c in "*?["):
        return text
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def render_glob(parts: Iterable[str | Wild]) -> str:
    """Key text of glob parts: wildcards as ``*``/``?``, literals escaped, ``*`` runs merged."""
    out: list[str] = []
    for p in parts:
        if isinstance(p, Wild):
            if p is Wild.ANY and out and out[-1] == "*":
                continue
            out.append(p.value)
        elif p:
            out.append(escape_literal(p))
    return "".join(out)


def _protect(key: str) -> str:
    """Bracket-escape the first character of a literal key that would read as a typed key."""
    if not key:
        return key
    if key[0] in "!<>" or key in _RESERVED_EXACT or key.startswith(_RESERVED_WORDS):
        return f"[{key[0]}]{key[1:]}"
    if ":" in key:
        head = key.split(":", 1)[0]
        if head in ENCODING_TRANSFORMS or head in ("windash", "expand"):
            return f"[{key[0]}]{key[1:]}"
    return key


def _parts_of(v: Value, op: Op) -> tuple[str | Wild, ...]:
    """Glob parts of a plain value under a matching op (contains -> ``*x*``, ...)."""
    if isinstance(v, Pattern):
        core: tuple[str | Wild, ...] = v.parts
    else:
        num = canonical_number(v) if isinstance(v, (int, float, str)) else None
        core = (num,) if num is not None and op in (Op.EQ, Op.NE, Op.IN) else (value_text(v),)
    if op is Op.CONTAINS:
        return (Wild.ANY, *core, Wild.ANY)
    if op is Op.STARTSWITH:
        return (*core, Wild.ANY)
    if op is Op.ENDSWITH:
        return (Wild.ANY, *core)
    return core


def _glob_key(v: Value, op: Op, ctx: KeyContext) -> str:
    parts = list(_parts_of(v, op))
    if ctx.fold:
        parts = [p.lower() if isinstance(p, str) else p for p in parts]
    if ctx.path:
        parts = [p.replace("/", "\\") if isinstance(p, str) else p for p in parts]
    if ctx.basename and parts and parts[0] is not Wild.ANY:
        # process_name=cmd.exe is Image|endswith: \cmd.exe
        parts = [Wild.ANY, "\\", *parts]
    if ctx.token and parts:
        # process.args: "-decode" (one argument) is CommandLine|contains: -decode
        parts = [Wild.ANY, *parts, Wild.ANY]
    key = render_glob(parts)
    if key == "*":
        return "exists"
    if parts and isinstance(parts[0], str):
        key = _protect(key)
    return key


def _cidr_key(v: Value) -> str:
    text = value_text(v)
    try:
        return "cidr:" + str(ipaddress.ip_network(text.strip(), strict=False))
    except ValueError:
        return "cidr:" + text.strip()


def _regex_key(v: Value) -> str:
    if isinstance(v, Regex):
        return f"re:/{v.pattern}/{''.join(sorted(v.flags))}"
    return f"re:/{value_text(v)}/"


def _comparison_key(v: Value, op: Op) -> str:
    num = canonical_number(v) if isinstance(v, (int, float, str)) else None
    return COMPARISON_PREFIX[op] + (num if num is not None else value_text(v))


def value_key(v: Value, op: Op, ctx: KeyContext) -> str:
    """The normalised key of one value of a predicate (see the module docstring)."""
    if op is Op.EXISTS:
        core = "exists"
    elif isinstance(v, FieldRef):
        core = "ref:" + field_info(v.name).key
    elif isinstance(v, Regex) or op is Op.REGEX:
        core = _regex_key(v)
    elif op is Op.CIDR:
        core = _cidr_key(v)
    elif op in COMPARISON_PREFIX:
        core = _comparison_key(v, op)
    elif v is None:
        core = "null"
    elif isinstance(v, bool):
        core = "true" if v else "false"
    else:
        core = _glob_key(v, op, ctx)
    if ctx.transforms:
        core = ":".join(ctx.transforms) + ":" + core
    return "!" + core if ctx.negated else core


def key_context(pred: Predicate, language: str, negated: bool, info: FieldInfo) -> KeyContext:
    """The :class:`KeyContext` of a predicate in ``language`` with effective ``negated``."""
    fold = (
        _folds_case(language)
        and not pred.cased
        and not ENCODING_TRANSFORMS.intersection(pred.transforms)
    )
    return KeyContext(
        fold=fold,
        path=info.path,
        basename=info.basename,
        transforms=pred.transforms,
        negated=negated != (pred.op is Op.NE),
        token=info.token,
    )


# --------------------------------------------------------------------------------------------
# Display: values and operators as written
# --------------------------------------------------------------------------------------------

def _folds_case(language: str) -> bool:
    lang = plugin(language)
    return lang.fold_case if lang is not None else language == QUERY_LANGUAGE


def display_value(v: Value, language: str, pred: Predicate) -> str:
    """A value as its language writes it (the plugin's ``display_value``; SPL quoting, Sigma
    escapes), else the model's text."""
    lang = plugin(language)
    if pred.op is Op.EXISTS and not pred.values:
        return lang.exists_text if lang is not None else "exists"
    if lang is not None and lang.display_value is not None:
        return lang.display_value(v, pred)
    return value_text(v)


def display_op(pred: Predicate, language: str) -> str:
    """The operator as written: the plugin's ``display_op`` (Sigma's modifier chain
    ``base64offset|contains|all``), else the op's name with any transforms before it."""
    lang = plugin(language)
    if lang is not None and lang.display_op is not None:
        return lang.display_op(pred)
    if not pred.transforms and not pred.match_all:
        return pred.op.value
    return "|".join([*pred.transforms, pred.op.value, *(["all"] if pred.match_all else [])])


KEYWORD_FIELD = "(keyword)"
KEYWORD_FIELD_KEY = "_raw"


def field_key_of(pred: Predicate) -> tuple[str, FieldInfo]:
    """(field as displayed, alias info) of a predicate; keyword predicates search ``_raw``."""
    if pred.field is None:
        return KEYWORD_FIELD, FieldInfo(key=KEYWORD_FIELD_KEY, known=True)
    return pred.field, field_info(pred.field, pred.datamodel)


def predicate_keys(pred: Predicate, language: str, negated: bool) -> list[tuple[str, str]]:
    """(display, key) of every value of ``pred``; ``negated`` is the effective polarity."""
    _, info = field_key_of(pred)
    if pred.op is Op.EXISTS:
        # Sigma ``|exists: false`` may arrive as the value False: it is a negated exists.
        if pred.values and pred.values[0] is False:
            negated = not negated
        ctx = key_context(pred, language, negated, info)
        shown = value_text(pred.values[0]) if pred.values else display_value(None, language, pred)
        return [(shown, value_key(None, pred.op, ctx))]
    ctx = key_context(pred, language, negated, info)
    return [(display_value(v, language, pred), value_key(v, pred.op, ctx)) for v in pred.values]
