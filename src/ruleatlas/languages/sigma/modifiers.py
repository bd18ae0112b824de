"""Sigma value modifiers, one small class each, in one registry (house rule 4).

A detection key ``Field|mod1|mod2`` is read modifier by modifier into an :class:`ItemSpec`: the
operator, the value kind (string, regex, CIDR, number comparison, field reference, exists), the
value transformations kept *by name* (``base64offset``, ``windash``, ... are not expanded, so the
indicator stays as written), regex flags, case sensitivity, ``all`` and negation.

Adding a modifier is adding an entry to :data:`MODIFIERS`. A modifier missing from the registry
is reported by the lowering as a located problem; the rest of the rule is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import ClassVar

from ruleatlas.model import Op


@dataclass(slots=True)
class ItemSpec:
    """What the modifiers of one detection item say, built up in modifier order."""

    field: str | None
    op: Op | None = None  # set by contains/startswith/endswith/re/cidr/gt/.../exists
    kind: str = "string"  # string | regex | cidr | compare | fieldref | exists
    transforms: list[str] = dc_field(default_factory=list)
    flags: set[str] = dc_field(default_factory=set)
    cased: bool = False
    match_all: bool = False
    negated: bool = False
    unsupported: list[str] = dc_field(default_factory=list)  # reasons the item cannot be lowered
    notes: list[str] = dc_field(default_factory=list)  # odd but representable combinations

    def set_op(self, op: Op, name: str) -> None:
        if self.op is not None and self.op is not op:
            self.notes.append(f"modifier '{name}' overrides '{self.op.value}'")
        self.op = op


class Modifier:
    """One Sigma modifier: ``name`` as written, ``pysigma`` the name pySigma knows it by (None:
    pySigma does not know it, the lowering passes the key without it), and how it shapes the
    item (``apply``). ``maps_to`` is the one-line mapping shown in docs/sigma.md."""

    name: ClassVar[str]
    pysigma: ClassVar[str | None]
    maps_to: ClassVar[str]

    def apply(self, spec: ItemSpec) -> None:
        raise NotImplementedError


class _Position(Modifier):
    op: ClassVar[Op]

    def apply(self, spec: ItemSpec) -> None:
        if spec.kind == "regex":
            spec.notes.append(f"'{self.name}' on a regular expression is ignored")
            return
        spec.set_op(self.op, self.name)


class Contains(_Position):
    name, pysigma, op = "contains", "contains", Op.CONTAINS
    maps_to = "op `contains`; value str, or Pattern when it has inner wildcards"


class StartsWith(_Position):
    name, pysigma, op = "startswith", "startswith", Op.STARTSWITH
    maps_to = "op `startswith`; value str or Pattern"


class EndsWith(_Position):
    name, pysigma, op = "endswith", "endswith", Op.ENDSWITH
    maps_to = "op `endswith`; value str or Pattern"


class All(Modifier):
    name, pysigma = "all", "all"
    maps_to = "`match_all=True` (every value must match, not any)"

    def apply(self, spec: ItemSpec) -> None:
        spec.match_all = True


class _Kind(Modifier):
    """A modifier that says what kind of value the item holds and the operator on it."""

    kind: ClassVar[str]
    op: ClassVar[Op]

    def apply(self, spec: ItemSpec) -> None:
        spec.kind = self.kind
        spec.set_op(self.op, self.name)


class Re(_Kind):
    name, pysigma, kind, op = "re", "re", "regex", Op.REGEX
    maps_to = "op `regex`; value `Regex(pattern as written, flags)`; case-sensitive unless `i`"


class _RegexFlag(Modifier):
    flag: ClassVar[str]

    def apply(self, spec: ItemSpec) -> None:
        if spec.kind != "regex":
            spec.unsupported.append(f"regex flag modifier '{self.name}' without 're'")
            return
        spec.flags.add(self.flag)


class IgnoreCase(_RegexFlag):
    name, pysigma, flag = "i", "i", "i"
    maps_to = "regex flag `i` (case-insensitive)"


class IgnoreCaseLong(_RegexFlag):
    name, pysigma, flag = "ignorecase", "ignorecase", "i"
    maps_to = "regex flag `i`"


class Multiline(_RegexFlag):
    name, pysigma, flag = "m", "m", "m"
    maps_to = "regex flag `m` (^ and $ match at line breaks)"


class MultilineLong(_RegexFlag):
    name, pysigma, flag = "multiline", "multiline", "m"
    maps_to = "regex flag `m`"


class DotAll(_RegexFlag):
    name, pysigma, flag = "s", "s", "s"
    maps_to = "regex flag `s` (dot matches newline)"


class DotAllLong(_RegexFlag):
    name, pysigma, flag = "dotall", "dotall", "s"
    maps_to = "regex flag `s`"


class Cidr(_Kind):
    name, pysigma, kind, op = "cidr", "cidr", "cidr", Op.CIDR
    maps_to = "op `cidr`; value the network as written (str)"


class _Compare(_Kind):
    kind = "compare"


class Gt(_Compare):
    name, pysigma, op = "gt", "gt", Op.GT
    maps_to = "op `gt`; numeric value"


class Gte(_Compare):
    name, pysigma, op = "gte", "gte", Op.GE
    maps_to = "op `ge`; numeric value"


class Lt(_Compare):
    name, pysigma, op = "lt", "lt", Op.LT
    maps_to = "op `lt`; numeric value"


class Lte(_Compare):
    name, pysigma, op = "lte", "lte", Op.LE
    maps_to = "op `le`; numeric value"


class Neq(Modifier):
    name, pysigma = "neq", "neq"
    maps_to = "`negated=True` (the item must not match)"

    def apply(self, spec: ItemSpec) -> None:
        spec.negated = not spec.negated


class Exists(_Kind):
    name, pysigma, kind, op = "exists", "exists", "exists", Op.EXISTS
    maps_to = "op `exists`, no values; `exists: false` is negated"


class FieldRefMod(Modifier):
    name, pysigma = "fieldref", "fieldref"
    maps_to = "values are `FieldRef(name)`; op `eq`, or the position modifier's op"

    def apply(self, spec: ItemSpec) -> None:
        spec.kind = "fieldref"


class Cased(Modifier):
    name, pysigma = "cased", "cased"
    maps_to = "`cased=True` (case-sensitive; Sigma is case-insensitive by default)"

    def apply(self, spec: ItemSpec) -> None:
        spec.cased = True


class _Transform(Modifier):
    """Value encodings: kept by name in ``transforms``, the value stays as written."""

    transform: ClassVar[str]

    def apply(self, spec: ItemSpec) -> None:
        if spec.kind not in ("string", "fieldref"):
            spec.unsupported.append(f"'{self.name}' on a {spec.kind} value")
            return
        spec.transforms.append(self.transform)


class Base64(_Transform):
    name, pysigma, transform = "base64", "base64", "base64"
    maps_to = "`transforms=('base64',)`, value as written"


class Base64Offset(_Transform):
    name, pysigma, transform = "base64offset", "base64offset", "base64offset"
    maps_to = "`transforms=('base64offset',)` (all three offsets), value as written"


class Wide(_Transform):
    name, pysigma, transform = "wide", "wide", "wide"
    maps_to = "`transforms=('wide',)` (UTF-16LE), value as written"


class Utf16Le(_Transform):
    name, pysigma, transform = "utf16le", "wide", "wide"
    maps_to = "same as `wide`: `transforms=('wide',)`"


class Utf16Be(_Transform):
    name, pysigma, transform = "utf16be", "utf16be", "utf16be"
    maps_to = "`transforms=('utf16be',)`, value as written"


class Utf16(_Transform):
    name, pysigma, transform = "utf16", "utf16", "utf16"
    maps_to = "`transforms=('utf16',)` (UTF-16LE with BOM), value as written"


class Windash(_Transform):
    name, pysigma, transform = "windash", "windash", "windash"
    maps_to = "`transforms=('windash',)` (- / and dashes interchangeable), value as written"


class Expand(_Transform):
    name, pysigma, transform = "expand", "expand", "expand"
    maps_to = "`transforms=('expand',)`, value kept with its `%placeholder%`"


class _TimestampPart(Modifier):
    """``minute``/``hour``/... compare a part of a timestamp field; no predicate form yet."""

    maps_to = "unsupported: kept as Opaque with a problem"

    def apply(self, spec: ItemSpec) -> None:
        spec.unsupported.append(f"timestamp part modifier '{self.name}' is not represented")


class Minute(_TimestampPart):
    name, pysigma = "minute", "minute"


class Hour(_TimestampPart):
    name, pysigma = "hour", "hour"


class Day(_TimestampPart):
    name, pysigma = "day", "day"


class Week(_TimestampPart):
    name, pysigma = "week", "week"


class Month(_TimestampPart):
    name, pysigma = "month", "month"


class Year(_TimestampPart):
    name, pysigma = "year", "year"


MODIFIERS: dict[str, Modifier] = {
    cls.name: cls()
    for cls in (
        Contains, StartsWith, EndsWith, All, Re, IgnoreCase, IgnoreCaseLong, Multiline,
        MultilineLong, DotAll, DotAllLong, Cidr, Gt, Gte, Lt, Lte, Neq, Exists, FieldRefMod,
        Cased, Base64, Base64Offset, Wide, Utf16Le, Utf16Be, Utf16, Windash, Expand,
        Minute, Hour, Day, Week, Month, Year,
    )
}


def read_key(key: str) -> tuple[str | None, list[str], list[str]]:
    """Split ``Field|mod|mod`` into (field or None, known modifier names, unknown names)."""
    name, *mods = key.split("|")
    known = [m for m in mods if m in MODIFIERS]
    unknown = [m for m in mods if m not in MODIFIERS]
    return (name or None), known, unknown


def pysigma_key(key: str) -> str:
    """The key as pySigma must see it: our aliases renamed to pySigma's names."""
    name, *mods = key.split("|")
    out = [name]
    for m in mods:
        mod = MODIFIERS.get(m)
        out.append(mod.pysigma if mod is not None and mod.pysigma else m)
    return "|".join(out)


def build_spec(field_name: str | None, names: list[str]) -> ItemSpec:
    spec = ItemSpec(field_name)
    for n in names:
        MODIFIERS[n].apply(spec)
    return spec
