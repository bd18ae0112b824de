"""Sigma value modifiers, one entry each in one registry (house rule 4).

A detection key ``Field|mod1|mod2`` is read modifier by modifier into an :class:`ItemSpec`: the
operator, the value kind (string, regex, CIDR, number comparison, field reference, exists), the
value transformations kept *by name* (``base64offset``, ``windash``, ... are not expanded, so the
indicator stays as written), regex flags, case sensitivity, ``all`` and negation.

Adding a modifier is adding an entry to :data:`MODIFIERS`: an instance of the class of the
modifiers it works like (:class:`Position`, :class:`ValueKind`, :class:`RegexFlag`,
:class:`Transform`, :class:`TimestampPart`), or of a small class of its own. A modifier missing
from the registry is reported by the lowering as a located problem; the rest of the rule is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dc_field

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


@dataclass(frozen=True, slots=True)
class Modifier:
    """One Sigma modifier: ``name`` as written, ``maps_to`` the one-line mapping shown in
    docs/sigma.md, ``alias_of`` the pySigma modifier it is another name for (pySigma is given
    that name), and how it shapes the item (``apply``). Modifiers that work alike are one class
    (a family), told apart by their fields."""

    name: str
    maps_to: str
    alias_of: str | None = dc_field(default=None, kw_only=True)

    @property
    def pysigma(self) -> str:
        """The name pySigma knows the modifier by."""
        return self.alias_of or self.name

    def apply(self, spec: ItemSpec) -> None:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Position(Modifier):
    """``contains``/``startswith``/``endswith``: the operator on a string value."""

    op: Op

    def apply(self, spec: ItemSpec) -> None:
        if spec.kind == "regex":
            spec.notes.append(f"'{self.name}' on a regular expression is ignored")
            return
        spec.set_op(self.op, self.name)


@dataclass(frozen=True, slots=True)
class ValueKind(Modifier):
    """A modifier that says what kind of value the item holds and the operator on it."""

    kind: str
    op: Op

    def apply(self, spec: ItemSpec) -> None:
        spec.kind = self.kind
        spec.set_op(self.op, self.name)


@dataclass(frozen=True, slots=True)
class RegexFlag(Modifier):
    flag: str

    def apply(self, spec: ItemSpec) -> None:
        if spec.kind != "regex":
            spec.unsupported.append(f"regex flag modifier '{self.name}' without 're'")
            return
        spec.flags.add(self.flag)


@dataclass(frozen=True, slots=True)
class Transform(Modifier):
    """Value encodings: kept by name in ``transforms``, the value stays as written."""

    transform: str

    def apply(self, spec: ItemSpec) -> None:
        if spec.kind not in ("string", "fieldref"):
            spec.unsupported.append(f"'{self.name}' on a {spec.kind} value")
            return
        spec.transforms.append(self.transform)


@dataclass(frozen=True, slots=True)
class TimestampPart(Modifier):
    """``minute``/``hour``/... compare a part of a timestamp field; no predicate form yet."""

    maps_to: str = "unsupported: kept as Opaque with a problem"

    def apply(self, spec: ItemSpec) -> None:
        spec.unsupported.append(f"timestamp part modifier '{self.name}' is not represented")


@dataclass(frozen=True, slots=True)
class All(Modifier):
    def apply(self, spec: ItemSpec) -> None:
        spec.match_all = True


@dataclass(frozen=True, slots=True)
class Neq(Modifier):
    def apply(self, spec: ItemSpec) -> None:
        spec.negated = not spec.negated


@dataclass(frozen=True, slots=True)
class FieldRefMod(Modifier):
    def apply(self, spec: ItemSpec) -> None:
        spec.kind = "fieldref"


@dataclass(frozen=True, slots=True)
class Cased(Modifier):
    def apply(self, spec: ItemSpec) -> None:
        spec.cased = True


_AS_WRITTEN = "value as written"
MODIFIERS: dict[str, Modifier] = {m.name: m for m in (
    Position("contains", "op `contains`; value str, or Pattern when it has inner wildcards",
             Op.CONTAINS),
    Position("startswith", "op `startswith`; value str or Pattern", Op.STARTSWITH),
    Position("endswith", "op `endswith`; value str or Pattern", Op.ENDSWITH),
    All("all", "`match_all=True` (every value must match, not any)"),
    ValueKind("re", "op `regex`; value `Regex(pattern as written, flags)`; case-sensitive "
              "unless `i`", "regex", Op.REGEX),
    RegexFlag("i", "regex flag `i` (case-insensitive)", "i"),
    RegexFlag("ignorecase", "regex flag `i`", "i"),
    RegexFlag("m", "regex flag `m` (^ and $ match at line breaks)", "m"),
    RegexFlag("multiline", "regex flag `m`", "m"),
    RegexFlag("s", "regex flag `s` (dot matches newline)", "s"),
    RegexFlag("dotall", "regex flag `s`", "s"),
    ValueKind("cidr", "op `cidr`; value the network as written (str)", "cidr", Op.CIDR),
    *(ValueKind(name, f"op `{op.value}`; numeric value", "compare", op)
      for name, op in (("gt", Op.GT), ("gte", Op.GE), ("lt", Op.LT), ("lte", Op.LE))),
    Neq("neq", "`negated=True` (the item must not match)"),
    ValueKind("exists", "op `exists`, no values; `exists: false` is negated", "exists",
              Op.EXISTS),
    FieldRefMod("fieldref", "values are `FieldRef(name)`; op `eq`, or the position modifier's op"),
    Cased("cased", "`cased=True` (case-sensitive; Sigma is case-insensitive by default)"),
    Transform("base64", f"`transforms=('base64',)`, {_AS_WRITTEN}", "base64"),
    Transform("base64offset", f"`transforms=('base64offset',)` (all three offsets), {_AS_WRITTEN}",
              "base64offset"),
    Transform("wide", f"`transforms=('wide',)` (UTF-16LE), {_AS_WRITTEN}", "wide"),
    Transform("utf16le", "same as `wide`: `transforms=('wide',)`", "wide", alias_of="wide"),
    Transform("utf16be", f"`transforms=('utf16be',)`, {_AS_WRITTEN}", "utf16be"),
    Transform("utf16", f"`transforms=('utf16',)` (UTF-16LE with BOM), {_AS_WRITTEN}", "utf16"),
    Transform("windash", f"`transforms=('windash',)` (- / and dashes interchangeable), "
              f"{_AS_WRITTEN}", "windash"),
    Transform("expand", "`transforms=('expand',)`, value kept with its `%placeholder%`", "expand"),
    *(TimestampPart(name) for name in ("minute", "hour", "day", "week", "month", "year")),
)}


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
        out.append(mod.pysigma if mod is not None else m)
    return "|".join(out)


def build_spec(field_name: str | None, names: list[str]) -> ItemSpec:
    spec = ItemSpec(field_name)
    for n in names:
        MODIFIERS[n].apply(spec)
    return spec
